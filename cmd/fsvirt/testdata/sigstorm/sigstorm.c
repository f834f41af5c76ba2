/* sigstorm DIR N: makes N rounds of file-system calls on DIR/f (open for reading, close, stat,
 * access, open of DIR/new for writing with O_CREAT, close) while interval timers deliver SIGALRM
 * and SIGPROF, and a second thread sends SIGUSR1 to the first, every 200 us, to handlers installed
 * without SA_RESTART. None of these calls returns EINTR natively: open of a regular file, stat and
 * access never wait interruptibly. Prints "calls C eintr E other O" and exits 0, or 2 on a setup
 * error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static volatile int done;
static pid_t main_tid;

static void handler(int sig) { (void)sig; handled++; }

static void *pester(void *arg) {
	(void)arg;
	struct timespec ts = {0, 200000};
	while (!done) {
		syscall(SYS_tgkill, getpid(), main_tid, SIGUSR1);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static long calls, eintr, other;

static void count(long r) {
	calls++;
	if (r >= 0)
		return;
	if (errno == EINTR)
		eintr++;
	else
		other++;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: sigstorm DIR N\n");
		return 2;
	}
	char f[4096], nf[4096];
	snprintf(f, sizeof f, "%s/f", argv[1]);
	snprintf(nf, sizeof nf, "%s/new", argv[1]);
	long n = atol(argv[2]);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler; /* no SA_RESTART */
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGPROF, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	main_tid = syscall(SYS_gettid);
	pthread_t th;
	if (pthread_create(&th, NULL, pester, NULL) != 0) {
		perror("pthread_create");
		return 2;
	}
	struct itimerval it = {{0, 200}, {0, 200}};
	setitimer(ITIMER_REAL, &it, NULL);
	setitimer(ITIMER_PROF, &it, NULL);
	struct stat st;
	for (long i = 0; i < n; i++) {
		int fd = open(f, O_RDONLY);
		count(fd);
		if (fd >= 0)
			close(fd);
		count(stat(f, &st));
		count(access(f, R_OK));
		fd = open(nf, O_WRONLY | O_CREAT, 0644);
		count(fd);
		if (fd >= 0)
			close(fd);
	}
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	setitimer(ITIMER_PROF, &off, NULL);
	done = 1;
	pthread_join(th, NULL);
	printf("calls %ld eintr %ld other %ld signals %ld\n", calls, eintr, other, (long)handled);
	return 0;
}
