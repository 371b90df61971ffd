/*
 * Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS) between parent and child: content written
 * by either side before the checkpoint is visible to both, and after the trigger a ping-pong
 * through the mapping proves it is still one shared mapping, not two copies.
 */
#include "crtest.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define DATA_SIZE (1UL << 20)

struct shared {
	volatile uint32_t ping, pong, stop, child_ready;
	unsigned char parent_data[DATA_SIZE];
	unsigned char child_data[DATA_SIZE];
};

int main(int argc, char **argv)
{
	struct shared *sh;
	uint64_t parent_sum, child_sum;
	pid_t child;
	int status;
	double t;

	crt_init(argc, argv);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		crt_fail_errno("mmap");
	crt_fill(sh->parent_data, DATA_SIZE, 7);
	parent_sum = crt_checksum(sh->parent_data, DATA_SIZE);
	child = crt_fork();
	if (child < 0)
		crt_fail_errno("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		crt_fill(sh->child_data, DATA_SIZE, 8);
		__sync_synchronize();
		sh->child_ready = 1;
		/* answer every ping until told to stop */
		while (!sh->stop) {
			struct timespec nap = { 0, 5 * 1000 * 1000 };
			uint32_t p = sh->ping;

			if (p && sh->pong != p + 1) {
				__sync_synchronize();
				sh->pong = p + 1;
			}
			nanosleep(&nap, NULL);
		}
		_exit(crt_checksum(sh->parent_data, DATA_SIZE) == parent_sum ? 0 : 1);
	}
	t = crt_now();
	while (!sh->child_ready && crt_now() - t < 30)
		crt_sleep(0.01);
	if (!sh->child_ready)
		crt_fail("child did not start");
	child_sum = crt_checksum(sh->child_data, DATA_SIZE);
	crt_ready();
	crt_wait_trigger();

	if (crt_checksum(sh->parent_data, DATA_SIZE) != parent_sum)
		crt_fail("parent's data in the shared mapping changed");
	if (crt_checksum(sh->child_data, DATA_SIZE) != child_sum)
		crt_fail("child's data in the shared mapping changed");
	sh->ping = 0x1234;
	__sync_synchronize();
	t = crt_now();
	while (sh->pong != 0x1235 && crt_now() - t < 60)
		crt_sleep(0.01);
	if (sh->pong != 0x1235)
		crt_fail("child did not answer through the mapping within 60 s (pong %#x): mapping no longer shared",
			 sh->pong);
	sh->stop = 1;
	if (waitpid(child, &status, 0) != child)
		crt_fail_errno("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		crt_fail("child saw different parent data (status %#x)", status);
	crt_pass();
}
