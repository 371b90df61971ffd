/* Zombie children: their exit status (a code and a signal) can still be collected after the wait. */
#include "crtest.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	pid_t a, b, got;
	siginfo_t si;
	int status, i, seen_code = 0, seen_signal = 0;

	crt_init(argc, argv);
	a = crt_fork();
	if (a == 0)
		_exit(42);
	b = crt_fork();
	if (b == 0) {
		signal(SIGUSR2, SIG_DFL);
		raise(SIGUSR2);
		_exit(99);
	}
	/* wait until both are zombies, without reaping them */
	for (i = 0; i < 2; i++) {
		si.si_pid = 0;
		if (waitid(P_PID, i ? (id_t)b : (id_t)a, &si, WEXITED | WNOWAIT) < 0)
			crt_fail_errno("waitid");
	}
	crt_log("zombies %d (exit 42) and %d (SIGUSR2)", (int)a, (int)b);
	crt_ready();
	crt_wait_trigger();

	for (i = 0; i < 2; i++) {
		got = waitpid(-1, &status, WNOHANG);
		if (got <= 0)
			crt_fail("zombie %d of 2 not reapable at once (waitpid returned %d, errno %d)", i + 1, (int)got,
				 errno);
		if (got != a && got != b)
			crt_log("note: reaped pid %d, not %d/%d (pids not preserved)", (int)got, (int)a, (int)b);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 42)
			seen_code++;
		else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGUSR2)
			seen_signal++;
		else
			crt_fail("unexpected status %#x", status);
	}
	if (seen_code != 1 || seen_signal != 1)
		crt_fail("statuses: %d exit(42), %d SIGUSR2", seen_code, seen_signal);
	if (waitpid(-1, &status, WNOHANG) != -1 || errno != ECHILD)
		crt_fail("an extra child appeared");
	crt_pass();
}
