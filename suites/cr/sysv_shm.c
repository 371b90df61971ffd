/*
 * SysV shared memory in a private IPC namespace (so the engine checkpoints the namespace with
 * the test): a segment attached by parent and child with content from both, and a second,
 * detached segment whose content must survive on its own.  Needs root (unshare CLONE_NEWIPC).
 */
#include "crtest.h"

#include <sched.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define SEG_SIZE (1000 * 1000 + 123) /* not a page multiple: the requested size must be kept */
#define HALF (SEG_SIZE / 2)
#define DETACHED_KEY 0x63720001
#define DETACHED_SIZE 65536

int main(int argc, char **argv)
{
	int id, id2, go[2], ready[2], status;
	unsigned char *seg, *seg2;
	uint64_t first, second, detached;
	struct shmid_ds ds;
	pid_t child;
	char c;

	crt_init(argc, argv);
	if (unshare(CLONE_NEWIPC) < 0)
		crt_fail_errno("unshare(CLONE_NEWIPC)%s", errno == EPERM ? " (needs root)" : "");
	id = shmget(IPC_PRIVATE, SEG_SIZE, IPC_CREAT | 0640);
	id2 = shmget(DETACHED_KEY, DETACHED_SIZE, IPC_CREAT | IPC_EXCL | 0600);
	if (id < 0 || id2 < 0)
		crt_fail_errno("shmget");
	seg = shmat(id, NULL, 0);
	seg2 = shmat(id2, NULL, 0);
	if (seg == (void *)-1 || seg2 == (void *)-1)
		crt_fail_errno("shmat");
	crt_fill(seg2, DETACHED_SIZE, 52);
	detached = crt_checksum(seg2, DETACHED_SIZE);
	shmdt(seg2);
	crt_fill(seg, HALF, 50);
	first = crt_checksum(seg, HALF);
	if (pipe(go) < 0 || pipe(ready) < 0)
		crt_fail_errno("pipe");
	child = crt_fork();
	if (child < 0)
		crt_fail_errno("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(go[1]);
		unsigned char orig = seg[0];

		crt_fill(seg + HALF, SEG_SIZE - HALF, 51);
		if (write(ready[1], "r", 1) != 1)
			_exit(2);
		while (read(go[0], &c, 1) != 0)
			;
		/* the parent changed the first byte after the trigger: still the same segment? */
		_exit(seg[0] == (unsigned char)~orig ? 0 : 1);
	}
	close(go[0]);
	if (read(ready[0], &c, 1) != 1)
		crt_fail("child did not start");
	second = crt_checksum(seg + HALF, SEG_SIZE - HALF);
	crt_ready();
	crt_wait_trigger();

	if (crt_checksum(seg, HALF) != first)
		crt_fail("parent's half of the attached segment changed");
	if (crt_checksum(seg + HALF, SEG_SIZE - HALF) != second)
		crt_fail("child's half of the attached segment changed");
	if (shmctl(id, IPC_STAT, &ds) < 0)
		crt_fail_errno("shmctl IPC_STAT (segment id %d gone?)", id);
	if (ds.shm_segsz != SEG_SIZE || (ds.shm_perm.mode & 0777) != 0640 || ds.shm_nattch != 2)
		crt_fail("segment: size %zu mode %o nattch %lu, want %d 640 2", (size_t)ds.shm_segsz,
			 ds.shm_perm.mode & 0777, (unsigned long)ds.shm_nattch, SEG_SIZE);
	if (shmget(DETACHED_KEY, 0, 0) != id2)
		crt_fail("keyed segment %#x no longer has id %d", DETACHED_KEY, id2);
	seg2 = shmat(id2, NULL, SHM_RDONLY);
	if (seg2 == (void *)-1)
		crt_fail_errno("shmat detached segment");
	if (crt_checksum(seg2, DETACHED_SIZE) != detached)
		crt_fail("detached segment's content changed");
	/* one segment, two processes: the child must see a write made now */
	seg[0] = (unsigned char)~seg[0];
	close(go[1]);
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		crt_fail("child did not see the parent's write: no longer one shared segment (status %#x)", status);
	shmctl(id, IPC_RMID, NULL);
	shmctl(id2, IPC_RMID, NULL);
	crt_pass();
}
