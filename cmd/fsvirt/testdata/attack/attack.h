/* What the attack programs share: a time and call budget, a watch on the shared objects that says
 * when an attack has landed (their ctime, link count, size, mode or owner changed), and a tally of
 * what the racing calls returned. The Go tests, not these programs, decide whether the shared tree
 * changed: a program only stops early when it sees that it has. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline void die(const char *what) {
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(2);
}

static inline long long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A race stops after MAX_CALLS calls or its budget of milliseconds, whichever comes first. Today's
 * successful races land within a few hundred calls; the time bounds a race where calls are slow. */
#define MAX_CALLS 20000

struct budget {
	long long start, max_ms;
};

static inline struct budget budget_from(const char *ms) {
	struct budget b = {now_ms(), atoll(ms)};
	return b;
}

static inline int budget_left(const struct budget *b, long calls) {
	return calls < MAX_CALLS && now_ms() - b->start < b->max_ms;
}

/* barrier keeps the compiler from merging a thread's rewrites of memory another thread reads. */
#define barrier() __asm__ __volatile__("" ::: "memory")

/* watch: O_PATH descriptors of shared objects, opened before the race. fstat on them shows the
 * host's inode whatever the view does, and an O_PATH open is left to the kernel under both
 * policies. */
#define MAX_WATCH 8
struct watch {
	int n;
	int fd[MAX_WATCH];
	struct stat st[MAX_WATCH];
	const char *name[MAX_WATCH];
};

static inline void watch_add(struct watch *w, const char *path) {
	if (w->n == MAX_WATCH)
		return;
	int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return; /* not there yet: a name the attack would create */
	if (syscall(SYS_fstat, fd, &w->st[w->n]) < 0)
		die("fstat");
	w->fd[w->n] = fd;
	w->name[w->n] = realpath(path, NULL); /* for the report: without any ".." */
	if (!w->name[w->n])
		w->name[w->n] = strdup(path);
	w->n++;
}

/* watch_path watches path and its parent directory. */
static inline void watch_path(struct watch *w, const char *path) {
	char *copy = strdup(path);
	watch_add(w, path);
	watch_add(w, dirname(copy));
	free(copy);
}

/* watch_changed returns the name of a watched object whose inode changed, or NULL. */
static inline const char *watch_changed(const struct watch *w) {
	for (int i = 0; i < w->n; i++) {
		struct stat st;
		if (syscall(SYS_fstat, w->fd[i], &st) < 0)
			return w->name[i];
		const struct stat *o = &w->st[i];
		if (st.st_ctim.tv_sec != o->st_ctim.tv_sec || st.st_ctim.tv_nsec != o->st_ctim.tv_nsec ||
		    st.st_nlink != o->st_nlink || st.st_size != o->st_size || st.st_mode != o->st_mode ||
		    st.st_uid != o->st_uid || st.st_gid != o->st_gid)
			return w->name[i];
	}
	return NULL;
}

/* tally counts what the racing calls returned: index 0 is success, i > 0 errno i. */
#define MAX_ERRNO 134
struct tally {
	long n[MAX_ERRNO + 1];
};

static inline void tally_add(struct tally *t, long ret) {
	int i = ret >= 0 ? 0 : errno;
	if (i < 0 || i > MAX_ERRNO)
		i = MAX_ERRNO;
	t->n[i]++;
}

static inline void tally_print(const struct tally *t) {
	printf("returns:");
	for (int i = 0; i <= MAX_ERRNO; i++)
		if (t->n[i] > 0)
			printf(" %s=%ld", i == 0 ? "ok" : strerrorname_np(i), t->n[i]);
	printf("\n");
}

/* report prints how the race ended: the Go test logs it. */
static inline void report(const char *attack, const char *landed, long calls, const struct budget *b) {
	if (landed)
		printf("%s: LANDED on %s after %ld calls, %lld ms\n", attack, landed, calls, now_ms() - b->start);
	else
		printf("%s: nothing changed on the host in %ld calls, %lld ms\n", attack, calls, now_ms() - b->start);
}
