/* The crlab C/R test runtime; the contract it implements is described in README.md. */
#include "crtest.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t crt_trigger;

static int trigger_signal = SIGTERM;
static char outfile[PATH_MAX];
static char pidfile[PATH_MAX];
static char name[64] = "crtest";
static int ready_fd = -1; /* write end of the launcher's pipe, until ready */

const char *crt_name(void)
{
	return name;
}

double crt_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void crt_log(const char *fmt, ...)
{
	char line[1024];
	int n;
	va_list ap;

	n = snprintf(line, sizeof(line), "[%.3f %d] ", crt_now(), (int)getpid());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(line);
	line[n++] = '\n';
	/* one write() per line: children and threads share the log */
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

static void usage(void)
{
	fprintf(stderr, "usage: %s --outfile FILE --pidfile FILE\n", name);
	exit(2);
}

static void make_absolute(char *dst, const char *path)
{
	char cwd[PATH_MAX];

	if (path[0] == '/') {
		snprintf(dst, PATH_MAX, "%s", path);
		return;
	}
	if (!getcwd(cwd, sizeof(cwd))) {
		perror("getcwd");
		exit(2);
	}
	if ((size_t)snprintf(dst, PATH_MAX, "%s/%s", cwd, path) >= PATH_MAX) {
		fprintf(stderr, "%s: path too long: %s\n", name, path);
		exit(2);
	}
}

/* Write text to path through a temporary file and rename(), so readers never see half a file. */
static int write_atomically(const char *path, const char *text)
{
	char tmp[PATH_MAX + 32];
	int fd;
	size_t len = strlen(text);

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (crt_write_full(fd, text, len) < 0 || fsync(fd) < 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void on_trigger(int sig)
{
	(void)sig;
	crt_trigger = 1;
}

void crt_set_trigger_signal(int sig)
{
	trigger_signal = sig;
}

/* The launcher: wait until the test says it is ready, or dies trying. */
static __attribute__((noreturn)) void launcher(pid_t child, int rd)
{
	char c;
	int status;

	for (;;) {
		struct pollfd p = { .fd = rd, .events = POLLIN };
		int n = poll(&p, 1, 100);

		if (n > 0) {
			ssize_t r = read(rd, &c, 1);

			if (r == 1 && c == 'R')
				_exit(0);
			if (r == 0)
				break;
		}
		if (n < 0 && errno != EINTR)
			break;
		if (waitpid(child, &status, WNOHANG) == child) {
			/* the ready byte may have been written just before the exit (pid namespace test) */
			fcntl(rd, F_SETFL, O_NONBLOCK);
			if (read(rd, &c, 1) == 1 && c == 'R')
				_exit(0);
			break;
		}
	}
	fprintf(stderr, "%s: not ready: set-up failed (see %s and %s.log)\n", name, outfile, name);
	_exit(1);
}

void crt_init(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	const char *out = NULL, *pid = NULL;
	char logname[96];
	int i, fd, p[2];
	pid_t child;
	struct sigaction sa;
	sigset_t set;

	snprintf(name, sizeof(name), "%s", base ? base + 1 : argv[0]);
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--outfile") && i + 1 < argc)
			out = argv[++i];
		else if (!strncmp(argv[i], "--outfile=", 10))
			out = argv[i] + 10;
		else if (!strcmp(argv[i], "--pidfile") && i + 1 < argc)
			pid = argv[++i];
		else if (!strncmp(argv[i], "--pidfile=", 10))
			pid = argv[i] + 10;
		else
			usage();
	}
	if (!out || !pid || !*out || !*pid)
		usage();
	/* absolute, so a test that changes directory still writes where the harness looks */
	make_absolute(outfile, out);
	make_absolute(pidfile, pid);
	unlink(outfile);

	if (pipe(p) < 0) {
		perror("pipe");
		exit(2);
	}
	fflush(NULL);
	child = fork();
	if (child < 0) {
		perror("fork");
		exit(2);
	}
	if (child > 0) {
		close(p[1]);
		launcher(child, p[0]);
	}
	close(p[0]);
	ready_fd = p[1];

	/* Own session and no terminal: an engine can checkpoint us without a tty. */
	if (setsid() < 0)
		crt_fail_errno("setsid");
	fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || dup2(fd, STDIN_FILENO) < 0)
		crt_fail_errno("stdin from /dev/null");
	if (fd != STDIN_FILENO)
		close(fd);
	snprintf(logname, sizeof(logname), "%s.log", name);
	fd = open(logname, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
		crt_fail_errno("log file %s", logname);
	if (fd > STDERR_FILENO)
		close(fd);
	setvbuf(stdout, NULL, _IOLBF, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_trigger;
	sigemptyset(&sa.sa_mask);
	/* no SA_RESTART: the trigger should end whatever wait the test is in */
	if (sigaction(trigger_signal, &sa, NULL) < 0)
		crt_fail_errno("sigaction(trigger)");
	sigemptyset(&set);
	sigaddset(&set, trigger_signal);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	crt_log("%s: started, outfile %s, pidfile %s, trigger signal %d", name, outfile, pidfile,
		trigger_signal);
}

void crt_ready_pid(pid_t pid)
{
	char text[32];

	snprintf(text, sizeof(text), "%d\n", (int)pid);
	if (write_atomically(pidfile, text) < 0)
		crt_fail_errno("write pidfile %s", pidfile);
	crt_log("ready, pid %d", (int)pid);
	if (ready_fd >= 0) {
		if (write(ready_fd, "R", 1) != 1)
			crt_log("launcher is gone (%s)", strerror(errno));
		close(ready_fd);
		ready_fd = -1;
	}
}

void crt_ready(void)
{
	crt_ready_pid(getpid());
}

void crt_child_forget_launcher(void)
{
	if (ready_fd >= 0) {
		close(ready_fd);
		ready_fd = -1;
	}
}

pid_t crt_fork(void)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == 0)
		crt_child_forget_launcher();
	return pid;
}

void crt_wait_trigger(void)
{
	crt_log("waiting for the trigger");
	while (!crt_trigger) {
		struct timespec nap = { 0, 20 * 1000 * 1000 };

		nanosleep(&nap, NULL);
	}
	crt_log("triggered");
}

static __attribute__((noreturn)) void finish(int ok, const char *reason)
{
	char text[600];

	if (ok)
		snprintf(text, sizeof(text), "PASS\n");
	else
		snprintf(text, sizeof(text), "FAIL: %s\n", reason);
	crt_log("%s", ok ? "PASS" : text);
	if (write_atomically(outfile, text) < 0) {
		crt_log("cannot write outfile %s: %s", outfile, strerror(errno));
		_exit(3);
	}
	fflush(NULL);
	_exit(ok ? 0 : 1);
}

void crt_pass(void)
{
	finish(1, NULL);
}

void crt_fail(const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	finish(0, reason);
}

void crt_fail_errno(const char *fmt, ...)
{
	char reason[512];
	int err = errno;
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	n = strlen(reason);
	snprintf(reason + n, sizeof(reason) - n, ": %s", strerror(err));
	finish(0, reason);
}

void crt_sleep(double seconds)
{
	double end = crt_now() + seconds;

	for (;;) {
		double left = end - crt_now();
		struct timespec ts;

		if (left <= 0)
			return;
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
		nanosleep(&ts, NULL);
	}
}

/* xorshift64*: cheap, deterministic, and different for every seed */
static uint64_t next_word(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

void crt_fill(void *buf, size_t len, uint64_t seed)
{
	unsigned char *p = buf;
	uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t w = next_word(&state);

		memcpy(p + i, &w, 8);
	}
	for (; i < len; i++)
		p[i] = (unsigned char)next_word(&state);
}

uint64_t crt_checksum(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	for (; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

int crt_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int crt_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

long crt_env_ms(const char *var, long def)
{
	const char *s = getenv(var);
	char *end;
	long v;

	if (!s || !*s)
		return def;
	v = strtol(s, &end, 10);
	if (*end || v <= 0)
		return def;
	return v;
}

static void read_boot_id(char *buf, size_t len)
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = -1;

	if (fd >= 0) {
		n = read(fd, buf, len - 1);
		close(fd);
	}
	buf[n > 0 ? n : 0] = '\0';
}

void crt_mark(struct crt_mark *m)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	m->real = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	m->mono = crt_now();
	read_boot_id(m->boot_id, sizeof(m->boot_id));
}

double crt_elapsed(const struct crt_mark *since)
{
	struct crt_mark now;

	crt_mark(&now);
	/*
	 * CLOCK_MONOTONIC is only comparable within one boot.  A restore in another guest (the
	 * cross-kernel round-trip) restarts it, so there the host-synchronised wall clock is the
	 * only measure left.
	 */
	if (strcmp(now.boot_id, since->boot_id) != 0 || now.mono < since->mono) {
		crt_log("restored on another boot: elapsed time from CLOCK_REALTIME");
		return now.real - since->real;
	}
	return now.mono - since->mono;
}
