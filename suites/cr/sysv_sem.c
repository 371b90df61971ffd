/*
 * A SysV semaphore set in a private IPC namespace: values and mode, and a child blocked in
 * semop() across the checkpoint until the parent raises the semaphore after the trigger.
 * Needs root.
 */
#include "crtest.h"

#include <sched.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/wait.h>

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

int main(int argc, char **argv)
{
	unsigned short init[4] = { 1, 7, 300, 0 }, now[4];
	struct semid_ds ds;
	union semun arg;
	struct sembuf op;
	int id, i, status, waiting;
	pid_t child;
	double t;

	crt_init(argc, argv);
	if (unshare(CLONE_NEWIPC) < 0)
		crt_fail_errno("unshare(CLONE_NEWIPC)%s", errno == EPERM ? " (needs root)" : "");
	id = semget(IPC_PRIVATE, 4, IPC_CREAT | 0600);
	if (id < 0)
		crt_fail_errno("semget");
	arg.array = init;
	if (semctl(id, 0, SETALL, arg) < 0)
		crt_fail_errno("semctl SETALL");
	child = crt_fork();
	if (child < 0)
		crt_fail_errno("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		op.sem_num = 3;
		op.sem_op = -1;
		op.sem_flg = 0;
		while (semop(id, &op, 1) < 0)
			if (errno != EINTR)
				_exit(2);
		_exit(0);
	}
	/* ready once the child is queued on semaphore 3 */
	t = crt_now();
	while ((waiting = semctl(id, 3, GETNCNT)) < 1 && crt_now() - t < 30)
		crt_sleep(0.01);
	if (waiting < 1)
		crt_fail("child never blocked on the semaphore");
	crt_ready();
	crt_wait_trigger();

	if (semctl(id, 0, IPC_STAT, (union semun){ .buf = &ds }) < 0)
		crt_fail_errno("semctl IPC_STAT (set id %d gone?)", id);
	if (ds.sem_nsems != 4 || (ds.sem_perm.mode & 0777) != 0600)
		crt_fail("set: %lu semaphores mode %o, want 4 600", (unsigned long)ds.sem_nsems, ds.sem_perm.mode & 0777);
	arg.array = now;
	if (semctl(id, 0, GETALL, arg) < 0)
		crt_fail_errno("semctl GETALL");
	for (i = 0; i < 4; i++)
		if (now[i] != init[i])
			crt_fail("semaphore %d is %u, want %u", i, now[i], init[i]);
	if (semctl(id, 3, GETNCNT) != 1)
		crt_fail("the child is no longer waiting on semaphore 3 (ncnt %d)", semctl(id, 3, GETNCNT));
	/* take all 7 of semaphore 1, then an eighth must not be available */
	op.sem_num = 1;
	op.sem_op = -7;
	op.sem_flg = IPC_NOWAIT;
	if (semop(id, &op, 1) < 0)
		crt_fail_errno("semop -7");
	op.sem_op = -1;
	if (semop(id, &op, 1) != -1 || errno != EAGAIN)
		crt_fail("semaphore 1 held more than 7");
	/* release the child */
	op.sem_num = 3;
	op.sem_op = 1;
	op.sem_flg = 0;
	if (semop(id, &op, 1) < 0)
		crt_fail_errno("semop +1");
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		crt_fail("blocked child did not complete its semop (status %#x)", status);
	semctl(id, 0, IPC_RMID);
	crt_pass();
}
