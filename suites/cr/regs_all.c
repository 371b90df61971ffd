/*
 * Every register at once: all general-purpose registers but the stack pointer, every SSE register,
 * MXCSR, the x87 control word and all eight x87 stack registers hold known, distinct patterns
 * while an assembly loop polls crt_trigger.  Nothing but the kernel touches them between the fill
 * and the check: the loop changes only the flags, and the trigger handler runs in a signal frame
 * the kernel saves and restores.  A checkpoint taken in the loop and restored must give every
 * register back; the first wrong one is named in the verdict.
 *
 * x86_64: rax rbx rcx rdx rsi rdi rbp r8-r15, xmm0-15; i386: eax ebx ecx edx esi edi ebp, xmm0-7
 * (SSE, which the i386 target's pentium3 has).  On other architectures the program builds but has
 * no register test (the catalogue limits it to x86_64 and i386).
 */
#include "crtest.h"

#include <inttypes.h>

#if defined(__x86_64__) || defined(__i386__)

#ifdef __x86_64__
#define NGPR 15
#define NXMM 16
static const char *const gpr_names[NGPR] = {
	"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
};
#else
#define NGPR 7
#define NXMM 8
static const char *const gpr_names[NGPR] = { "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp" };
#endif

/* The layout the assembly below uses (offsets checked at compile time). */
struct regs_buf {
	unsigned char x87_in[8][16];	/*   0: 80-bit values, loaded st7 first */
	unsigned char x87_out[8][16];	/* 128: stored st0 first */
	unsigned char xmm_in[16][16];	/* 256 */
	unsigned char xmm_out[16][16];	/* 512 */
	unsigned long gpr_in[16];	/* 768 */
	unsigned long gpr_out[16];	/* 768 + 16 words */
	uint32_t mxcsr_in, mxcsr_out, mxcsr_save;
	uint16_t fcw_in, fcw_out, fcw_save;
};

#define W ((int)sizeof(unsigned long))
_Static_assert(offsetof(struct regs_buf, x87_out) == 128, "x87_out");
_Static_assert(offsetof(struct regs_buf, xmm_in) == 256, "xmm_in");
_Static_assert(offsetof(struct regs_buf, xmm_out) == 512, "xmm_out");
_Static_assert(offsetof(struct regs_buf, gpr_in) == 768, "gpr_in");
_Static_assert(offsetof(struct regs_buf, gpr_out) == 768 + 16 * W, "gpr_out");
_Static_assert(offsetof(struct regs_buf, mxcsr_in) == 768 + 32 * W, "mxcsr_in");
_Static_assert(offsetof(struct regs_buf, mxcsr_out) == 768 + 32 * W + 4, "mxcsr_out");
_Static_assert(offsetof(struct regs_buf, mxcsr_save) == 768 + 32 * W + 8, "mxcsr_save");
_Static_assert(offsetof(struct regs_buf, fcw_in) == 768 + 32 * W + 12, "fcw_in");
_Static_assert(offsetof(struct regs_buf, fcw_out) == 768 + 32 * W + 14, "fcw_out");
_Static_assert(offsetof(struct regs_buf, fcw_save) == 768 + 32 * W + 16, "fcw_save");

/* Fill, spin until crt_trigger is set, store, restore the caller's MXCSR and x87 control word. */
void regs_all_spin(struct regs_buf *b);

