/*
 * crctl: user-space side of crlab's linux-cr (v21) series.
 *
 *   crctl info FILE             one line per record of an image (any arch, either byte order)
 *   crctl checkpoint PID FILE   checkpoint(2) the task PID into FILE (which must not exist)
 *   crctl restart FILE          restart(2) from FILE into this process
 *   crctl checkpoint-self FILE  checkpoint(2) of crctl itself into FILE, then say what it returned:
 *                               > 0 (the checkpoint's id) now, 0 once `crctl restart FILE` resumes it
 *
 * Exit codes: 0 done; 1 the system call failed; 2 bad usage or a file that cannot be opened or
 * created; 3 the kernel has no checkpoint/restart (ENOSYS: no CONFIG_CHECKPOINT_V21, or the
 * architecture has no system call numbers yet); 4 the image is corrupt, truncated or foreign.
 *
 * The record layouts and numbers come from the series' uapi headers (checkpoint_hdr.h,
 * checkpoint.h), copied beside this file when crlab builds it.  abi-check shows every struct has
 * the same offsets on every target, so the native offsetof() values read any target's image; only
 * the byte order (from the first record) and the word size (from arch_id) vary.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "checkpoint_hdr.h"
#include "checkpoint.h"

#define EXIT_SYSCALL 1
#define EXIT_USAGE 2
#define EXIT_NOSYS 3
#define EXIT_IMAGE 4

struct stream {
	const unsigned char *data;
	size_t size;
	int big;		/* byte order of the stream */
	const char *family;	/* x86, ppc, arm, s390 */
};

static uint64_t get(const struct stream *s, size_t off, int width)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < width; i++) {
		int shift = s->big ? 8 * (width - 1 - i) : 8 * i;

		v |= (uint64_t)s->data[off + i] << shift;
	}
	return v;
}

#define FIELD(s, rec, type, member) \
	get((s), (rec) + offsetof(struct type, member), sizeof(((struct type *)0)->member))

struct rec_name {
	uint32_t type;
	const char *name;
	const char *family;	/* NULL: every arch */
	size_t size;		/* the record's struct, 8 if none */
};

