/*
 * A regular file opened several ways: offsets (including one shared through dup()), access mode,
 * O_APPEND, O_NONBLOCK, close-on-exec, and the file's identity.
 */
#include "crtest.h"

#include <fcntl.h>
#include <sys/stat.h>

#define SIZE 65536

struct opened {
	const char *what;
	int fd;
	int flags;    /* open flags that must survive (access mode + O_APPEND + O_NONBLOCK) */
	int cloexec;
	off_t offset;
};

int main(int argc, char **argv)
{
	char path[96];
	unsigned char *data, buf[100];
	struct opened f[5];
	struct stat st;
	ino_t ino;
	off_t pos;
	int i, fl, fd;

	crt_init(argc, argv);
	snprintf(path, sizeof(path), "%s.data", crt_name());
	data = malloc(SIZE);
	if (!data)
		crt_fail("malloc");
	crt_fill(data, SIZE, 11);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || crt_write_full(fd, data, SIZE) < 0)
		crt_fail_errno("create %s", path);
	close(fd);

	f[0] = (struct opened){ "read-write", -1, O_RDWR, 0, 12345 };
	f[1] = (struct opened){ "dup of read-write", -1, O_RDWR, 0, 12345 };
	f[2] = (struct opened){ "append", -1, O_WRONLY | O_APPEND, 0, 0 };
	f[3] = (struct opened){ "read-only non-blocking cloexec", -1, O_RDONLY | O_NONBLOCK, 1, 40000 };
	f[4] = (struct opened){ "second read-write", -1, O_RDWR, 0, 777 };
	f[0].fd = open(path, O_RDWR);
	f[1].fd = dup(f[0].fd);
	f[2].fd = open(path, O_WRONLY | O_APPEND);
	f[3].fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	f[4].fd = open(path, O_RDWR);
	for (i = 0; i < 5; i++) {
		if (f[i].fd < 0)
			crt_fail_errno("open %s", f[i].what);
		if (i != 1 && lseek(f[i].fd, f[i].offset, SEEK_SET) != f[i].offset)
			crt_fail_errno("lseek %s", f[i].what);
	}
	if (fstat(f[0].fd, &st) < 0)
		crt_fail_errno("fstat");
	ino = st.st_ino;
	crt_ready();
	crt_wait_trigger();

	for (i = 0; i < 5; i++) {
		pos = lseek(f[i].fd, 0, SEEK_CUR);
		if (pos != f[i].offset)
			crt_fail("%s: offset %lld, want %lld", f[i].what, (long long)pos, (long long)f[i].offset);
		fl = fcntl(f[i].fd, F_GETFL);
		if (fl < 0 || (fl & (O_ACCMODE | O_APPEND | O_NONBLOCK)) != f[i].flags)
			crt_fail("%s: flags %#x, want %#x", f[i].what, fl & (O_ACCMODE | O_APPEND | O_NONBLOCK),
				 f[i].flags);
		fl = fcntl(f[i].fd, F_GETFD);
		if (fl < 0 || !!(fl & FD_CLOEXEC) != f[i].cloexec)
			crt_fail("%s: close-on-exec is %d, want %d", f[i].what, !!(fl & FD_CLOEXEC), f[i].cloexec);
		if (fstat(f[i].fd, &st) < 0 || st.st_ino != ino)
			crt_fail("%s: no longer open on %s", f[i].what, path);
	}
	if (stat(path, &st) < 0 || st.st_ino != ino || st.st_size != SIZE)
		crt_fail("%s changed (size %lld)", path, (long long)st.st_size);

	/* the dup shares the offset: reading through it moves the original */
	if (crt_read_full(f[1].fd, buf, sizeof(buf)) < 0 || memcmp(buf, data + 12345, sizeof(buf)))
		crt_fail("content at offset 12345 differs");
	if (lseek(f[0].fd, 0, SEEK_CUR) != 12345 + (off_t)sizeof(buf))
		crt_fail("dup() no longer shares the file offset");
	if (lseek(f[4].fd, 0, SEEK_CUR) != 777)
		crt_fail("an independent open shares an offset it should not");
	if (crt_read_full(f[3].fd, buf, sizeof(buf)) < 0 || memcmp(buf, data + 40000, sizeof(buf)))
		crt_fail("content at offset 40000 differs");
	/* O_APPEND still appends */
	if (write(f[2].fd, "tail", 4) != 4)
		crt_fail_errno("append");
	if (fstat(f[2].fd, &st) < 0 || st.st_size != SIZE + 4)
		crt_fail("append wrote elsewhere (size %lld)", (long long)st.st_size);
	unlink(path);
	crt_pass();
}
