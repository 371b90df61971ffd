/*
 * nanosleep interrupted by the checkpoint: the sleep starts right after ready, so the harness
 * must checkpoint during it (default 15 s, CRTEST_SLEEP_MS overrides).  An interrupted sleep
 * resumes with the remaining time the kernel reported; in total the test must have slept at
 * least the requested time, and not absurdly longer (CRTEST_SLACK_MS, default 900 s, bounds
 * checkpoint + restore).  Wall-clock equality is never assumed.
 */
#include "crtest.h"

int main(int argc, char **argv)
{
	long sleep_ms = crt_env_ms("CRTEST_SLEEP_MS", 15000);
	long slack_ms = crt_env_ms("CRTEST_SLACK_MS", 900000);
	struct timespec req, rem;
	struct crt_mark start;
	double elapsed, want = (double)sleep_ms / 1000.0;
	int interruptions = 0;

	crt_init(argc, argv);
	req.tv_sec = sleep_ms / 1000;
	req.tv_nsec = (sleep_ms % 1000) * 1000000L;
	crt_log("sleeping %ld ms: checkpoint now", sleep_ms);
	crt_ready();
	crt_mark(&start);
	while (nanosleep(&req, &rem) < 0) {
		if (errno != EINTR)
			crt_fail_errno("nanosleep");
		/* a checkpoint (or the trigger) interrupted us: sleep what is left */
		interruptions++;
		crt_log("interrupted, %ld.%09ld s left", (long)rem.tv_sec, rem.tv_nsec);
		if (rem.tv_sec > req.tv_sec || (rem.tv_sec == req.tv_sec && rem.tv_nsec > req.tv_nsec))
			crt_fail("remaining time grew: %ld.%09ld s left of %ld.%09ld s", (long)rem.tv_sec,
				 rem.tv_nsec, (long)req.tv_sec, req.tv_nsec);
		req = rem;
	}
	elapsed = crt_elapsed(&start);
	crt_log("slept %.3f s for %.3f s requested, %d interruption(s)", elapsed, want, interruptions);
	crt_wait_trigger();

	if (elapsed < want)
		crt_fail("slept %.3f s, less than the %.3f s requested", elapsed, want);
	if (elapsed > want + (double)slack_ms / 1000.0)
		crt_fail("slept %.3f s for %.3f s requested (more than %ld ms over)", elapsed, want, slack_ms);
	crt_pass();
}
