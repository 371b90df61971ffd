/*
 * Signal handlers: an SA_SIGINFO handler with flags and a handler mask, a queued real-time
 * signal whose siginfo (code, value, sender) the handler checks when it finally runs, an
 * ignored signal, a one-shot SA_RESETHAND handler and an alternate signal stack.
 */
#include "crtest.h"

#include <signal.h>

#define ALTSTACK_SIZE (64 * 1024)

static volatile int nseen;
static volatile int seen_value[4], seen_code[4], seen_pid[4], seen_uid[4], seen_masked[4];
static volatile int usr2_count, usr2_on_altstack;
static char *altstack;

static void rt_handler(int sig, siginfo_t *si, void *uc)
{
	sigset_t now;
	int i = nseen;
	(void)sig;
	(void)uc;

	if (i >= 4)
		return;
	seen_value[i] = si->si_value.sival_int;
	seen_code[i] = si->si_code;
	seen_pid[i] = si->si_pid;
	seen_uid[i] = (int)si->si_uid;
	sigprocmask(SIG_BLOCK, NULL, &now);
	seen_masked[i] = sigismember(&now, SIGUSR1) == 1;
	nseen = i + 1;
}

static void usr2_handler(int sig)
{
	char here;
	(void)sig;

	usr2_count++;
	usr2_on_altstack = &here >= altstack && &here < altstack + ALTSTACK_SIZE;
}

int main(int argc, char **argv)
{
	struct sigaction sa, old;
	sigset_t block;
	union sigval val;
	stack_t ss, oss;
	pid_t me;
	int rt = SIGRTMIN + 2, i;

	crt_init(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = rt_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR1);
	sigaddset(&sa.sa_mask, SIGRTMIN + 4);
	if (sigaction(rt, &sa, NULL) < 0)
		crt_fail_errno("sigaction rt");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = usr2_handler;
	sa.sa_flags = SA_RESETHAND | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR2, &sa, NULL) < 0)
		crt_fail_errno("sigaction usr2");
	signal(SIGHUP, SIG_IGN);
	altstack = malloc(ALTSTACK_SIZE);
	ss.ss_sp = altstack;
	ss.ss_size = ALTSTACK_SIZE;
	ss.ss_flags = 0;
	if (!altstack || sigaltstack(&ss, NULL) < 0)
		crt_fail_errno("sigaltstack");

	sigemptyset(&block);
	sigaddset(&block, rt);
	sigprocmask(SIG_BLOCK, &block, NULL);
	me = getpid();
	val.sival_int = 0xC0FFEE;
	sigqueue(me, rt, val);
	val.sival_int = 0xBEEF;
	sigqueue(me, rt, val);
	crt_ready();
	crt_wait_trigger();

	if (sigaction(rt, NULL, &old) < 0)
		crt_fail_errno("sigaction query");
	if (!(old.sa_flags & SA_SIGINFO) || old.sa_sigaction != rt_handler)
		crt_fail("SIGRTMIN+2 handler or SA_SIGINFO lost");
	if (!(old.sa_flags & SA_RESTART))
		crt_fail("SA_RESTART lost");
	if (!sigismember(&old.sa_mask, SIGUSR1) || !sigismember(&old.sa_mask, SIGRTMIN + 4) ||
	    sigismember(&old.sa_mask, SIGUSR2))
		crt_fail("handler mask changed");
	if (sigaction(SIGHUP, NULL, &old) < 0 || old.sa_handler != SIG_IGN)
		crt_fail("SIGHUP no longer ignored");
	if (sigaction(SIGUSR2, NULL, &old) < 0 || old.sa_handler != usr2_handler ||
	    !(old.sa_flags & SA_RESETHAND) || !(old.sa_flags & SA_ONSTACK))
		crt_fail("SIGUSR2 handler or its SA_RESETHAND|SA_ONSTACK lost");
	if (sigaltstack(NULL, &oss) < 0 || oss.ss_sp != altstack || oss.ss_size != ALTSTACK_SIZE)
		crt_fail("alternate signal stack changed");

	sigprocmask(SIG_UNBLOCK, &block, NULL); /* both queued signals run the handler now */
	if (nseen != 2)
		crt_fail("handler ran %d times for 2 queued signals", nseen);
	for (i = 0; i < 2; i++) {
		int want = i ? 0xBEEF : 0xC0FFEE;

		if (seen_value[i] != want || seen_code[i] != SI_QUEUE)
			crt_fail("signal %d: value %#x code %d, want %#x SI_QUEUE", i + 1, seen_value[i],
				 seen_code[i], want);
		if (seen_pid[i] != me || seen_uid[i] != (int)getuid())
			crt_fail("signal %d: sender pid %d uid %d, want %d %d", i + 1, seen_pid[i], seen_uid[i],
				 (int)me, (int)getuid());
		if (!seen_masked[i])
			crt_fail("SIGUSR1 not blocked inside the handler (sa_mask not applied)");
	}
	raise(SIGUSR2);
	if (usr2_count != 1 || !usr2_on_altstack)
		crt_fail("SIGUSR2 handler: ran %d times, on the alternate stack: %d", usr2_count, usr2_on_altstack);
	if (sigaction(SIGUSR2, NULL, &old) < 0 || old.sa_handler != SIG_DFL)
		crt_fail("SA_RESETHAND did not reset the handler");
	crt_pass();
}
