/*
 * Floating-point and vector registers hold known values across the wait.  The generic part
 * is plain C (doubles, floats, long double and GCC vector extensions, kept in registers by a
 * call-free loop); where an architecture is known, inline assembly also pins patterns into
 * specific FP/vector registers while it spins (x86_64 xmm8-15, i386 xmm0-7 when the CPU has SSE2,
 * ppc64 f14-f21 and with AltiVec v20-v23, armv7 d8-d15).
 */
#include "crtest.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

typedef double v2d __attribute__((vector_size(16)));
typedef float v4f __attribute__((vector_size(16)));

struct generic_result {
	double d[8];
	float f[4];
	long double ld;
	v2d v;
	v4f w;
	unsigned long spins;
};

static const double d_init[8] = { 1.5, -2.25, 3.125, 1e300, -1e-300, 0.1, 6.02214076e23, 2.718281828459045 };
static const float f_init[4] = { 0.5f, -7.75f, 3.0e30f, 1.1754944e-38f };
/* a literal: IBM long double (ppc64) cannot fold 1.0L / 3.0L at compile time */
static const long double ld_init = 0.33333333333333333333333333333L;
static const v2d v_init = { 12345.678, -0.001953125 };
static const v4f w_init = { 1.0f, 2.5f, -3.75f, 1e-10f };

/*
 * Scaling by 2 and then by 0.5 is exact for these values, and the compiler may not fold it
 * away (x*2 could overflow), so the values live in registers and are really used.
 */
static void *generic_spin(void *arg)
{
	struct generic_result *r = arg;
	double d0 = d_init[0], d1 = d_init[1], d2 = d_init[2], d3 = d_init[3];
	double d4 = d_init[4], d5 = d_init[5], d6 = d_init[6], d7 = d_init[7];
	float f0 = f_init[0], f1 = f_init[1], f2 = f_init[2], f3 = f_init[3];
	long double ld = ld_init;
	v2d v = v_init, two = { 2.0, 2.0 }, half = { 0.5, 0.5 };
	v4f w = w_init, twof = { 2.0f, 2.0f, 2.0f, 2.0f }, halff = { 0.5f, 0.5f, 0.5f, 0.5f };
	unsigned long spins = 0;

	while (!crt_trigger) {
		d0 *= 2.0; d1 *= 2.0; d2 *= 2.0; d3 *= 0.5; d4 *= 2.0; d5 *= 2.0; d6 *= 2.0; d7 *= 2.0;
		f0 *= 2.0f; f1 *= 2.0f; f2 *= 2.0f; f3 *= 2.0f;
		ld *= 2.0L;
		v *= two;
		w *= twof;
		d0 *= 0.5; d1 *= 0.5; d2 *= 0.5; d3 *= 2.0; d4 *= 0.5; d5 *= 0.5; d6 *= 0.5; d7 *= 0.5;
		f0 *= 0.5f; f1 *= 0.5f; f2 *= 0.5f; f3 *= 0.5f;
		ld *= 0.5L;
		v *= half;
		w *= halff;
		spins++;
	}
	r->d[0] = d0; r->d[1] = d1; r->d[2] = d2; r->d[3] = d3;
	r->d[4] = d4; r->d[5] = d5; r->d[6] = d6; r->d[7] = d7;
	r->f[0] = f0; r->f[1] = f1; r->f[2] = f2; r->f[3] = f3;
	r->ld = ld;
	r->v = v;
	r->w = w;
	r->spins = spins;
	return NULL;
}

/* Architecture registers: load patterns, spin on the trigger flag, store them back. */
#define ARCH_WORDS 16
static uint64_t arch_in[ARCH_WORDS] __attribute__((aligned(16)));
static uint64_t arch_out[ARCH_WORDS] __attribute__((aligned(16)));

