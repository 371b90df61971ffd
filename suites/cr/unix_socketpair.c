/*
 * Unix socket pairs with queued data: a stream pair with data both ways, a datagram pair with
 * three queued datagrams (boundaries kept), a seqpacket pair, and a stream pair shut down for
 * writing after its data (the reader gets the data, then end-of-file).
 */
#include "crtest.h"

#include <fcntl.h>
#include <sys/socket.h>

static int expect(int fd, const unsigned char *want, size_t len, const char *what)
{
	unsigned char got[12000];

	if (crt_read_full(fd, got, len) < 0)
		crt_fail_errno("%s: read %zu bytes", what, len);
	if (memcmp(got, want, len))
		crt_fail("%s: data differs", what);
	return 0;
}

static void expect_record(int fd, const unsigned char *want, size_t len, const char *what)
{
	unsigned char got[12000];
	ssize_t n = recv(fd, got, sizeof(got), MSG_DONTWAIT);

	if (n < 0)
		crt_fail_errno("%s: recv", what);
	if ((size_t)n != len || memcmp(got, want, len))
		crt_fail("%s: got %zd bytes, want %zu (boundaries or content lost)", what, n, len);
}

static void expect_empty(int fd, const char *what)
{
	char c;

	if (recv(fd, &c, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
		crt_fail("%s: more queued than was sent", what);
}

int main(int argc, char **argv)
{
	int st[2], dg[2], sp[2], sh[2];
	static unsigned char a2b[10000], b2a[3000], d[3][1000], s[2][700], tail[500];
	const size_t dlen[3] = { 10, 200, 1000 }, slen[2] = { 1, 700 };
	int i;
	char c;

	crt_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) < 0 || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sh) < 0)
		crt_fail_errno("socketpair");
	crt_fill(a2b, sizeof(a2b), 20);
	crt_fill(b2a, sizeof(b2a), 21);
	crt_fill(tail, sizeof(tail), 22);
	if (crt_write_full(st[0], a2b, sizeof(a2b)) < 0 || crt_write_full(st[1], b2a, sizeof(b2a)) < 0)
		crt_fail_errno("stream write");
	for (i = 0; i < 3; i++) {
		crt_fill(d[i], dlen[i], 30 + (uint64_t)i);
		if (send(dg[0], d[i], dlen[i], 0) != (ssize_t)dlen[i])
			crt_fail_errno("datagram send");
	}
	for (i = 0; i < 2; i++) {
		crt_fill(s[i], slen[i], 40 + (uint64_t)i);
		if (send(sp[1], s[i], slen[i], 0) != (ssize_t)slen[i])
			crt_fail_errno("seqpacket send");
	}
	if (crt_write_full(sh[0], tail, sizeof(tail)) < 0 || shutdown(sh[0], SHUT_WR) < 0)
		crt_fail_errno("shutdown pair");
	crt_ready();
	crt_wait_trigger();

	expect(st[1], a2b, sizeof(a2b), "stream a->b");
	expect(st[0], b2a, sizeof(b2a), "stream b->a");
	expect_empty(st[0], "stream b->a");
	expect_empty(st[1], "stream a->b");
	for (i = 0; i < 3; i++)
		expect_record(dg[1], d[i], dlen[i], "datagram");
	expect_empty(dg[1], "datagram");
	for (i = 0; i < 2; i++)
		expect_record(sp[0], s[i], slen[i], "seqpacket");
	expect_empty(sp[0], "seqpacket");
	expect(sh[1], tail, sizeof(tail), "shut-down stream");
	if (recv(sh[1], &c, 1, MSG_DONTWAIT) != 0)
		crt_fail("shut-down stream: no end-of-file after the data (shutdown state lost)");
	/* the pairs are still connected */
	if (send(st[0], "x", 1, 0) != 1 || recv(st[1], &c, 1, 0) != 1 || c != 'x')
		crt_fail("stream pair no longer connected");
	if (send(dg[1], "y", 1, 0) != 1 || recv(dg[0], &c, 1, 0) != 1 || c != 'y')
		crt_fail("datagram pair no longer connected");
	crt_pass();
}
