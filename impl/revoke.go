package impl

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// In thread mode the function runs in the pool's process and shares its descriptor table. A
// descriptor of a file in its private layer that the function leaves open (an *os.File it never
// closed, a raw fd) would go on reading that file in later invocations, also after the layer was
// removed. When an invocation ends, every such descriptor is revoked: its number is made to name
// an empty, sealed memfd instead, with dup3, which replaces it atomically
// (docs/kernel.md, "dup3 replaces a descriptor atomically"). It is not closed: the *os.File or
// finalizer that owns the number would close it later, by then perhaps another file.

// revokedName is the memfd's name: /proc/PID/fd/N reads "/memfd:fsvirt-revoked (deleted)".
const revokedName = "fsvirt-revoked"

// newRevoked returns a descriptor of an empty memfd that can never be written or grow: what a
// revoked descriptor names. Reads give end of file, writes EPERM.
func newRevoked() (int, error) {
	fd, err := unix.MemfdCreate(revokedName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("seal memfd: %w", err)
	}
	return fd, nil
}

// revokeFDs makes every descriptor of this process whose file lies in directory dir, deleted or
// not, a duplicate of revoked, keeping its close-on-exec flag, and returns how many it revoked.
//
// It must run on a thread without the filter (the calls would be trapped and answered in a view),
// and only once nothing it must not revoke can be open in dir: the invocation has ended and the
// supervisor has answered its last notification. A descriptor closed, and its number reused for
// another file, between the readlink that finds it in dir and the dup3 that replaces it would be
// replaced all the same; only code that outlived its invocation can close such a descriptor then.
func revokeFDs(dir string, revoked int) (int, error) {
	d, err := long.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open /proc/self/fd: %w", err)
	}
	f := os.NewFile(uintptr(d), "/proc/self/fd")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("list /proc/self/fd: %w", err)
	}
	n := 0
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == d || fd == revoked {
			continue
		}
		// Only a regular file, directory or FIFO can be in dir: a socket, device or anonymous
		// inode needs no readlink, which costs several times this statx. DONT_SYNC: the type
		// is known without asking a network or FUSE file system.
		var stx unix.Statx_t
		if long.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &stx) != nil {
			continue
		}
		switch stx.Mode & unix.S_IFMT {
		case unix.S_IFREG, unix.S_IFDIR, unix.S_IFIFO:
		default:
			continue
		}
		target, err := readlinkat(d, name)
		if err != nil { // closed since the listing
			continue
		}
		if !within(strings.TrimSuffix(target, " (deleted)"), dir) {
			continue
		}
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			continue
		}
		flags := 0
		if fl&unix.FD_CLOEXEC != 0 {
			flags = unix.O_CLOEXEC
		}
		if err := unix.Dup3(revoked, fd, flags); err != nil {
			return n, fmt.Errorf("revoke fd %d (%s): %w", fd, target, err)
		}
		n++
	}
	return n, nil
}
