/*
 * Must-fail case: a connected unix stream socket whose peer belongs to a process outside the
 * checkpointed tree (a helper that detached itself by double fork).  CRIU refuses to dump half
 * of a stream connection.  After the trigger the connection must still work both ways.
 */
#include "crtest.h"

#include <sys/socket.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	int sv[2], status;
	pid_t mid;
	char buf[16];

	crt_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		crt_fail_errno("socketpair");
	mid = crt_fork();
	if (mid < 0)
		crt_fail_errno("fork");
	if (mid == 0) {
		/* the outsider: re-parented away from the test, echoes until the test closes its end */
		if (fork() != 0)
			_exit(0);
		close(sv[0]);
		for (;;) {
			ssize_t n = read(sv[1], buf, sizeof(buf));

			if (n <= 0)
				_exit(0);
			if (crt_write_full(sv[1], buf, (size_t)n) < 0)
				_exit(0);
		}
	}
	close(sv[1]);
	if (waitpid(mid, &status, 0) != mid)
		crt_fail_errno("waitpid");
	/* the outsider answers before we declare ready */
	if (write(sv[0], "ping", 4) != 4 || crt_read_full(sv[0], buf, 4) < 0 || memcmp(buf, "ping", 4))
		crt_fail("the outside peer does not answer");
	crt_ready();
	crt_wait_trigger();

	if (write(sv[0], "pong", 4) != 4 || crt_read_full(sv[0], buf, 4) < 0 || memcmp(buf, "pong", 4))
		crt_fail("the connection to the outside peer is broken");
	close(sv[0]); /* the outsider sees end-of-file and exits */
	crt_pass();
}
