/*
 * A process tree: three children, three grandchildren, one child leading its own process
 * group.  Every process checks its pid, parent, process group and session after the trigger,
 * and statuses travel up the tree through waitpid(), which only a real parent can do.
 * Relies on pids being preserved.
 */
#include "crtest.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int go_pipe[2], ready_pipe[2];

struct ids {
	pid_t pid, ppid, pgid, sid;
};

static void record(struct ids *me)
{
	me->pid = getpid();
	me->ppid = getppid();
	me->pgid = getpgid(0);
	me->sid = getsid(0);
}

/* 0 when the ids still hold; logs what changed otherwise */
static int check(const char *who, const struct ids *want)
{
	struct ids now;

	record(&now);
	if (!memcmp(&now, want, sizeof(now)))
		return 0;
	crt_log("%s: pid/ppid/pgid/sid now %d/%d/%d/%d, were %d/%d/%d/%d", who, (int)now.pid, (int)now.ppid,
		(int)now.pgid, (int)now.sid, (int)want->pid, (int)want->ppid, (int)want->pgid, (int)want->sid);
	return -1;
}

/* Block until the root closes the go pipe (EOF), whatever signals or restores happen meanwhile. */
static void wait_go(void)
{
	char c;

	while (read(go_pipe[0], &c, 1) != 0)
		;
}

static int reap(pid_t *kids, int n, const char *who)
{
	int i, status, bad = 0;

	for (i = 0; i < n; i++) {
		if (waitpid(kids[i], &status, 0) != kids[i]) {
			crt_log("%s: waitpid(%d): %s (not my child any more?)", who, (int)kids[i], strerror(errno));
			bad = 1;
		} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			crt_log("%s: child %d ended with status %#x", who, (int)kids[i], status);
			bad = 1;
		}
	}
	return bad;
}

static __attribute__((noreturn)) void member(const char *who, int nkids, int own_group)
{
	struct ids me;
	pid_t kids[4];
	int i;
	char name[32];

	close(go_pipe[1]);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (own_group && setpgid(0, 0) < 0)
		_exit(10);
	for (i = 0; i < nkids; i++) {
		kids[i] = crt_fork();
		if (kids[i] < 0)
			_exit(11);
		if (kids[i] == 0) {
			snprintf(name, sizeof(name), "%s.%d", who, i + 1);
			member(name, 0, 0);
		}
	}
	record(&me);
	if (write(ready_pipe[1], "r", 1) != 1)
		_exit(12);
	close(ready_pipe[1]);
	wait_go();
	if (check(who, &me))
		_exit(13);
	_exit(reap(kids, nkids, who) ? 14 : 0);
}

int main(int argc, char **argv)
{
	const int shape[3] = { 2, 1, 0 }; /* grandchildren per child */
	pid_t kids[3];
	struct ids me;
	int i, n = 0;
	char c, name[16];

	crt_init(argc, argv);
	if (pipe(go_pipe) < 0 || pipe(ready_pipe) < 0)
		crt_fail_errno("pipe");
	for (i = 0; i < 3; i++) {
		kids[i] = crt_fork();
		if (kids[i] < 0)
			crt_fail_errno("fork");
		if (kids[i] == 0) {
			snprintf(name, sizeof(name), "child%d", i + 1);
			member(name, shape[i], i == 1);
		}
	}
	close(go_pipe[0]);
	close(ready_pipe[1]);
	/* 3 children + 3 grandchildren report in */
	while (n < 6 && read(ready_pipe[0], &c, 1) == 1)
		n++;
	close(ready_pipe[0]);
	if (n != 6)
		crt_fail("only %d of 6 descendants started", n);
	record(&me);
	crt_ready();
	crt_wait_trigger();

	/* the root's parent is the launcher, which exits once we are ready: not part of the tree */
	me.ppid = getppid();
	if (check("root", &me))
		crt_fail("root's pid/ppid/pgid/sid changed");
	close(go_pipe[1]);
	if (reap(kids, 3, "root"))
		crt_fail("the tree's shape or ids changed (details in the log)");
	crt_pass();
}
