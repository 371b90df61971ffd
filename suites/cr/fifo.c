/* A FIFO in the working directory with unread data, a non-blocking reader and a writer. */
#include "crtest.h"

#include <fcntl.h>
#include <sys/stat.h>

#define DATA 3000

int main(int argc, char **argv)
{
	char path[96];
	unsigned char want[DATA], got[DATA];
	int rd, wr, fl;
	struct stat st;
	ino_t ino;

	crt_init(argc, argv);
	snprintf(path, sizeof(path), "%s.fifo", crt_name());
	unlink(path);
	if (mkfifo(path, 0600) < 0)
		crt_fail_errno("mkfifo %s", path);
	rd = open(path, O_RDONLY | O_NONBLOCK);
	if (rd < 0)
		crt_fail_errno("open reader");
	wr = open(path, O_WRONLY);
	if (wr < 0)
		crt_fail_errno("open writer");
	if (fstat(rd, &st) < 0)
		crt_fail_errno("fstat");
	ino = st.st_ino;
	crt_fill(want, DATA, 3);
	if (crt_write_full(wr, want, DATA) < 0)
		crt_fail_errno("write");
	crt_ready();
	crt_wait_trigger();

	if (stat(path, &st) < 0 || !S_ISFIFO(st.st_mode))
		crt_fail("%s is no longer a FIFO", path);
	if (st.st_ino != ino)
		crt_fail("%s was replaced (inode %lu, was %lu)", path, (unsigned long)st.st_ino, (unsigned long)ino);
	if (fstat(rd, &st) < 0 || st.st_ino != ino)
		crt_fail("the reader is not open on %s any more", path);
	fl = fcntl(rd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY || !(fl & O_NONBLOCK))
		crt_fail("reader flags %#x, want O_RDONLY|O_NONBLOCK", fl);
	fl = fcntl(wr, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_WRONLY || (fl & O_NONBLOCK))
		crt_fail("writer flags %#x, want O_WRONLY", fl);
	if (crt_read_full(rd, got, DATA) < 0)
		crt_fail_errno("read queued data");
	if (memcmp(got, want, DATA))
		crt_fail("queued data differs");
	if (read(rd, got, 1) != -1 || errno != EAGAIN)
		crt_fail("more data than was written");
	/* and the two ends still talk to each other */
	if (write(wr, "again", 5) != 5 || crt_read_full(rd, got, 5) < 0 || memcmp(got, "again", 5))
		crt_fail("writer and reader are no longer connected");
	unlink(path);
	crt_pass();
}
