/*
 * Must-fail case: a child of the test is traced (PTRACE_SEIZE) by the test itself.  CRIU cannot
 * seize a task that already has a tracer and must fail the dump cleanly.  After the trigger the
 * tracer relationship must still be intact: the child's stop is reported to the test.
 */
#include "crtest.h"

#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	pid_t child;
	int status;
	double t;

	crt_init(argc, argv);
	child = crt_fork();
	if (child < 0)
		crt_fail_errno("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	if (ptrace(PTRACE_SEIZE, child, NULL, NULL) < 0)
		crt_fail_errno("PTRACE_SEIZE");
	crt_ready();
	crt_wait_trigger();

	/* still our tracee: an interrupt stops it and we, the tracer, see the stop */
	if (ptrace(PTRACE_INTERRUPT, child, NULL, NULL) < 0)
		crt_fail_errno("PTRACE_INTERRUPT (no longer tracing the child?)");
	t = crt_now();
	for (;;) {
		pid_t w = waitpid(child, &status, __WALL | WNOHANG);

		if (w == child && WIFSTOPPED(status))
			break;
		if (w < 0)
			crt_fail_errno("waitpid");
		if (w == child)
			crt_fail("child ended (status %#x)", status);
		if (crt_now() - t > 30)
			crt_fail("no ptrace stop within 30 s");
		crt_sleep(0.01);
	}
	if (ptrace(PTRACE_DETACH, child, NULL, NULL) < 0)
		crt_fail_errno("PTRACE_DETACH");
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	crt_pass();
}
