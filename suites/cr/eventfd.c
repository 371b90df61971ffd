/*
 * eventfd: a counter's value, a semaphore-mode counter, and a child blocked reading an eventfd
 * that is woken after the trigger.
 */
#include "crtest.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	int counter, sem, wake, i, status;
	eventfd_t v;
	pid_t child;

	crt_init(argc, argv);
	counter = eventfd(5, EFD_NONBLOCK);
	sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	wake = eventfd(0, 0);
	if (counter < 0 || sem < 0 || wake < 0)
		crt_fail_errno("eventfd");
	if (eventfd_write(counter, 37) < 0)
		crt_fail_errno("eventfd_write");
	child = crt_fork();
	if (child < 0)
		crt_fail_errno("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* blocks across the checkpoint; EINTR from a restore just means read again */
		while (eventfd_read(wake, &v) < 0)
			if (errno != EINTR)
				_exit(2);
		_exit(v == 0x1234 ? 0 : 1);
	}
	crt_ready();
	crt_wait_trigger();

	if (eventfd_read(counter, &v) < 0)
		crt_fail_errno("read counter");
	if (v != 42)
		crt_fail("counter is %llu, want 42", (unsigned long long)v);
	if (eventfd_read(counter, &v) == 0 || errno != EAGAIN)
		crt_fail("counter not reset by the read (or O_NONBLOCK lost)");
	for (i = 0; i < 3; i++) {
		if (eventfd_read(sem, &v) < 0)
			crt_fail_errno("semaphore read %d of 3", i + 1);
		if (v != 1)
			crt_fail("semaphore read gave %llu, want 1 (EFD_SEMAPHORE lost)", (unsigned long long)v);
	}
	if (eventfd_read(sem, &v) == 0 || errno != EAGAIN)
		crt_fail("semaphore counter was above 3");
	if (eventfd_write(wake, 0x1234) < 0)
		crt_fail_errno("wake the child");
	if (waitpid(child, &status, 0) != child)
		crt_fail_errno("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		crt_fail("blocked reader got the wrong value (status %#x)", status);
	crt_pass();
}