#define R(n, st) { CKPT_REC_##n, #n, NULL, sizeof(struct st) }
#define RA(n, fam, st) { CKPT_REC_##n, #n, fam, sizeof(struct st) }
static const struct rec_name names[] = {
	R(HEADER, ckpt_rec_header), RA(HEADER_ARCH, "x86", ckpt_rec_x86_header_arch),
	RA(HEADER_ARCH, "arm", ckpt_rec_arm_header_arch), RA(HEADER_ARCH, "ppc", ckpt_rec_ppc_header_arch),
	RA(HEADER_ARCH, "s390", ckpt_rec), R(CONTAINER, ckpt_rec_container), R(BUFFER, ckpt_rec),
	R(STRING, ckpt_rec), R(OBJREF, ckpt_rec_objref), R(LSM_INFO, ckpt_rec_lsm_info), R(SECURITY, ckpt_rec),
	R(TREE, ckpt_rec_tree), R(TASK, ckpt_rec_task), R(TASK_NS, ckpt_rec), R(TASK_OBJS, ckpt_rec_task_objs),
	R(RESTART_BLOCK, ckpt_rec_restart_block), RA(THREAD, "x86", ckpt_rec_x86_thread),
	RA(THREAD, "arm", ckpt_rec_arm_thread), RA(THREAD, "ppc", ckpt_rec), RA(THREAD, "s390", ckpt_rec),
	RA(CPU, "x86", ckpt_rec_x86_cpu), RA(CPU, "arm", ckpt_rec_arm_cpu), RA(CPU, "ppc", ckpt_rec),
	RA(CPU, "s390", ckpt_rec), R(NS, ckpt_rec), R(UTS_NS, ckpt_rec), R(IPC_NS, ckpt_rec), R(MNT_NS, ckpt_rec),
	R(CAPABILITIES, ckpt_rec), R(USER_NS, ckpt_rec), R(CRED, ckpt_rec_cred), R(USER, ckpt_rec),
	R(GROUPINFO, ckpt_rec), R(TASK_CREDS, ckpt_rec),
	RA(X86_CPU_FPU, "x86", ckpt_rec_x86_cpu_fpu), RA(X86_MM_CONTEXT_LDT, "x86", ckpt_rec),
	R(FILE_TABLE, ckpt_rec_file_table), R(FILE_DESC, ckpt_rec_file_desc), R(FILE_NAME, ckpt_rec),
	R(FILE, ckpt_rec_file), R(PIPE_BUF, ckpt_rec_pipe_buf), R(TTY, ckpt_rec), R(TTY_LDISC, ckpt_rec),
	R(EPOLL_ITEMS, ckpt_rec), R(MM, ckpt_rec_mm), R(VMA, ckpt_rec_vma), R(PGARR, ckpt_rec_pgarr),
	RA(MM_CONTEXT, "x86", ckpt_rec_x86_mm_context), RA(MM_CONTEXT, "arm", ckpt_rec_arm_mm_context),
	RA(MM_CONTEXT, "ppc", ckpt_rec), RA(MM_CONTEXT, "s390", ckpt_rec), R(FS, ckpt_rec),
	R(IPC, ckpt_rec), R(IPC_SHM, ckpt_rec), R(IPC_MSG, ckpt_rec), R(IPC_MSG_MSG, ckpt_rec), R(IPC_SEM, ckpt_rec),
	R(SIGHAND, ckpt_rec_sighand), R(SIGNAL, ckpt_rec_signal), R(SIGNAL_TASK, ckpt_rec_signal_task),
	R(SIGPENDING, ckpt_rec_sigpending), R(SOCKET, ckpt_rec), R(SOCKET_QUEUE, ckpt_rec),
	R(SOCKET_BUFFER, ckpt_rec), R(SOCKET_FRAG, ckpt_rec), R(SOCKET_UNIX, ckpt_rec), R(SOCKET_INET, ckpt_rec),
	R(NET_NS, ckpt_rec), R(NETDEV, ckpt_rec), R(NETDEV_ADDR, ckpt_rec),
	R(TAIL, ckpt_rec_tail), R(ERROR, ckpt_rec_error),
};

static const struct rec_name *lookup(uint32_t type, const char *family)
{
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].type == type && (!names[i].family || !strcmp(names[i].family, family)))
			return &names[i];
	return NULL;
}

static const struct {
	unsigned int id;
	const char *name;
	const char *family;
} arches[] = {
	{ CKPT_ARCH_X86_32, "X86_32", "x86" }, { CKPT_ARCH_X86_64, "X86_64", "x86" },
	{ CKPT_ARCH_S390X, "S390X", "s390" }, { CKPT_ARCH_PPC32, "PPC32", "ppc" },
	{ CKPT_ARCH_PPC64, "PPC64", "ppc" }, { CKPT_ARCH_ARM, "ARM", "arm" },
};

static int bad(size_t off, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(size_t off, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "crctl: offset %zu: ", off);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_IMAGE;
}

