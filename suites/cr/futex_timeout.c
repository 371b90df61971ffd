/*
 * Futex waits across the checkpoint: one thread waits with a relative timeout that must run
 * out (no earlier than requested; CRTEST_SLEEP_MS, default 15 s, so the harness checkpoints
 * during it), another waits without a timeout on a shared futex and must be woken by
 * FUTEX_WAKE after the trigger.
 */
#include "crtest.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>

static uint32_t timed_word, wake_word;
static volatile int timed_result = -1, waker_result = -1, timed_waiting, wake_waiting;
static double timed_elapsed;
static long sleep_ms;

/* the futex syscall that takes this libc's struct timespec */
static long futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
#if defined(SYS_futex_time64) && !defined(__LP64__)
	if (sizeof(ts->tv_sec) == 8)
		return syscall(SYS_futex_time64, uaddr, op, val, ts, NULL, 0);
#endif
	return syscall(SYS_futex, uaddr, op, val, ts, NULL, 0);
}

static void *timed_waiter(void *arg)
{
	struct crt_mark start;
	double want = (double)sleep_ms / 1000.0, left;
	(void)arg;

	crt_mark(&start);
	timed_waiting = 1;
	for (;;) {
		struct timespec ts;

		left = want - crt_elapsed(&start);
		if (left <= 0)
			left = 0.001;
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
		if (futex(&timed_word, FUTEX_WAIT_PRIVATE, 0, &ts) == 0) {
			if (timed_word != 0) {
				timed_result = 1; /* woken although nobody wakes it */
				return NULL;
			}
			continue; /* spurious */
		}
		if (errno == ETIMEDOUT)
			break;
		if (errno != EINTR && errno != EAGAIN) {
			timed_result = 2;
			return NULL;
		}
		crt_log("timed futex wait interrupted (%s), %.3f s left", strerror(errno),
			want - crt_elapsed(&start));
	}
	timed_elapsed = crt_elapsed(&start);
	timed_result = 0;
	return NULL;
}

static void *woken_waiter(void *arg)
{
	(void)arg;
	wake_waiting = 1;
	while (__atomic_load_n(&wake_word, __ATOMIC_SEQ_CST) == 0)
		if (futex(&wake_word, FUTEX_WAIT, 0, NULL) < 0 && errno != EINTR && errno != EAGAIN) {
			waker_result = 2;
			return NULL;
		}
	waker_result = 0;
	return NULL;
}

int main(int argc, char **argv)
{
	long slack_ms = crt_env_ms("CRTEST_SLACK_MS", 900000);
	pthread_t a, b;
	double t, want;

	sleep_ms = crt_env_ms("CRTEST_SLEEP_MS", 15000);
	want = (double)sleep_ms / 1000.0;
	crt_init(argc, argv);
	if (pthread_create(&a, NULL, timed_waiter, NULL) || pthread_create(&b, NULL, woken_waiter, NULL))
		crt_fail("pthread_create");
	while (!timed_waiting || !wake_waiting)
		crt_sleep(0.01);
	crt_sleep(0.05); /* let both enter the kernel */
	crt_log("futex waits started (timeout %ld ms): checkpoint now", sleep_ms);
	crt_ready();
	crt_wait_trigger();

	__atomic_store_n(&wake_word, 1, __ATOMIC_SEQ_CST);
	t = crt_now();
	while (waker_result < 0 && crt_now() - t < 60) {
		futex(&wake_word, FUTEX_WAKE, 1, NULL);
		crt_sleep(0.01);
	}
	if (waker_result != 0)
		crt_fail("the untimed futex waiter was not woken within 60 s (result %d)", waker_result);
	pthread_join(b, NULL);
	pthread_join(a, NULL);
	if (timed_result == 1)
		crt_fail("the timed futex wait returned as if woken");
	if (timed_result != 0)
		crt_fail("the timed futex wait failed");
	crt_log("timed futex wait ended after %.3f s (%.3f s requested)", timed_elapsed, want);
	if (timed_elapsed < want)
		crt_fail("timed futex wait ended after %.3f s, before its %.3f s timeout", timed_elapsed, want);
	if (timed_elapsed > want + (double)slack_ms / 1000.0)
		crt_fail("timed futex wait took %.3f s for a %.3f s timeout", timed_elapsed, want);
	crt_pass();
}
