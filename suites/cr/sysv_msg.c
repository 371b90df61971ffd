/*
 * A SysV message queue in a private IPC namespace: queued messages of several types and sizes,
 * the queue's mode and a lowered byte limit; selective receive by type afterwards.  Needs root.
 */
#include "crtest.h"

#include <sched.h>
#include <sys/ipc.h>
#include <sys/msg.h>

#define QBYTES 4000

struct msg {
	long type;
	char text[1024];
};

static const struct {
	long type;
	size_t len;
} sent[4] = { { 1, 10 }, { 2, 1000 }, { 3, 1 }, { 2, 300 } };

static void fill_msg(struct msg *m, int i)
{
	m->type = sent[i].type;
	crt_fill(m->text, sent[i].len, 60 + (uint64_t)i);
}

int main(int argc, char **argv)
{
	struct msqid_ds ds;
	struct msg m, want;
	/* receive order: both type 2 messages first (in queue order), then type 1, then type 3 */
	const int order[4] = { 1, 3, 0, 2 };
	int id, i;
	ssize_t n;

	crt_init(argc, argv);
	if (unshare(CLONE_NEWIPC) < 0)
		crt_fail_errno("unshare(CLONE_NEWIPC)%s", errno == EPERM ? " (needs root)" : "");
	id = msgget(IPC_PRIVATE, IPC_CREAT | 0620);
	if (id < 0)
		crt_fail_errno("msgget");
	if (msgctl(id, IPC_STAT, &ds) < 0)
		crt_fail_errno("msgctl IPC_STAT");
	ds.msg_qbytes = QBYTES;
	if (msgctl(id, IPC_SET, &ds) < 0)
		crt_fail_errno("msgctl IPC_SET");
	for (i = 0; i < 4; i++) {
		fill_msg(&m, i);
		if (msgsnd(id, &m, sent[i].len, IPC_NOWAIT) < 0)
			crt_fail_errno("msgsnd %d", i);
	}
	crt_ready();
	crt_wait_trigger();

	if (msgctl(id, IPC_STAT, &ds) < 0)
		crt_fail_errno("msgctl IPC_STAT (queue id %d gone?)", id);
	if (ds.msg_qnum != 4 || ds.msg_qbytes != QBYTES || (ds.msg_perm.mode & 0777) != 0620 ||
	    ds.msg_cbytes != 10 + 1000 + 1 + 300)
		crt_fail("queue: %lu messages, %lu bytes, limit %lu, mode %o; want 4, 1311, %d, 620",
			 (unsigned long)ds.msg_qnum, (unsigned long)ds.msg_cbytes, (unsigned long)ds.msg_qbytes,
			 ds.msg_perm.mode & 0777, QBYTES);
	for (i = 0; i < 4; i++) {
		int k = order[i];

		n = msgrcv(id, &m, sizeof(m.text), sent[k].type, IPC_NOWAIT);
		if (n < 0)
			crt_fail_errno("msgrcv type %ld", sent[k].type);
		fill_msg(&want, k);
		if ((size_t)n != sent[k].len || memcmp(m.text, want.text, sent[k].len))
			crt_fail("message %d (type %ld): %zd bytes or content differ", k, sent[k].type, n);
	}
	if (msgrcv(id, &m, sizeof(m.text), 0, IPC_NOWAIT) != -1 || errno != ENOMSG)
		crt_fail("more messages than were sent");
	msgctl(id, IPC_RMID, NULL);
	crt_pass();
}
