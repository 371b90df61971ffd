/*
 * Must-fail case: the test holds a pidfd for its child.  CRIU before 4.1 has no pidfd support
 * and refuses the file (Debian 12 ships 3.17).  After the trigger the pidfd must still refer to
 * the child: it becomes readable when the child exits and can signal it.
 */
#include "crtest.h"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	pid_t child;
	int pidfd, status;
	struct pollfd p;

	crt_init(argc, argv);
	child = crt_fork();
	if (child < 0)
		crt_fail_errno("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	pidfd = (int)syscall(SYS_pidfd_open, child, 0);
	if (pidfd < 0)
		crt_fail_errno("pidfd_open");
	crt_ready();
	crt_wait_trigger();

	p.fd = pidfd;
	p.events = POLLIN;
	if (poll(&p, 1, 0) != 0)
		crt_fail("pidfd says the child exited (revents %#x)", p.revents);
	if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0)
		crt_fail_errno("pidfd_send_signal");
	if (poll(&p, 1, 30000) != 1 || !(p.revents & POLLIN))
		crt_fail("pidfd did not report the child's exit");
	if (waitpid(child, &status, 0) != child || !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		crt_fail("the child was not killed through the pidfd (status %#x)", status);
	crt_pass();
}
