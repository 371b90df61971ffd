/*
 * A pid namespace: the test's root is the namespace's init (pid 1 inside), with a child that is
 * pid 2 and sees pid 1 as its parent.  The process the harness started creates the namespace,
 * announces the init's pid (as seen outside) in the pidfile and exits, so the checkpointed tree
 * is rooted at the namespace init.  Relies on pids inside the namespace being preserved.
 * Needs root (CLONE_NEWPID).
 */
#include "crtest.h"

#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static int ready_pipe[2], go_pipe[2];

static int init_main(void *arg)
{
	pid_t child;
	int status;
	char c;
	(void)arg;

	crt_child_forget_launcher();
	close(ready_pipe[0]);
	/* own session, so the checkpointed tree holds its session leader */
	if (setsid() < 0)
		crt_fail_errno("setsid in the namespace");
	if (getpid() != 1)
		crt_fail("the namespace init is pid %d, not 1", (int)getpid());
	child = fork();
	if (child < 0)
		crt_fail_errno("fork");
	if (child == 0) {
		close(go_pipe[1]);
		while (read(go_pipe[0], &c, 1) != 0)
			;
		_exit(getpid() == 2 && getppid() == 1 ? 0 : 1);
	}
	close(go_pipe[0]);
	if (child != 2)
		crt_fail("first child in the namespace is pid %d, not 2", (int)child);
	if (write(ready_pipe[1], "r", 1) != 1)
		crt_fail_errno("report ready");
	close(ready_pipe[1]);
	crt_wait_trigger();

	if (getpid() != 1)
		crt_fail("the namespace init is now pid %d", (int)getpid());
	if (getsid(0) != 1)
		crt_fail("the namespace init's session is %d", (int)getsid(0));
	close(go_pipe[1]);
	if (waitpid(2, &status, 0) != 2)
		crt_fail_errno("waitpid(2)");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		crt_fail("the child is no longer pid 2 with parent 1 (status %#x)", status);
	crt_pass();
}

int main(int argc, char **argv)
{
	static char stack[256 * 1024] __attribute__((aligned(16)));
	pid_t init;
	char c;

	crt_init(argc, argv);
	if (pipe(ready_pipe) < 0 || pipe(go_pipe) < 0)
		crt_fail_errno("pipe");
	init = clone(init_main, stack + sizeof(stack), CLONE_NEWPID | SIGCHLD, NULL);
	if (init < 0)
		crt_fail_errno("clone(CLONE_NEWPID)%s", errno == EPERM ? " (needs root)" : "");
	close(ready_pipe[1]);
	close(go_pipe[0]);
	close(go_pipe[1]);
	if (read(ready_pipe[0], &c, 1) != 1)
		crt_fail("the namespace init did not start (see the log)");
	crt_ready_pid(init);
	/* the namespace init is the test now; it writes the outfile */
	_exit(0);
}
