/* A busy counter loop: register-held counters keep their invariant and keep counting. */
#include "crtest.h"

#include <stdint.h>

static volatile uint64_t published;

int main(int argc, char **argv)
{
	/* three counters kept in registers by the loop; c and d follow a */
	uint64_t a = 0, c = 0, d = 0, before, after;
	const uint64_t kc = 0x9E3779B97F4A7C15ULL, kd = 0xC2B2AE3D27D4EB4FULL;
	double t;

	crt_init(argc, argv);
	crt_ready();
	/* do-while: an immediate trigger still leaves one round to check */
	do {
		int i;

		for (i = 0; i < 4096; i++) {
			a++;
			c += kc;
			d -= kd;
		}
		published = a;
	} while (!crt_trigger);
	crt_log("triggered after %llu iterations", (unsigned long long)a);
	if (a == 0)
		crt_fail("the loop never ran");
	if (c != a * kc || d != (uint64_t)0 - a * kd)
		crt_fail("counter invariant broken: a=%llu c=%llx (want %llx) d=%llx (want %llx)",
			 (unsigned long long)a, (unsigned long long)c, (unsigned long long)(a * kc),
			 (unsigned long long)d, (unsigned long long)(0 - a * kd));
	if (published != a)
		crt_fail("published counter %llu out of step with %llu", (unsigned long long)published,
			 (unsigned long long)a);

	/* still counting after the trigger */
	before = a;
	t = crt_now();
	while (crt_now() - t < 0.2)
		a++;
	after = a;
	if (after <= before)
		crt_fail("the counter stopped after the trigger");
	crt_pass();
}