/* The key fields of a record, after "OFFSET NAME len=LEN" (crlab.v21.info_line prints the same). */
static void key_fields(const struct stream *s, const char *n, size_t r)
{
#define IS(x) (!strcmp(n, x))
	if (IS("TREE"))
		printf(" nr_tasks=%" PRIu64, FIELD(s, r, ckpt_rec_tree, nr_tasks));
	else if (IS("TASK"))
		printf(" state=%" PRIu64 " exit_state=%" PRIu64, FIELD(s, r, ckpt_rec_task, state),
		       FIELD(s, r, ckpt_rec_task, exit_state));
	else if (IS("TASK_OBJS"))
		printf(" files=%d mm=%d sighand=%d signal=%d",
		       (int32_t)FIELD(s, r, ckpt_rec_task_objs, files_objref),
		       (int32_t)FIELD(s, r, ckpt_rec_task_objs, mm_objref),
		       (int32_t)FIELD(s, r, ckpt_rec_task_objs, sighand_objref),
		       (int32_t)FIELD(s, r, ckpt_rec_task_objs, signal_objref));
	else if (IS("RESTART_BLOCK"))
		printf(" kind=%" PRIu64, FIELD(s, r, ckpt_rec_restart_block, kind));
	else if (IS("OBJREF"))
		printf(" objtype=%" PRIu64 " objref=%d", FIELD(s, r, ckpt_rec_objref, objtype),
		       (int32_t)FIELD(s, r, ckpt_rec_objref, objref));
	else if (IS("FILE_TABLE"))
		printf(" nfds=%d", (int32_t)FIELD(s, r, ckpt_rec_file_table, fdt_nfds));
	else if (IS("FILE_DESC"))
		printf(" fd=%d objref=%d", (int32_t)FIELD(s, r, ckpt_rec_file_desc, fd),
		       (int32_t)FIELD(s, r, ckpt_rec_file_desc, file_objref));
	else if (IS("FILE"))
		printf(" f_type=%" PRIu64 " pos=%" PRIu64, FIELD(s, r, ckpt_rec_file, f_type),
		       FIELD(s, r, ckpt_rec_file, f_pos));
	else if (IS("PIPE_BUF"))
		printf(" nr_bytes=%" PRIu64, FIELD(s, r, ckpt_rec_pipe_buf, nr_bytes));
	else if (IS("MM"))
		printf(" map_count=%" PRIu64, FIELD(s, r, ckpt_rec_mm, map_count));
	else if (IS("VMA"))
		printf(" vma_type=%" PRIu64 " start=0x%" PRIx64 " end=0x%" PRIx64, FIELD(s, r, ckpt_rec_vma, vma_type),
		       FIELD(s, r, ckpt_rec_vma, vm_start), FIELD(s, r, ckpt_rec_vma, vm_end));
	else if (IS("PGARR"))
		printf(" nr_pages=%" PRIu64, FIELD(s, r, ckpt_rec_pgarr, nr_pages));
	else if (IS("SIGHAND"))
		printf(" nr=%" PRIu64, FIELD(s, r, ckpt_rec_sighand, nr_sigactions));
	else if (IS("SIGNAL_TASK"))
		printf(" nr_pending=%" PRIu64, FIELD(s, r, ckpt_rec_signal_task, nr_pending));
	else if (IS("SIGPENDING"))
		printf(" signo=%d", (int32_t)FIELD(s, r, ckpt_rec_sigpending, signo));
#undef IS
}

