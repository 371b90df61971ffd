/*
 * Pending and blocked signals: process-wide and thread-directed pending signals, a real-time
 * signal queued twice with values (order and count kept), per-thread blocked masks, and a
 * blocked signal that is not pending.
 */
#include "crtest.h"

#include <pthread.h>
#include <sys/syscall.h>

static volatile int thread_result = -1;
static volatile pid_t thread_tid;
static sigset_t thread_blocked;

static void *other_thread(void *arg)
{
	sigset_t now, pend;
	(void)arg;

	thread_tid = (pid_t)syscall(SYS_gettid);
	while (!crt_trigger) {
		struct timespec nap = { 0, 10 * 1000 * 1000 };

		nanosleep(&nap, NULL);
	}
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	sigpending(&pend);
	if (!sigismember(&now, SIGINT) || !sigismember(&now, SIGUSR1))
		thread_result = 1; /* this thread's own mask lost */
	else if (!sigismember(&pend, SIGINT))
		thread_result = 2; /* the signal sent to this thread only is gone */
	else
		thread_result = 0;
	return NULL;
}

int main(int argc, char **argv)
{
	sigset_t block, now, pend, rt;
	union sigval val;
	siginfo_t si;
	pthread_t th;
	struct timespec zero = { 0, 0 };
	int rt1 = SIGRTMIN + 1, rt3 = SIGRTMIN + 3, i;
	pid_t sender;

	crt_init(argc, argv);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, rt1);
	sigaddset(&block, rt3);
	if (sigprocmask(SIG_BLOCK, &block, NULL) < 0)
		crt_fail_errno("sigprocmask");
	/* the thread inherits this mask and adds SIGINT, which main leaves unblocked */
	sigemptyset(&thread_blocked);
	sigaddset(&thread_blocked, SIGINT);
	pthread_sigmask(SIG_BLOCK, &thread_blocked, NULL);
	if (pthread_create(&th, NULL, other_thread, NULL))
		crt_fail("pthread_create");
	pthread_sigmask(SIG_UNBLOCK, &thread_blocked, NULL);
	while (!thread_tid)
		crt_sleep(0.01);

	sender = getpid();
	kill(getpid(), SIGUSR1);                          /* process-wide */
	syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR2); /* this thread only */
	syscall(SYS_tgkill, getpid(), thread_tid, SIGINT);           /* the other thread only */
	val.sival_int = 101;
	sigqueue(getpid(), rt1, val);
	val.sival_int = 102;
	sigqueue(getpid(), rt1, val);
	crt_ready();
	crt_wait_trigger();
	pthread_join(th, NULL);
	if (thread_result)
		crt_fail("other thread: %s", thread_result == 1 ? "its blocked mask changed"
							    : "its thread-directed SIGINT is no longer pending");

	sigprocmask(SIG_BLOCK, NULL, &now);
	for (i = 1; i < SIGRTMIN + 8 && i < 64; i++) {
		int want = sigismember(&block, i);

		if (i == SIGKILL || i == SIGSTOP)
			continue;
		if (sigismember(&now, i) != want)
			crt_fail("signal %d is %sblocked, want %sblocked", i, want ? "not " : "", want ? "" : "not ");
	}
	sigpending(&pend);
	if (!sigismember(&pend, SIGUSR1) || !sigismember(&pend, SIGUSR2) || !sigismember(&pend, rt1))
		crt_fail("pending set lost a signal (USR1 %d USR2 %d RTMIN+1 %d)", sigismember(&pend, SIGUSR1),
			 sigismember(&pend, SIGUSR2), sigismember(&pend, rt1));
	if (sigismember(&pend, rt3))
		crt_fail("SIGRTMIN+3 pending but was never sent");
	if (sigismember(&pend, SIGINT))
		crt_fail("SIGINT, sent to the other thread, shows up in the main thread");

	sigemptyset(&rt);
	sigaddset(&rt, rt1);
	for (i = 0; i < 2; i++) {
		if (sigtimedwait(&rt, &si, &zero) != rt1)
			crt_fail("queued SIGRTMIN+1 #%d missing", i + 1);
		if (si.si_code != SI_QUEUE || si.si_value.sival_int != 101 + i)
			crt_fail("SIGRTMIN+1 #%d: code %d value %d, want SI_QUEUE value %d", i + 1, si.si_code,
				 si.si_value.sival_int, 101 + i);
	}
	if (sigtimedwait(&rt, &si, &zero) != -1)
		crt_fail("a third SIGRTMIN+1 was queued");
	sigemptyset(&rt);
	sigaddset(&rt, SIGUSR1);
	if (sigtimedwait(&rt, &si, &zero) != SIGUSR1)
		crt_fail("SIGUSR1 lost");
	if (si.si_code != SI_USER || si.si_pid != sender)
		crt_fail("SIGUSR1 siginfo changed: code %d pid %d, want SI_USER from %d", si.si_code, (int)si.si_pid,
			 (int)sender);
	sigemptyset(&rt);
	sigaddset(&rt, SIGUSR2);
	if (sigtimedwait(&rt, &si, &zero) != SIGUSR2)
		crt_fail("SIGUSR2 lost");
	/* kernels differ in the code they give tgkill() (SI_TKILL, or SI_USER since 6.x) */
	if ((si.si_code != SI_TKILL && si.si_code != SI_USER) || si.si_pid != sender)
		crt_fail("SIGUSR2 siginfo changed: code %d pid %d, want SI_TKILL/SI_USER from %d", si.si_code,
			 (int)si.si_pid, (int)sender);
	crt_pass();
}
