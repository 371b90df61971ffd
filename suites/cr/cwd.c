/*
 * Working directory and umask: the test and a child sit in different directories below the
 * working dir (the child's fs state is its own after fork) and must still be there.
 */
#include "crtest.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

struct place {
	char path[PATH_MAX];
	dev_t dev;
	ino_t ino;
	mode_t umask;
};

static void record(struct place *p)
{
	struct stat st;

	if (!getcwd(p->path, sizeof(p->path)) || stat(".", &st) < 0)
		crt_fail_errno("getcwd");
	p->dev = st.st_dev;
	p->ino = st.st_ino;
	p->umask = umask(0);
	umask(p->umask);
}

/* NULL when the process is still where it was, else what differs */
static const char *moved(const struct place *want)
{
	struct place now;
	int fd;

	record(&now);
	if (strcmp(now.path, want->path))
		return "getcwd() differs";
	if (now.dev != want->dev || now.ino != want->ino)
		return "'.' is another directory";
	if (now.umask != want->umask)
		return "umask differs";
	/* relative paths resolve there */
	fd = open("marker", O_RDONLY);
	if (fd < 0)
		return "the marker file is not reachable by a relative path";
	close(fd);
	return NULL;
}

/* mkdir -p */
static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	char *p;

	snprintf(buf, sizeof(buf), "%s", path);
	for (p = buf + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(buf, 0755) < 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	return mkdir(buf, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

int main(int argc, char **argv)
{
	char top[96], deep[200];
	struct place mine, childs;
	const char *why;
	int go[2], status, fd;
	pid_t child;
	char c;

	crt_init(argc, argv);
	snprintf(top, sizeof(top), "%s.d", crt_name());
	snprintf(deep, sizeof(deep), "%s/deeper/still", top);
	if (mkdir_p(deep) < 0)
		crt_fail_errno("mkdir %s", deep);
	if (pipe(go) < 0)
		crt_fail_errno("pipe");
	child = crt_fork();
	if (child < 0)
		crt_fail_errno("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(go[1]);
		if (chdir(top) < 0)
			_exit(2);
		umask(077);
		fd = open("marker", O_CREAT | O_WRONLY, 0644);
		if (fd < 0)
			_exit(3);
		close(fd);
		record(&childs);
		while (read(go[0], &c, 1) != 0)
			;
		why = moved(&childs);
		if (why)
			crt_log("child: %s", why);
		_exit(why ? 1 : 0);
	}
	close(go[0]);
	if (chdir(deep) < 0)
		crt_fail_errno("chdir %s", deep);
	umask(027);
	fd = open("marker", O_CREAT | O_WRONLY, 0644);
	if (fd < 0)
		crt_fail_errno("create marker");
	close(fd);
	record(&mine);
	crt_ready();
	crt_wait_trigger();

	why = moved(&mine);
	if (why)
		crt_fail("%s", why);
	close(go[1]);
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		crt_fail("the child's working directory or umask changed (status %#x)", status);
	crt_pass();
}
