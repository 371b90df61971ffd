/*
 * 64 MiB of private anonymous memory with a checksum, plus an untouched region that must stay
 * zero and a read-only region whose protection must survive.
 */
#include "crtest.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BIG (64UL << 20)
#define ZERO_SIZE (4UL << 20)
#define RO_SIZE (1UL << 20)

/* the permission string of the mapping that contains addr, from /proc/self/maps */
static int maps_perms(void *addr, char perms[5])
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long lo, hi, a = (unsigned long)addr;
	int found = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && a >= lo && a < hi) {
			found = 0;
			break;
		}
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	unsigned char *big, *zero, *ro;
	uint64_t sum, ro_sum, now;
	char perms[5];
	size_t i;

	crt_init(argc, argv);
	big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	zero = mmap(NULL, ZERO_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro = mmap(NULL, RO_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (big == MAP_FAILED || zero == MAP_FAILED || ro == MAP_FAILED)
		crt_fail_errno("mmap");
	crt_fill(big, BIG, 64);
	sum = crt_checksum(big, BIG);
	crt_fill(ro, RO_SIZE, 65);
	ro_sum = crt_checksum(ro, RO_SIZE);
	if (mprotect(ro, RO_SIZE, PROT_READ) < 0)
		crt_fail_errno("mprotect");
	crt_log("64 MiB at %p checksum %016llx", (void *)big, (unsigned long long)sum);
	crt_ready();
	crt_wait_trigger();

	now = crt_checksum(big, BIG);
	if (now != sum) {
		/* regenerate the pattern to say where it differs */
		unsigned char *want = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (want != MAP_FAILED) {
			crt_fill(want, BIG, 64);
			for (i = 0; i < BIG && big[i] == want[i]; i++)
				;
			crt_fail("64 MiB checksum %016llx, want %016llx; first difference at offset %zu",
				 (unsigned long long)now, (unsigned long long)sum, i);
		}
		crt_fail("64 MiB checksum %016llx, want %016llx", (unsigned long long)now, (unsigned long long)sum);
	}
	for (i = 0; i < ZERO_SIZE; i++)
		if (zero[i])
			crt_fail("untouched memory not zero at offset %zu", i);
	if (crt_checksum(ro, RO_SIZE) != ro_sum)
		crt_fail("read-only region changed");
	if (maps_perms(ro, perms) < 0)
		crt_fail("read-only region missing from /proc/self/maps");
	if (strncmp(perms, "r--p", 4))
		crt_fail("read-only region has permissions %s, want r--p", perms);
	if (maps_perms(big, perms) < 0 || strncmp(perms, "rw-p", 4))
		crt_fail("64 MiB region permissions %s, want rw-p", perms);
	crt_pass();
}
