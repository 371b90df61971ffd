/* Threads with thread-local storage: each thread's TLS block, thread pointer and counter survive. */
#include "crtest.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define NTHREADS 6

static __thread uint64_t tls_value;
static __thread char tls_text[48];

struct slot {
	pthread_t self;
	void *tls_addr;
	volatile unsigned long progress;
	char error[160];
};

static struct slot slots[NTHREADS + 1];
static pthread_barrier_t started;

static void tls_setup(int idx)
{
	tls_value = 0xABCD000000000000ULL + (uint64_t)idx * 0x10001ULL;
	snprintf(tls_text, sizeof(tls_text), "thread-%d-tls", idx);
	slots[idx].self = pthread_self();
	slots[idx].tls_addr = &tls_value;
}

/* Returns 0 or fills slots[idx].error */
static int tls_check(int idx)
{
	char want[48];
	struct slot *s = &slots[idx];

	snprintf(want, sizeof(want), "thread-%d-tls", idx);
	if (tls_value != 0xABCD000000000000ULL + (uint64_t)idx * 0x10001ULL)
		snprintf(s->error, sizeof(s->error), "thread %d: TLS value %llx", idx, (unsigned long long)tls_value);
	else if (strcmp(tls_text, want))
		snprintf(s->error, sizeof(s->error), "thread %d: TLS text '%.47s'", idx, tls_text);
	else if ((void *)&tls_value != s->tls_addr)
		snprintf(s->error, sizeof(s->error), "thread %d: TLS moved from %p to %p (thread pointer lost?)",
			 idx, s->tls_addr, (void *)&tls_value);
	else if (!pthread_equal(pthread_self(), s->self))
		snprintf(s->error, sizeof(s->error), "thread %d: pthread_self changed", idx);
	else
		return 0;
	return -1;
}

static void *worker(void *arg)
{
	int idx = (int)(intptr_t)arg;

	tls_setup(idx);
	pthread_barrier_wait(&started);
	while (!crt_trigger) {
		struct timespec nap = { 0, 5 * 1000 * 1000 };

		slots[idx].progress++;
		nanosleep(&nap, NULL);
	}
	tls_check(idx);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th[NTHREADS];
	int i;

	crt_init(argc, argv);
	if (pthread_barrier_init(&started, NULL, NTHREADS + 1))
		crt_fail("pthread_barrier_init");
	tls_setup(NTHREADS);
	for (i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i))
			crt_fail("pthread_create %d", i);
	pthread_barrier_wait(&started);
	crt_ready();
	crt_wait_trigger();
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	tls_check(NTHREADS);
	for (i = 0; i <= NTHREADS; i++)
		if (slots[i].error[0])
			crt_fail("%s", slots[i].error);
	for (i = 0; i < NTHREADS; i++)
		crt_log("thread %d: %lu naps", i, slots[i].progress);
	crt_pass();
}
