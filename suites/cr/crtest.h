/*
 * crtest: the small runtime every crlab C/R test program links with.
 *
 * It implements the suite's contract (see README.md): argument parsing, detaching from the
 * terminal, the ready signal (pidfile), the trigger (SIGTERM by default) and the one-line
 * result file.  Only libc is used, so each test builds statically with any Debian cross gcc.
 */
#ifndef CRTEST_H
#define CRTEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

/* the libc headers nearly every test needs */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Set by the trigger handler; tests that spin instead of calling crt_wait_trigger() poll it. */
extern volatile sig_atomic_t crt_trigger;

/*
 * Parse `--outfile F --pidfile P`, fork so that the started process returns only once the test
 * is ready (exit 0) or has failed during set-up (exit 1), and in the child: setsid(), stdin from
 * /dev/null, stdout/stderr to NAME.log in the working directory, trigger handler installed.
 */
void crt_init(int argc, char **argv);

/* Use a signal other than SIGTERM as the trigger (call before crt_init). */
void crt_set_trigger_signal(int sig);

/* The test is fully set up: write the pidfile (atomically) with our pid and release the launcher. */
void crt_ready(void);

/* Same, announcing another process as the test's root (the pid namespace test). */
void crt_ready_pid(pid_t pid);

/* fork() that also drops the launcher's ready pipe in the child (children must not hold it). */
pid_t crt_fork(void);

/* In a child made some other way (clone): drop the launcher's ready pipe. */
void crt_child_forget_launcher(void);

/* Sleep in short naps until the trigger arrives; neither touches the signal mask nor the FPU. */
void crt_wait_trigger(void);

/* Write "PASS" / "FAIL: reason" to the outfile atomically and exit 0 / 1. */
__attribute__((noreturn)) void crt_pass(void);
__attribute__((noreturn, format(printf, 1, 2))) void crt_fail(const char *fmt, ...);

/* Like crt_fail, with ": strerror(errno)" appended. */
__attribute__((noreturn, format(printf, 1, 2))) void crt_fail_errno(const char *fmt, ...);

/* A line in the test's log, prefixed with the monotonic time and pid. */
__attribute__((format(printf, 1, 2))) void crt_log(const char *fmt, ...);

/* CLOCK_MONOTONIC in seconds. */
double crt_now(void);

/* Sleep for the given seconds, resuming after EINTR (a checkpoint interrupts sleeps). */
void crt_sleep(double seconds);

/*
 * Elapsed-time measurement that survives a restore in another guest: CLOCK_MONOTONIC within one
 * boot, CLOCK_REALTIME when the boot changed (monotonic time is meaningless across boots).
 */
struct crt_mark {
	double mono;
	double real;
	char boot_id[40];
};
void crt_mark(struct crt_mark *m);
double crt_elapsed(const struct crt_mark *since);

/* Deterministic byte pattern and a checksum over it, for memory and data checks. */
void crt_fill(void *buf, size_t len, uint64_t seed);
uint64_t crt_checksum(const void *buf, size_t len);

/* read()/write() of exactly len bytes, resuming after EINTR and short transfers; -1 on error/EOF. */
int crt_read_full(int fd, void *buf, size_t len);
int crt_write_full(int fd, const void *buf, size_t len);

/* An environment variable as milliseconds, or def when unset or not a positive number. */
long crt_env_ms(const char *name, long def);

/* The test's name (basename of argv[0]). */
const char *crt_name(void);

#endif
