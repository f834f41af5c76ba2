/* storepeek: looks for another view's private layer in the stores.
 *
 * usage: storepeek SECRET ROOT...
 *
 * Lists each ROOT (where fsvirt puts its stores by default: /var/tmp, $TMPDIR) and prints
 * "listed ROOT/NAME" for every entry named like a store (fsvirt-*, or .fsvirt-* while one is being
 * made). It walks into each (at most 16 levels, 20000 entries) and reads every regular file it may
 * (the first MiB), looking for SECRET, which another run wrote into a file of its view. Prints
 * "FOUND PATH" for each file that holds it. Exit status 1 when SECRET was found, 0 when not, 2 on a
 * usage error. */
#include "attack.h"
#include <dirent.h>
#include <sys/stat.h>

static const char *secret;
static long entries, files_read, found;

static void look(const char *path, int depth) {
	if (depth > 16 || entries > 20000)
		return;
	entries++;
	struct stat st;
	if (lstat(path, &st) < 0)
		return;
	if (S_ISREG(st.st_mode)) {
		int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			return;
		static char data[1 << 20];
		ssize_t n = read(fd, data, sizeof data);
		close(fd);
		files_read++;
		if (n > 0 && memmem(data, n, secret, strlen(secret))) {
			printf("FOUND %s\n", path);
			found++;
		}
		return;
	}
	if (!S_ISDIR(st.st_mode))
		return;
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char sub[4096];
		if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < (int)sizeof sub)
			look(sub, depth + 1);
	}
	closedir(d);
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: storepeek SECRET ROOT...\n");
		return 2;
	}
	secret = argv[1];
	for (int i = 2; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		if (!d) {
			printf("cannot list %s: %s\n", argv[i], strerror(errno));
			continue;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			if (strncmp(e->d_name, "fsvirt-", 7) && strncmp(e->d_name, ".fsvirt-", 8))
				continue;
			char sub[4096];
			snprintf(sub, sizeof sub, "%s/%s", argv[i], e->d_name);
			printf("listed %s\n", sub);
			struct stat st;
			if (lstat(sub, &st) == 0)
				printf("reachable %s\n", sub);
			look(sub, 0);
		}
		closedir(d);
	}
	printf("walked %ld entries, read %ld files, found the secret in %ld\n", entries, files_read, found);
	return found > 0;
}
