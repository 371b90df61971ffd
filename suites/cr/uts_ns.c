/* A private UTS namespace with its own host and domain name.  Needs root (unshare CLONE_NEWUTS). */
#include "crtest.h"

#include <sched.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#define HOST "crtest-uts-host"
#define DOMAIN "crtest.uts.example"

int main(int argc, char **argv)
{
	char host[65], domain[65];
	struct utsname u;
	struct stat mine, init;

	crt_init(argc, argv);
	if (unshare(CLONE_NEWUTS) < 0)
		crt_fail_errno("unshare(CLONE_NEWUTS)%s", errno == EPERM ? " (needs root)" : "");
	if (sethostname(HOST, strlen(HOST)) < 0 || setdomainname(DOMAIN, strlen(DOMAIN)) < 0)
		crt_fail_errno("set names");
	crt_ready();
	crt_wait_trigger();

	if (gethostname(host, sizeof(host)) < 0 || getdomainname(domain, sizeof(domain)) < 0 || uname(&u) < 0)
		crt_fail_errno("read names");
	if (strcmp(host, HOST) || strcmp(u.nodename, HOST))
		crt_fail("hostname is '%s' (uname '%s'), want '%s'", host, u.nodename, HOST);
	if (strcmp(domain, DOMAIN))
		crt_fail("domain name is '%s', want '%s'", domain, DOMAIN);
	/* still a namespace of our own, not the initial one */
	if (stat("/proc/self/ns/uts", &mine) == 0 && stat("/proc/1/ns/uts", &init) == 0 && mine.st_ino == init.st_ino)
		crt_fail("the test shares pid 1's UTS namespace");
	crt_pass();
}
