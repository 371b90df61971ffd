/*
 * Must-fail case: the test holds a flock() lock.  An engine that refuses held file locks (CRIU
 * without --file-locks) must fail the checkpoint cleanly; either way the test then checks that
 * it still holds the lock and is otherwise unharmed.
 */
#include "crtest.h"

#include <fcntl.h>
#include <sys/file.h>

int main(int argc, char **argv)
{
	char path[96];
	int fd, other;

	crt_init(argc, argv);
	snprintf(path, sizeof(path), "%s.lock", crt_name());
	fd = open(path, O_RDWR | O_CREAT, 0644);
	if (fd < 0)
		crt_fail_errno("open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		crt_fail_errno("flock");
	crt_ready();
	crt_wait_trigger();

	/* a separate open file description must not get the lock while ours holds it */
	other = open(path, O_RDWR);
	if (other < 0)
		crt_fail_errno("reopen %s", path);
	if (flock(other, LOCK_EX | LOCK_NB) == 0)
		crt_fail("the lock is no longer held");
	if (errno != EWOULDBLOCK)
		crt_fail_errno("flock probe");
	if (flock(fd, LOCK_UN) < 0 || flock(other, LOCK_EX | LOCK_NB) < 0)
		crt_fail_errno("unlock and relock");
	unlink(path);
	crt_pass();
}
