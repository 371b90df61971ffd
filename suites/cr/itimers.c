/*
 * Interval timers: ITIMER_REAL, ITIMER_VIRTUAL and ITIMER_PROF stay armed with their intervals
 * and keep firing after the trigger (the CPU-time timers while the test burns CPU).
 */
#include "crtest.h"

#include <sys/time.h>

static volatile unsigned long alarms, vtalarms, profs;

static void on_timer(int sig)
{
	if (sig == SIGALRM)
		alarms++;
	else if (sig == SIGVTALRM)
		vtalarms++;
	else
		profs++;
}

static const struct {
	int which;
	const char *name;
	long interval_us;
} timers[3] = {
	{ ITIMER_REAL, "ITIMER_REAL", 100000 },
	{ ITIMER_VIRTUAL, "ITIMER_VIRTUAL", 20000 },
	{ ITIMER_PROF, "ITIMER_PROF", 30000 },
};

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct itimerval it, armed[3], now;
	unsigned long a0, v0, p0;
	volatile double burn = 1.0;
	double t;
	int i;

	crt_init(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_timer;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGVTALRM, &sa, NULL);
	sigaction(SIGPROF, &sa, NULL);
	for (i = 0; i < 3; i++) {
		it.it_interval.tv_sec = 0;
		it.it_interval.tv_usec = timers[i].interval_us;
		it.it_value = it.it_interval;
		if (setitimer(timers[i].which, &it, NULL) < 0)
			crt_fail_errno("setitimer %s", timers[i].name);
		/* the interval as the kernel stores it (it may round to its clock) */
		getitimer(timers[i].which, &armed[i]);
	}
	crt_ready();
	crt_wait_trigger();

	for (i = 0; i < 3; i++) {
		if (getitimer(timers[i].which, &now) < 0)
			crt_fail_errno("getitimer");
		if (now.it_interval.tv_sec != armed[i].it_interval.tv_sec ||
		    now.it_interval.tv_usec != armed[i].it_interval.tv_usec)
			crt_fail("%s interval %ld.%06ld s, want %ld.%06ld s", timers[i].name,
				 (long)now.it_interval.tv_sec, (long)now.it_interval.tv_usec,
				 (long)armed[i].it_interval.tv_sec, (long)armed[i].it_interval.tv_usec);
		if (!now.it_value.tv_sec && !now.it_value.tv_usec)
			crt_fail("%s is disarmed", timers[i].name);
	}
	/* they still fire: real time by waiting, CPU time by burning CPU (bounded by wall time) */
	a0 = alarms;
	t = crt_now();
	while (alarms < a0 + 3 && crt_now() - t < 60)
		crt_sleep(0.05);
	if (alarms < a0 + 3)
		crt_fail("ITIMER_REAL fired %lu times in 60 s after the trigger", alarms - a0);
	v0 = vtalarms;
	p0 = profs;
	t = crt_now();
	while ((vtalarms < v0 + 3 || profs < p0 + 3) && crt_now() - t < 120)
		for (i = 0; i < 100000; i++)
			burn = burn * 1.0000001 + 1e-9;
	if (vtalarms < v0 + 3 || profs < p0 + 3)
		crt_fail("CPU timers fired %lu (VIRTUAL) and %lu (PROF) times in 120 s of burning", vtalarms - v0,
			 profs - p0);
	crt_log("after the trigger: %lu SIGALRM, %lu SIGVTALRM, %lu SIGPROF", alarms - a0, vtalarms - v0,
		profs - p0);
	crt_pass();
}