#if defined(__x86_64__)
#define ARCH_REGS "xmm8-xmm15"
static int arch_spin(void)
{
	__asm__ volatile("movdqu 0(%[in]), %%xmm8\n\t"
			 "movdqu 16(%[in]), %%xmm9\n\t"
			 "movdqu 32(%[in]), %%xmm10\n\t"
			 "movdqu 48(%[in]), %%xmm11\n\t"
			 "movdqu 64(%[in]), %%xmm12\n\t"
			 "movdqu 80(%[in]), %%xmm13\n\t"
			 "movdqu 96(%[in]), %%xmm14\n\t"
			 "movdqu 112(%[in]), %%xmm15\n\t"
			 "1:\n\t"
			 "pause\n\t"
			 "cmpl $0, (%[flag])\n\t"
			 "je 1b\n\t"
			 "movdqu %%xmm8, 0(%[out])\n\t"
			 "movdqu %%xmm9, 16(%[out])\n\t"
			 "movdqu %%xmm10, 32(%[out])\n\t"
			 "movdqu %%xmm11, 48(%[out])\n\t"
			 "movdqu %%xmm12, 64(%[out])\n\t"
			 "movdqu %%xmm13, 80(%[out])\n\t"
			 "movdqu %%xmm14, 96(%[out])\n\t"
			 "movdqu %%xmm15, 112(%[out])\n\t"
			 :
			 : [in] "r"(arch_in), [out] "r"(arch_out), [flag] "r"(&crt_trigger)
			 : "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory",
			   "cc");
	return ARCH_WORDS;
}
#elif defined(__i386__)
/* i386 builds target plain i686 (no SSE); the vector part runs only where the CPU has SSE2 */
#define ARCH_REGS "xmm0-xmm7"
__attribute__((target("sse2"))) static void sse2_spin(void)
{
	__asm__ volatile("movdqu 0(%[in]), %%xmm0\n\t"
			 "movdqu 16(%[in]), %%xmm1\n\t"
			 "movdqu 32(%[in]), %%xmm2\n\t"
			 "movdqu 48(%[in]), %%xmm3\n\t"
			 "movdqu 64(%[in]), %%xmm4\n\t"
			 "movdqu 80(%[in]), %%xmm5\n\t"
			 "movdqu 96(%[in]), %%xmm6\n\t"
			 "movdqu 112(%[in]), %%xmm7\n\t"
			 "1:\n\t"
			 "pause\n\t"
			 "cmpl $0, (%[flag])\n\t"
			 "je 1b\n\t"
			 "movdqu %%xmm0, 0(%[out])\n\t"
			 "movdqu %%xmm1, 16(%[out])\n\t"
			 "movdqu %%xmm2, 32(%[out])\n\t"
			 "movdqu %%xmm3, 48(%[out])\n\t"
			 "movdqu %%xmm4, 64(%[out])\n\t"
			 "movdqu %%xmm5, 80(%[out])\n\t"
			 "movdqu %%xmm6, 96(%[out])\n\t"
			 "movdqu %%xmm7, 112(%[out])\n\t"
			 :
			 : [in] "r"(arch_in), [out] "r"(arch_out), [flag] "r"(&crt_trigger)
			 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "memory", "cc");
}