#ifdef __x86_64__
/* System V AMD64: b in rdi; rbx rbp r12-r15 are the caller's and are saved here. */
__asm__(
	".text\n"
	".globl regs_all_spin\n"
	".type regs_all_spin, @function\n"
	"regs_all_spin:\n"
	"	push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
	"	push %rdi\n"				/* b, found again after the loop */
	"	stmxcsr 1032(%rdi)\n"			/* mxcsr_save */
	"	fnstcw 1040(%rdi)\n"			/* fcw_save */
	"	fninit\n"
	"	fldcw 1036(%rdi)\n"			/* fcw_in */
	"	fldt 0(%rdi)\n fldt 16(%rdi)\n fldt 32(%rdi)\n fldt 48(%rdi)\n"
	"	fldt 64(%rdi)\n fldt 80(%rdi)\n fldt 96(%rdi)\n fldt 112(%rdi)\n"
	"	ldmxcsr 1024(%rdi)\n"			/* mxcsr_in */
	"	movups 256(%rdi), %xmm0\n movups 272(%rdi), %xmm1\n movups 288(%rdi), %xmm2\n"
	"	movups 304(%rdi), %xmm3\n movups 320(%rdi), %xmm4\n movups 336(%rdi), %xmm5\n"
	"	movups 352(%rdi), %xmm6\n movups 368(%rdi), %xmm7\n movups 384(%rdi), %xmm8\n"
	"	movups 400(%rdi), %xmm9\n movups 416(%rdi), %xmm10\n movups 432(%rdi), %xmm11\n"
	"	movups 448(%rdi), %xmm12\n movups 464(%rdi), %xmm13\n movups 480(%rdi), %xmm14\n"
	"	movups 496(%rdi), %xmm15\n"
	/* gpr_in[14] .. gpr_in[0] onto the stack, then popped into rax .. r15 */
	"	pushq 880(%rdi)\n pushq 872(%rdi)\n pushq 864(%rdi)\n pushq 856(%rdi)\n pushq 848(%rdi)\n"
	"	pushq 840(%rdi)\n pushq 832(%rdi)\n pushq 824(%rdi)\n pushq 816(%rdi)\n pushq 808(%rdi)\n"
	"	pushq 800(%rdi)\n pushq 792(%rdi)\n pushq 784(%rdi)\n pushq 776(%rdi)\n pushq 768(%rdi)\n"
	"	pop %rax\n pop %rbx\n pop %rcx\n pop %rdx\n pop %rsi\n pop %rdi\n pop %rbp\n"
	"	pop %r8\n pop %r9\n pop %r10\n pop %r11\n pop %r12\n pop %r13\n pop %r14\n pop %r15\n"
	"1:	pause\n"
	"	cmpl $0, crt_trigger(%rip)\n"
	"	je 1b\n"
	"	push %r15\n push %r14\n push %r13\n push %r12\n push %r11\n push %r10\n push %r9\n"
	"	push %r8\n push %rbp\n push %rdi\n push %rsi\n push %rdx\n push %rcx\n push %rbx\n"
	"	push %rax\n"				/* 0(%rsp) = rax ... 112(%rsp) = r15 */
	"	mov 120(%rsp), %rax\n"			/* b */
	"	mov 0(%rsp), %rcx\n mov %rcx, 896(%rax)\n mov 8(%rsp), %rcx\n mov %rcx, 904(%rax)\n"
	"	mov 16(%rsp), %rcx\n mov %rcx, 912(%rax)\n mov 24(%rsp), %rcx\n mov %rcx, 920(%rax)\n"
	"	mov 32(%rsp), %rcx\n mov %rcx, 928(%rax)\n mov 40(%rsp), %rcx\n mov %rcx, 936(%rax)\n"
	"	mov 48(%rsp), %rcx\n mov %rcx, 944(%rax)\n mov 56(%rsp), %rcx\n mov %rcx, 952(%rax)\n"
	"	mov 64(%rsp), %rcx\n mov %rcx, 960(%rax)\n mov 72(%rsp), %rcx\n mov %rcx, 968(%rax)\n"
	"	mov 80(%rsp), %rcx\n mov %rcx, 976(%rax)\n mov 88(%rsp), %rcx\n mov %rcx, 984(%rax)\n"
	"	mov 96(%rsp), %rcx\n mov %rcx, 992(%rax)\n mov 104(%rsp), %rcx\n mov %rcx, 1000(%rax)\n"
	"	mov 112(%rsp), %rcx\n mov %rcx, 1008(%rax)\n"
	"	add $120, %rsp\n"
	"	movups %xmm0, 512(%rax)\n movups %xmm1, 528(%rax)\n movups %xmm2, 544(%rax)\n"
	"	movups %xmm3, 560(%rax)\n movups %xmm4, 576(%rax)\n movups %xmm5, 592(%rax)\n"
	"	movups %xmm6, 608(%rax)\n movups %xmm7, 624(%rax)\n movups %xmm8, 640(%rax)\n"
	"	movups %xmm9, 656(%rax)\n movups %xmm10, 672(%rax)\n movups %xmm11, 688(%rax)\n"
	"	movups %xmm12, 704(%rax)\n movups %xmm13, 720(%rax)\n movups %xmm14, 736(%rax)\n"
	"	movups %xmm15, 752(%rax)\n"
	"	stmxcsr 1028(%rax)\n"			/* mxcsr_out */
	"	fnstcw 1038(%rax)\n"			/* fcw_out */
	"	fstpt 128(%rax)\n fstpt 144(%rax)\n fstpt 160(%rax)\n fstpt 176(%rax)\n"
	"	fstpt 192(%rax)\n fstpt 208(%rax)\n fstpt 224(%rax)\n fstpt 240(%rax)\n"
	"	ldmxcsr 1032(%rax)\n"
	"	fldcw 1040(%rax)\n"
	"	pop %rdi\n"
	"	pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
	"	ret\n"
	".size regs_all_spin, .-regs_all_spin\n");
