/*
 * An epoll set: registered fds, their event masks and user data (read back from
 * /proc/self/fdinfo), which of them are ready, edge-triggering, and a registration that fires
 * only after the trigger.
 */
#include "crtest.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

struct reg {
	const char *what;
	int fd;
	uint32_t events;
	uint64_t data;
	int ready; /* expected in the first epoll_wait after the trigger */
};

static int fdinfo_has(int ep, const struct reg *r)
{
	char path[64], line[256];
	FILE *f;
	int tfd, found = 0;
	unsigned int events;
	unsigned long long data;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	f = fopen(path, "r");
	if (!f)
		crt_fail_errno("open %s", path);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &data) == 3 && tfd == r->fd) {
			/* the kernel may add EPOLLERR/EPOLLHUP bits; the requested ones must be there */
			if ((events & r->events) != r->events || data != r->data)
				crt_fail("%s: fdinfo events %#x data %#llx, want events %#x data %#llx", r->what,
					 events, data, r->events, (unsigned long long)r->data);
			found = 1;
		}
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	int ep, p[2], q[2], sv[2], efd, n, i, j, count;
	struct reg regs[4];
	struct epoll_event ev, out[8];

	crt_init(argc, argv);
	ep = epoll_create1(0);
	efd = eventfd(1, EFD_NONBLOCK);
	if (ep < 0 || efd < 0 || pipe(p) < 0 || pipe(q) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		crt_fail_errno("set-up");
	regs[0] = (struct reg){ "pipe with data", p[0], EPOLLIN, 0x1111000000000001ULL, 1 };
	regs[1] = (struct reg){ "eventfd, edge-triggered", efd, EPOLLIN | EPOLLET, 0x2222, 1 };
	regs[2] = (struct reg){ "socket, writable", sv[0], EPOLLOUT | EPOLLRDHUP, 0x3333, 1 };
	regs[3] = (struct reg){ "empty pipe", q[0], EPOLLIN | EPOLLPRI, 0x4444, 0 };
	for (i = 0; i < 4; i++) {
		ev.events = regs[i].events;
		ev.data.u64 = regs[i].data;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, regs[i].fd, &ev) < 0)
			crt_fail_errno("epoll_ctl add %s", regs[i].what);
	}
	if (write(p[1], "d", 1) != 1)
		crt_fail_errno("write");
	crt_ready();
	crt_wait_trigger();

	for (i = 0; i < 4; i++)
		if (!fdinfo_has(ep, &regs[i]))
			crt_fail("%s (fd %d) is no longer in the epoll set", regs[i].what, regs[i].fd);
	n = epoll_wait(ep, out, 8, 0);
	if (n < 0)
		crt_fail_errno("epoll_wait");
	for (i = 0, count = 0; i < 4; i++) {
		int seen = 0;

		for (j = 0; j < n; j++)
			if (out[j].data.u64 == regs[i].data)
				seen = 1;
		if (seen != regs[i].ready)
			crt_fail("%s: %s by epoll_wait", regs[i].what, seen ? "reported" : "not reported");
		count += seen;
	}
	if (count != n)
		crt_fail("epoll_wait reported %d events, %d of them unknown", n, n - count);
	/* edge-triggered: no second report without a new event */
	n = epoll_wait(ep, out, 8, 0);
	for (j = 0; j < n; j++)
		if (out[j].data.u64 == regs[1].data)
			crt_fail("edge-triggered eventfd reported twice (EPOLLET lost)");
	/* the idle registration still works */
	if (write(q[1], "e", 1) != 1)
		crt_fail_errno("write");
	n = epoll_wait(ep, out, 8, 1000);
	for (j = 0, count = 0; j < n; j++)
		if (out[j].data.u64 == regs[3].data)
			count = 1;
	if (!count)
		crt_fail("the empty pipe's registration did not fire after data arrived");
	crt_pass();
}