static int arch_spin(void)
{
	if (!__builtin_cpu_supports("sse2")) {
		crt_log("no SSE2 on this CPU: xmm registers not checked");
		crt_wait_trigger();
		return 0;
	}
	sse2_spin();
	return ARCH_WORDS;
}
#elif defined(__powerpc64__)
#if defined(__ALTIVEC__)
#define ARCH_REGS "f14-f21, v20-v23"
#else
#define ARCH_REGS "f14-f21"
#endif
static int arch_spin(void)
{
	unsigned long tmp;

	__asm__ volatile("lfd 14, 0(%[in])\n\t"
			 "lfd 15, 8(%[in])\n\t"
			 "lfd 16, 16(%[in])\n\t"
			 "lfd 17, 24(%[in])\n\t"
			 "lfd 18, 32(%[in])\n\t"
			 "lfd 19, 40(%[in])\n\t"
			 "lfd 20, 48(%[in])\n\t"
			 "lfd 21, 56(%[in])\n\t"
#if defined(__ALTIVEC__)
			 "li %[tmp], 64\n\t"
			 "lvx 20, %[in], %[tmp]\n\t"
			 "li %[tmp], 80\n\t"
			 "lvx 21, %[in], %[tmp]\n\t"
			 "li %[tmp], 96\n\t"
			 "lvx 22, %[in], %[tmp]\n\t"
			 "li %[tmp], 112\n\t"
			 "lvx 23, %[in], %[tmp]\n\t"
#endif
			 "1:\n\t"
			 "lwz %[tmp], 0(%[flag])\n\t"
			 "cmpwi %[tmp], 0\n\t"
			 "beq 1b\n\t"
			 "stfd 14, 0(%[out])\n\t"
			 "stfd 15, 8(%[out])\n\t"
			 "stfd 16, 16(%[out])\n\t"
			 "stfd 17, 24(%[out])\n\t"
			 "stfd 18, 32(%[out])\n\t"
			 "stfd 19, 40(%[out])\n\t"
			 "stfd 20, 48(%[out])\n\t"
			 "stfd 21, 56(%[out])\n\t"
#if defined(__ALTIVEC__)
			 "li %[tmp], 64\n\t"
			 "stvx 20, %[out], %[tmp]\n\t"
			 "li %[tmp], 80\n\t"
			 "stvx 21, %[out], %[tmp]\n\t"
			 "li %[tmp], 96\n\t"
			 "stvx 22, %[out], %[tmp]\n\t"
			 "li %[tmp], 112\n\t"
			 "stvx 23, %[out], %[tmp]\n\t"
#endif
			 : [tmp] "=&b"(tmp)
			 : [in] "b"(arch_in), [out] "b"(arch_out), [flag] "b"(&crt_trigger)
			 : "fr14", "fr15", "fr16", "fr17", "fr18", "fr19", "fr20", "fr21",
#if defined(__ALTIVEC__)
			   "v20", "v21", "v22", "v23",
#endif
			   "memory", "cr0");
#if defined(__ALTIVEC__)
	return 16;
#else
	return 8;
#endif
}
#elif defined(__arm__) && defined(__ARM_FP)
#define ARCH_REGS "d8-d15"
static int arch_spin(void)
{
	unsigned long tmp;

	__asm__ volatile("vldmia %[in], {d8-d15}\n\t"
			 "1:\n\t"
			 "ldr %[tmp], [%[flag]]\n\t"
			 "cmp %[tmp], #0\n\t"
			 "beq 1b\n\t"
			 "vstmia %[out], {d8-d15}\n\t"
			 : [tmp] "=&r"(tmp)
			 : [in] "r"(arch_in), [out] "r"(arch_out), [flag] "r"(&crt_trigger)
			 : "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15", "memory", "cc");
	return 8;
}
#else
#define ARCH_REGS ""
static int arch_spin(void)
{
	crt_wait_trigger();
	return 0;
}
#endif

static int same_bits(const void *a, const void *b, size_t n)
{
	return memcmp(a, b, n) == 0;
}

int main(int argc, char **argv)
{
	struct generic_result r;
	pthread_t th;
	int i, nwords;

	crt_init(argc, argv);
	for (i = 0; i < ARCH_WORDS; i++)
		arch_in[i] = 0x0123456789abcdefULL * (uint64_t)(i + 1) ^ 0x5a5a5a5a00000000ULL;
	memset(&r, 0, sizeof(r));
	if (pthread_create(&th, NULL, generic_spin, &r))
		crt_fail("pthread_create");
	crt_log("architecture registers checked: %s", ARCH_REGS[0] ? ARCH_REGS : "none (generic C only)");
	crt_ready();
	nwords = arch_spin();
	pthread_join(th, NULL);
	crt_log("generic loop: %lu spins", r.spins);

	for (i = 0; i < nwords; i++)
		if (arch_out[i] != arch_in[i])
			crt_fail("%s: word %d is %016llx, want %016llx", ARCH_REGS, i,
				 (unsigned long long)arch_out[i], (unsigned long long)arch_in[i]);
	for (i = 0; i < 8; i++)
		if (!same_bits(&r.d[i], &d_init[i], sizeof(double)))
			crt_fail("double %d is %.17g, want %.17g", i, r.d[i], d_init[i]);
	for (i = 0; i < 4; i++)
		if (!same_bits(&r.f[i], &f_init[i], sizeof(float)))
			crt_fail("float %d is %.9g, want %.9g", i, (double)r.f[i], (double)f_init[i]);
	if (r.ld != ld_init)
		crt_fail("long double is %.21Lg, want %.21Lg", r.ld, ld_init);
	for (i = 0; i < 2; i++)
		if (!same_bits(&r.v[i], &v_init[i], sizeof(double)))
			crt_fail("vector double lane %d is %.17g, want %.17g", i, r.v[i], v_init[i]);
	for (i = 0; i < 4; i++)
		if (!same_bits(&r.w[i], &w_init[i], sizeof(float)))
			crt_fail("vector float lane %d is %.9g, want %.9g", i, (double)r.w[i], (double)w_init[i]);
	crt_pass();
}