static int info(const char *path)
{
	struct stream s = { 0 };
	unsigned char *buf;
	struct stat st;
	size_t off = 0, got = 0;
	unsigned int arch_id, i;
	const char *arch = NULL, *ended = NULL;
	int fd, first = 1;

	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "crctl: cannot open %s: %s\n", path, strerror(errno));
		return EXIT_USAGE;
	}
	buf = malloc(st.st_size ? st.st_size : 1);	/* bounded by the file's real size */
	if (!buf) {
		fprintf(stderr, "crctl: %s: out of memory\n", path);
		return EXIT_USAGE;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, st.st_size - got);

		if (n <= 0) {
			fprintf(stderr, "crctl: cannot read %s: %s\n", path, n ? strerror(errno) : "short read");
			return EXIT_USAGE;
		}
		got += n;
	}
	close(fd);
	s.data = buf;
	s.size = got;
	if (s.size < sizeof(struct ckpt_rec))
		return bad(0, "%zu bytes: too short for a record (a record starts with 8 bytes)", s.size);
	s.big = 0;
	if (get(&s, 0, 4) != CKPT_REC_HEADER) {
		s.big = 1;
		if (get(&s, 0, 4) != CKPT_REC_HEADER)
			return bad(0, "not a v21 image: the first record's type is not HEADER in either byte order");
	}
	if (s.size < sizeof(struct ckpt_rec_header))
		return bad(s.size, "truncated HEADER: %zu of %zu bytes", s.size, sizeof(struct ckpt_rec_header));
	/* arch_id is little-endian in every stream */
	arch_id = s.data[offsetof(struct ckpt_rec_header, arch_id)] |
		  s.data[offsetof(struct ckpt_rec_header, arch_id) + 1] << 8;
	for (i = 0; i < sizeof(arches) / sizeof(arches[0]); i++)
		if (arches[i].id == arch_id) {
			arch = arches[i].name;
			s.family = arches[i].family;
		}
	if (!arch)
		return bad(offsetof(struct ckpt_rec_header, arch_id), "unknown arch_id %u", arch_id);

	while (off < s.size) {
		const struct rec_name *rn;
		uint32_t type, len;

		if (ended && !strcmp(ended, "TAIL"))
			return bad(off, "%zu bytes after the TAIL record", s.size - off);
		if (s.size - off < sizeof(struct ckpt_rec))
			return bad(off, "truncated record: %zu bytes left, a record needs at least 8", s.size - off);
		type = get(&s, off, 4);
		len = get(&s, off + 4, 4);
		if (len < sizeof(struct ckpt_rec))
			return bad(off, "record of type %u has length %u (less than its 8-byte pre-header)", type, len);
		if (len > s.size - off)
			return bad(off, "record of type %u claims %u bytes, only %zu remain (truncated image?)",
				   type, len, s.size - off);
		rn = lookup(type, s.family);
		if (!rn)
			return bad(off, "unknown record type %u for %s", type, arch);
		if (first && type != CKPT_REC_HEADER)
			return bad(off, "the first record is not a HEADER");
		if (len < rn->size)
			return bad(off, "%s record of %u bytes is shorter than its struct (%zu bytes)", rn->name, len,
				   rn->size);
		printf("%zu %s len=%u", off, rn->name, len);
		if (type == CKPT_REC_HEADER) {
			if (FIELD(&s, off, ckpt_rec_header, magic) != CKPT_MAGIC_HEAD)
				return bad(off + offsetof(struct ckpt_rec_header, magic), "bad head magic");
			printf(" arch=%s kernel=%" PRIu64 ".%" PRIu64 ".%" PRIu64 " rev=%" PRIu64 " page_shift=%" PRIu64,
			       arch, FIELD(&s, off, ckpt_rec_header, major), FIELD(&s, off, ckpt_rec_header, minor),
			       FIELD(&s, off, ckpt_rec_header, patch), FIELD(&s, off, ckpt_rec_header, rev),
			       get(&s, off + offsetof(struct ckpt_rec_header, constants) +
				   offsetof(struct ckpt_const, page_shift), 2));
		} else if (type == CKPT_REC_TAIL) {
			if (FIELD(&s, off, ckpt_rec_tail, magic) != CKPT_MAGIC_TAIL)
				return bad(off, "bad tail magic");
			ended = "TAIL";
		} else if (type == CKPT_REC_ERROR) {
			ended = "ERROR";
		} else {
			key_fields(&s, rn->name, off);
		}
		printf("\n");
		first = 0;
		off += len;
	}
	if (!ended)
		return bad(s.size, "the stream ends without a TAIL or ERROR record (truncated image?)");
	free(buf);
	return 0;
}

static int nosys(const char *call)
{
	fprintf(stderr, "crctl: %s(2) is not available: this kernel has no checkpoint/restart "
		"(CONFIG_CHECKPOINT_V21, crlab's linux-cr series)\n", call);
	return EXIT_NOSYS;
}

