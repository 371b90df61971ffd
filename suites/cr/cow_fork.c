/*
 * Copy-on-write after fork: parent and child write different pages of a private mapping they
 * share copy-on-write; each must still see only its own writes and the original elsewhere.
 */
#include "crtest.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define NPAGES 256

static size_t page;
static unsigned char *area, *scratch;

/* Which writer owns a page: the child writes odd pages, the parent every fourth page. */
static int child_writes(int i)
{
	return i % 2 == 1;
}

static int parent_writes(int i)
{
	return i % 4 == 0;
}

/* index of the first page that does not hold what this side should see, or -1 */
static int first_bad_page(int is_child)
{
	unsigned char *want;
	int i;

	/* scratch holds the original pattern; the last page of it is rewritten per owned page */
	crt_fill(scratch, page * NPAGES, 1);
	for (i = 0; i < NPAGES; i++) {
		want = scratch + (size_t)i * page;
		if (is_child && child_writes(i)) {
			want = scratch + (size_t)NPAGES * page;
			crt_fill(want, page, 1000 + (uint64_t)i);
		} else if (!is_child && parent_writes(i)) {
			want = scratch + (size_t)NPAGES * page;
			crt_fill(want, page, 2000 + (uint64_t)i);
		}
		if (memcmp(area + (size_t)i * page, want, page))
			return i;
	}
	return -1;
}

int main(int argc, char **argv)
{
	int go[2], ready[2], i, status, bad;
	pid_t child;
	char c;

	crt_init(argc, argv);
	page = (size_t)sysconf(_SC_PAGESIZE);
	area = mmap(NULL, page * NPAGES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	scratch = mmap(NULL, page * (NPAGES + 1), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED || scratch == MAP_FAILED)
		crt_fail_errno("mmap");
	crt_fill(area, page * NPAGES, 1);
	if (pipe(go) < 0 || pipe(ready) < 0)
		crt_fail_errno("pipe");
	child = crt_fork();
	if (child < 0)
		crt_fail_errno("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(go[1]);
		close(ready[0]);
		for (i = 0; i < NPAGES; i++)
			if (child_writes(i))
				crt_fill(area + (size_t)i * page, page, 1000 + (uint64_t)i);
		if (write(ready[1], "r", 1) != 1)
			_exit(2);
		while (read(go[0], &c, 1) != 0)
			;
		bad = first_bad_page(1);
		if (bad >= 0)
			crt_log("child: page %d does not hold what the child should see", bad);
		_exit(bad >= 0 ? 1 : 0);
	}
	close(go[0]);
	close(ready[1]);
	for (i = 0; i < NPAGES; i++)
		if (parent_writes(i))
			crt_fill(area + (size_t)i * page, page, 2000 + (uint64_t)i);
	if (read(ready[0], &c, 1) != 1)
		crt_fail("child did not start");
	crt_ready();
	crt_wait_trigger();

	bad = first_bad_page(0);
	close(go[1]);
	if (waitpid(child, &status, 0) != child)
		crt_fail_errno("waitpid");
	if (bad >= 0)
		crt_fail("parent: page %d does not hold what the parent should see", bad);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		crt_fail("child saw the wrong content (status %#x, details in the log)", status);
	crt_pass();
}
