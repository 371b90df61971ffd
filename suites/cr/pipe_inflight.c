/*
 * Pipes with data in flight: 100 KiB sitting in an enlarged pipe inside one process, and 5000
 * bytes a child wrote to its parent before the checkpoint; the writer's end is closed, so the
 * reader must get the data and then end-of-file.
 */
#include "crtest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG_DATA (100 * 1024)
#define PIPE_SIZE (128 * 1024)
#define CHILD_DATA 5000

int main(int argc, char **argv)
{
	int big[2], from_child[2], go[2], status, size;
	unsigned char *want, *got;
	pid_t child;
	char c;

	crt_init(argc, argv);
	want = malloc(BIG_DATA);
	got = malloc(BIG_DATA);
	if (!want || !got)
		crt_fail("malloc");
	if (pipe(big) < 0 || pipe(from_child) < 0 || pipe(go) < 0)
		crt_fail_errno("pipe");
	size = fcntl(big[1], F_SETPIPE_SZ, PIPE_SIZE);
	if (size < PIPE_SIZE)
		crt_fail_errno("F_SETPIPE_SZ %d", PIPE_SIZE);
	crt_fill(want, BIG_DATA, 100);
	if (crt_write_full(big[1], want, BIG_DATA) < 0)
		crt_fail_errno("write big pipe");

	child = crt_fork();
	if (child < 0)
		crt_fail_errno("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(from_child[0]);
		close(go[1]);
		crt_fill(got, CHILD_DATA, 101);
		if (crt_write_full(from_child[1], got, CHILD_DATA) < 0)
			_exit(1);
		close(from_child[1]);
		while (read(go[0], &c, 1) != 0)
			;
		_exit(0);
	}
	close(from_child[1]);
	close(go[0]);
	/* the child's data is in the pipe once it is readable; do not read it */
	for (;;) {
		int queued = 0;

		if (ioctl(from_child[0], FIONREAD, &queued) < 0)
			crt_fail_errno("FIONREAD");
		if (queued == CHILD_DATA)
			break;
		crt_sleep(0.01);
	}
	crt_ready();
	crt_wait_trigger();

	size = fcntl(big[0], F_GETPIPE_SZ);
	if (size != PIPE_SIZE)
		crt_fail("pipe size %d, want %d", size, PIPE_SIZE);
	if (crt_read_full(big[0], got, BIG_DATA) < 0)
		crt_fail_errno("read big pipe");
	if (memcmp(got, want, BIG_DATA))
		crt_fail("data in the 100 KiB pipe differs");
	fcntl(big[0], F_SETFL, O_NONBLOCK);
	if (read(big[0], &c, 1) != -1 || errno != EAGAIN)
		crt_fail("the 100 KiB pipe holds more than was written");

	if (crt_read_full(from_child[0], got, CHILD_DATA) < 0)
		crt_fail_errno("read child pipe");
	crt_fill(want, CHILD_DATA, 101);
	if (memcmp(got, want, CHILD_DATA))
		crt_fail("data from the child differs");
	if (read(from_child[0], &c, 1) != 0)
		crt_fail("no end-of-file after the child's data (writer end reopened?)");
	close(go[1]);
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		crt_fail("child failed (status %#x)", status);
	crt_pass();
}