_Static_assert(offsetof(struct regs_buf, mxcsr_in) == 1024, "x86_64 offsets");
#else
/*
 * i386 cdecl: b at 4(%esp); ebx esi edi ebp are the caller's and are saved here.  The loop names
 * crt_trigger by its absolute address (no register is free to hold a GOT pointer): the programs
 * are linked static, not PIE.
 */
__asm__(
	".text\n"
	".globl regs_all_spin\n"
	".type regs_all_spin, @function\n"
	"regs_all_spin:\n"
	"	push %ebx\n push %esi\n push %edi\n push %ebp\n"
	"	mov 20(%esp), %eax\n"			/* b */
	"	push %eax\n"
	"	stmxcsr 904(%eax)\n"			/* mxcsr_save */
	"	fnstcw 912(%eax)\n"			/* fcw_save */
	"	fninit\n"
	"	fldcw 908(%eax)\n"			/* fcw_in */
	"	fldt 0(%eax)\n fldt 16(%eax)\n fldt 32(%eax)\n fldt 48(%eax)\n"
	"	fldt 64(%eax)\n fldt 80(%eax)\n fldt 96(%eax)\n fldt 112(%eax)\n"
	"	ldmxcsr 896(%eax)\n"			/* mxcsr_in */
	"	movups 256(%eax), %xmm0\n movups 272(%eax), %xmm1\n movups 288(%eax), %xmm2\n"
	"	movups 304(%eax), %xmm3\n movups 320(%eax), %xmm4\n movups 336(%eax), %xmm5\n"
	"	movups 352(%eax), %xmm6\n movups 368(%eax), %xmm7\n"
	/* gpr_in[6] .. gpr_in[0] onto the stack, then popped into eax .. ebp */
	"	pushl 792(%eax)\n pushl 788(%eax)\n pushl 784(%eax)\n pushl 780(%eax)\n"
	"	pushl 776(%eax)\n pushl 772(%eax)\n pushl 768(%eax)\n"
	"	pop %eax\n pop %ebx\n pop %ecx\n pop %edx\n pop %esi\n pop %edi\n pop %ebp\n"
	"1:	pause\n"
	"	cmpl $0, crt_trigger\n"
	"	je 1b\n"
	"	push %ebp\n push %edi\n push %esi\n push %edx\n push %ecx\n push %ebx\n"
	"	push %eax\n"				/* 0(%esp) = eax ... 24(%esp) = ebp */
	"	mov 28(%esp), %eax\n"			/* b */
	"	mov 0(%esp), %ecx\n mov %ecx, 832(%eax)\n mov 4(%esp), %ecx\n mov %ecx, 836(%eax)\n"
	"	mov 8(%esp), %ecx\n mov %ecx, 840(%eax)\n mov 12(%esp), %ecx\n mov %ecx, 844(%eax)\n"
	"	mov 16(%esp), %ecx\n mov %ecx, 848(%eax)\n mov 20(%esp), %ecx\n mov %ecx, 852(%eax)\n"
	"	mov 24(%esp), %ecx\n mov %ecx, 856(%eax)\n"
	"	add $28, %esp\n"
	"	movups %xmm0, 512(%eax)\n movups %xmm1, 528(%eax)\n movups %xmm2, 544(%eax)\n"
	"	movups %xmm3, 560(%eax)\n movups %xmm4, 576(%eax)\n movups %xmm5, 592(%eax)\n"
	"	movups %xmm6, 608(%eax)\n movups %xmm7, 624(%eax)\n"
	"	stmxcsr 900(%eax)\n"			/* mxcsr_out */
	"	fnstcw 910(%eax)\n"			/* fcw_out */
	"	fstpt 128(%eax)\n fstpt 144(%eax)\n fstpt 160(%eax)\n fstpt 176(%eax)\n"
	"	fstpt 192(%eax)\n fstpt 208(%eax)\n fstpt 224(%eax)\n fstpt 240(%eax)\n"
	"	ldmxcsr 904(%eax)\n"
	"	fldcw 912(%eax)\n"
	"	pop %eax\n"
	"	pop %ebp\n pop %edi\n pop %esi\n pop %ebx\n"
	"	ret\n"
	".size regs_all_spin, .-regs_all_spin\n");