static int do_checkpoint(const char *pid_text, const char *path)
{
	char *end;
	long pid = strtol(pid_text, &end, 10);
	long ret;
	int fd;

	if (*pid_text == '\0' || *end != '\0' || pid <= 0) {
		fprintf(stderr, "crctl: not a pid: %s\n", pid_text);
		return EXIT_USAGE;
	}
#ifndef CKPT_NR_CHECKPOINT
	(void)path;
	fprintf(stderr, "crctl: checkpoint(2) has no system call number on this architecture yet\n");
	return EXIT_NOSYS;
#else
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		fprintf(stderr, "crctl: cannot create %s: %s\n", path, strerror(errno));
		return EXIT_USAGE;
	}
	/* logfd: the kernel writes why a checkpoint fails to our stderr */
	ret = syscall(CKPT_NR_CHECKPOINT, (int)pid, fd, 0UL, STDERR_FILENO);
	if (ret < 0) {
		int err = errno;

		close(fd);
		unlink(path);	/* created above and empty: nothing is lost */
		if (err == ENOSYS)
			return nosys("checkpoint");
		fprintf(stderr, "crctl: checkpoint of pid %ld failed: %s\n", pid, strerror(err));
		return EXIT_SYSCALL;
	}
	if (close(fd) < 0) {
		fprintf(stderr, "crctl: writing %s: %s\n", path, strerror(errno));
		return EXIT_SYSCALL;
	}
	printf("checkpoint %ld of pid %ld written to %s\n", ret, pid, path);
	return 0;
#endif
}

static int do_checkpoint_self(const char *path)
{
#ifndef CKPT_NR_CHECKPOINT
	(void)path;
	fprintf(stderr, "crctl: checkpoint(2) has no system call number on this architecture yet\n");
	return EXIT_NOSYS;
#else
	/* state that must come back with the restarted task: the stack, a pid read through libc */
	volatile unsigned long marker = 0x5eadc0de ^ (unsigned long)getpid();
	unsigned long before = marker;
	long ret;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		fprintf(stderr, "crctl: cannot create %s: %s\n", path, strerror(errno));
		return EXIT_USAGE;
	}
	ret = syscall(CKPT_NR_CHECKPOINT, 0, fd, 0UL, STDERR_FILENO);
	if (ret < 0) {
		int err = errno;

		close(fd);
		unlink(path);
		if (err == ENOSYS)
			return nosys("checkpoint");
		fprintf(stderr, "crctl: checkpoint of itself failed: %s\n", strerror(err));
		return EXIT_SYSCALL;
	}
	/* after a restart fd is not ours any more (restart(2) closed the image's) */
	if (ret > 0 && close(fd) < 0) {
		fprintf(stderr, "crctl: writing %s: %s\n", path, strerror(errno));
		return EXIT_SYSCALL;
	}
	printf("checkpoint-self: checkpoint(2) returned %ld%s, pid %d, marker %s\n", ret,
	       ret ? "" : " (restarted)", getpid(), marker == before ? "kept" : "CHANGED");
	return marker == before ? 0 : EXIT_SYSCALL;
#endif
}

static int do_restart(const char *path)
{
	long ret;
	int fd;

#ifndef CKPT_NR_RESTART
	(void)path;
	fprintf(stderr, "crctl: restart(2) has no system call number on this architecture yet\n");
	return EXIT_NOSYS;
#else
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "crctl: cannot open %s: %s\n", path, strerror(errno));
		return EXIT_USAGE;
	}
	/*
	 * On success the restored task continues in place of this process (same pid and cwd).  An
	 * image with a FILE_TABLE replaces our file table: all our descriptors (0-2 and fd) are
	 * closed and the task's installed; without one we keep ours and the kernel closes fd.  The
	 * kernel logs why an image is refused to our stderr, which stays open until it returns.
	 */
	ret = syscall(CKPT_NR_RESTART, 0, fd, (unsigned long)RESTART_TASKSELF, STDERR_FILENO);
	if (ret < 0) {
		if (errno == ENOSYS)
			return nosys("restart");
		fprintf(stderr, "crctl: restart from %s failed: %s\n", path, strerror(errno));
		return EXIT_SYSCALL;
	}
	return 0;
#endif
}

static int usage(void)
{
	fprintf(stderr, "usage: crctl info FILE | crctl checkpoint PID FILE | crctl restart FILE | "
		"crctl checkpoint-self FILE\n");
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "info"))
		return info(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "checkpoint"))
		return do_checkpoint(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "restart"))
		return do_restart(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "checkpoint-self"))
		return do_checkpoint_self(argv[2]);
	return usage();
}
