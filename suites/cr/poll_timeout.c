/*
 * poll() and select() with timeouts across the checkpoint: poll on an empty pipe must time out
 * no earlier than requested (CRTEST_SLEEP_MS, default 15 s; the harness checkpoints during it),
 * select() in a second thread likewise, and after the trigger poll sees data arriving on the
 * same pipe.
 */
#include "crtest.h"

#include <poll.h>
#include <pthread.h>
#include <sys/select.h>

static long sleep_ms;
static volatile int select_result = -1;
static volatile double select_elapsed;
static int sel_pipe[2];

static void *selector(void *arg)
{
	struct crt_mark start;
	double want = (double)sleep_ms / 1000.0, left;
	(void)arg;

	crt_mark(&start);
	for (;;) {
		fd_set rd;
		struct timeval tv;
		int n;

		left = want - crt_elapsed(&start);
		if (left <= 0)
			left = 0.001;
		tv.tv_sec = (time_t)left;
		tv.tv_usec = (suseconds_t)((left - (double)tv.tv_sec) * 1e6);
		FD_ZERO(&rd);
		FD_SET(sel_pipe[0], &rd);
		n = select(sel_pipe[0] + 1, &rd, NULL, NULL, &tv);
		if (n == 0)
			break;
		if (n > 0 || errno != EINTR) {
			select_result = 1;
			return NULL;
		}
	}
	select_elapsed = crt_elapsed(&start);
	select_result = 0;
	return NULL;
}

int main(int argc, char **argv)
{
	long slack_ms = crt_env_ms("CRTEST_SLACK_MS", 900000);
	double want, elapsed, left;
	struct crt_mark start;
	struct pollfd p;
	int pp[2], n;
	pthread_t th;

	sleep_ms = crt_env_ms("CRTEST_SLEEP_MS", 15000);
	want = (double)sleep_ms / 1000.0;
	crt_init(argc, argv);
	if (pipe(pp) < 0 || pipe(sel_pipe) < 0)
		crt_fail_errno("pipe");
	if (pthread_create(&th, NULL, selector, NULL))
		crt_fail("pthread_create");
	crt_log("poll/select with %ld ms timeouts: checkpoint now", sleep_ms);
	crt_ready();
	crt_mark(&start);
	for (;;) {
		left = want - crt_elapsed(&start);
		p.fd = pp[0];
		p.events = POLLIN;
		n = poll(&p, 1, left > 0 ? (int)(left * 1000.0) + 1 : 1);
		if (n == 0)
			break;
		if (n > 0)
			crt_fail("poll reported an empty pipe ready (revents %#x)", p.revents);
		if (errno != EINTR)
			crt_fail_errno("poll");
		crt_log("poll interrupted, %.3f s left", want - crt_elapsed(&start));
	}
	elapsed = crt_elapsed(&start);
	crt_wait_trigger();
	pthread_join(th, NULL);

	crt_log("poll timed out after %.3f s, select after %.3f s (%.3f s requested)", elapsed, select_elapsed, want);
	if (elapsed < want || elapsed > want + (double)slack_ms / 1000.0)
		crt_fail("poll timed out after %.3f s for a %.3f s timeout", elapsed, want);
	if (select_result != 0)
		crt_fail("select saw an empty pipe ready or failed");
	if (select_elapsed < want || select_elapsed > want + (double)slack_ms / 1000.0)
		crt_fail("select timed out after %.3f s for a %.3f s timeout", select_elapsed, want);
	/* the pipe still wakes poll */
	if (write(pp[1], "x", 1) != 1)
		crt_fail_errno("write");
	p.fd = pp[0];
	p.events = POLLIN;
	if (poll(&p, 1, 10000) != 1 || !(p.revents & POLLIN))
		crt_fail("poll did not see data arrive");
	crt_pass();
}