_Static_assert(offsetof(struct regs_buf, mxcsr_in) == 896, "i386 offsets");
#endif

/* A value no other register holds, with every byte set and the high half non-zero. */
static unsigned long gpr_pattern(int i)
{
	uint64_t v = 0x0102030405060708ULL * (uint64_t)(0x11 * (i + 1)) ^ 0x8040201008040201ULL;

	return (unsigned long)(v ^ ((uint64_t)(i + 1) << 56) ^ (uint64_t)(i + 1));
}

static void fill(struct regs_buf *b)
{
	int i, j;

	memset(b, 0, sizeof(*b));
	for (i = 0; i < NGPR; i++)
		b->gpr_in[i] = gpr_pattern(i);
	for (i = 0; i < NXMM; i++)
		for (j = 0; j < 16; j++)
			b->xmm_in[i][j] = (unsigned char)(0x10 * i + j) ^ 0xa5;
	for (i = 0; i < 8; i++) {
		/* a normal 80-bit extended value: 64-bit mantissa with its integer bit, exponent */
		uint64_t mant = 0x8000000000000000ULL | (0x0123456789abcdefULL * (uint64_t)(i + 3));
		uint16_t exp = (uint16_t)(0x3fff + 7 * i - 20) | (i & 1 ? 0x8000 : 0);

		memcpy(b->x87_in[i], &mant, 8);
		memcpy(b->x87_in[i] + 8, &exp, 2);
	}
	/* exceptions masked, round up (RC=10), flush-to-zero (no DAZ: a pentium3 lacks it) */
	b->mxcsr_in = 0x1f80 | 0x4000 | 0x8000;
	/* exceptions masked, double precision (PC=10), round toward zero (RC=11) */
	b->fcw_in = 0x037f & ~0x0100;
	b->fcw_in |= 0x0c00;
}

static void hex(char *out, const unsigned char *p, int n)
{
	int i;

	for (i = n - 1; i >= 0; i--)
		out += sprintf(out, "%02x", p[i]);
}

int main(int argc, char **argv)
{
	static struct regs_buf b;
	char got[40], want[40];
	int i;

	crt_init(argc, argv);
	if (!__builtin_cpu_supports("sse"))
		crt_fail("this CPU has no SSE");
	fill(&b);
	crt_ready();
	regs_all_spin(&b);
	crt_log("triggered");
	for (i = 0; i < NGPR; i++)
		if (b.gpr_out[i] != b.gpr_in[i])
			crt_fail("%s = %#lx, want %#lx", gpr_names[i], b.gpr_out[i], b.gpr_in[i]);
	for (i = 0; i < NXMM; i++)
		if (memcmp(b.xmm_out[i], b.xmm_in[i], 16)) {
			hex(got, b.xmm_out[i], 16);
			hex(want, b.xmm_in[i], 16);
			crt_fail("xmm%d = %s, want %s", i, got, want);
		}
	/* st0 is the value loaded last */
	for (i = 0; i < 8; i++)
		if (memcmp(b.x87_out[i], b.x87_in[7 - i], 10)) {
			hex(got, b.x87_out[i], 10);
			hex(want, b.x87_in[7 - i], 10);
			crt_fail("st%d = %s, want %s", i, got, want);
		}
	if (b.mxcsr_out != b.mxcsr_in)
		crt_fail("mxcsr = %#x, want %#x", b.mxcsr_out, b.mxcsr_in);
	if (b.fcw_out != b.fcw_in)
		crt_fail("x87 control word = %#x, want %#x", b.fcw_out, b.fcw_in);
	crt_log("%d general, %d SSE and 8 x87 registers, mxcsr and the x87 control word as filled",
		NGPR, NXMM);
	crt_pass();
}

#else

int main(int argc, char **argv)
{
	crt_init(argc, argv);
	crt_ready();
	crt_wait_trigger();
	crt_fail("no register test for this architecture");
}

#endif
