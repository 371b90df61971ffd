/* Exercises the crtest runtime's failure paths for tests/test_cr_programs.py (CRTEST_PROBE picks one). */
#include "crtest.h"

int main(int argc, char **argv)
{
	const char *mode = getenv("CRTEST_PROBE");

	if (!mode)
		mode = "pass";
	crt_init(argc, argv);
	if (!strcmp(mode, "fail-setup"))
		crt_fail("deliberate set-up failure");
	if (!strcmp(mode, "die-setup"))
		_exit(3); /* dies before ready without a verdict */
	if (!strcmp(mode, "chdir") && chdir("/") < 0)
		crt_fail_errno("chdir");
	crt_ready();
	crt_wait_trigger();
	if (!strcmp(mode, "fail-verify"))
		crt_fail("deliberate verification failure");
	crt_pass();
}
