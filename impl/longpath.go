package impl

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Paths longer than the kernel takes.
//
// The kernel refuses a path string of PATH_MAX bytes or more (maxPath, its NUL included), but not a
// file whose full path is longer (docs/kernel.md, "Opening host paths without following symlinks"):
// a task in a deep working directory reaches it by a relative path of up to 4,095 bytes, and may go
// deeper from there. The supervisor names files by their full paths, on the host and in the private
// layer (whose paths the store's directory lengthens), so for such a file the path it would pass is
// too long, though every name on the way is short.
//
// long's methods are the calls of package unix that the supervisor makes on paths, taking the same
// arguments. A path that fits is passed as is; a longer one is split: the directory that holds its
// last part is opened piece by piece, each piece shorter than maxPath, without following symlinks
// (the supervisor's paths are resolved: a symlink on the way is one swapped in since, which the
// walk refuses with ELOOP, as openHost does), and the call is made relative to it. Each piece is
// one openat2; a path that fits costs one length check.
var long longCalls

type longCalls struct{}

// at returns a directory descriptor and a path relative to it that name what p names, and a
// function that closes the descriptor. dirfd is a descriptor the caller passed for a relative p,
// or unix.AT_FDCWD. A p that fits, or a relative one, is returned as is.
func longAt(dirfd int, p string) (int, string, func(), error) {
	if len(p) < maxPath || dirfd != unix.AT_FDCWD || !strings.HasPrefix(p, "/") {
		return dirfd, p, func() {}, nil
	}
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Open("/", int(how.Flags), 0)
	if err != nil {
		return -1, "", nil, err
	}
	rest := strings.TrimLeft(p, "/")
	for len(rest) >= maxPath {
		cut := strings.LastIndexByte(rest[:maxPath-1], '/')
		if cut <= 0 {
			unix.Close(fd)
			return -1, "", nil, unix.ENAMETOOLONG // a name longer than NAME_MAX, refused anyway
		}
		next, err := openat2Retry(fd, rest[:cut], &how)
		unix.Close(fd)
		if err != nil {
			return -1, "", nil, err
		}
		fd, rest = next, strings.TrimLeft(rest[cut:], "/")
	}
	return fd, rest, func() { unix.Close(fd) }, nil
}

// openat2Retry is openat2, again while the kernel answers EAGAIN (a rename raced the lookup) or
// EINTR (docs/kernel.md, "Opening host paths without following symlinks").
func openat2Retry(dirfd int, p string, how *unix.OpenHow) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, p, how)
		if err != unix.EAGAIN && err != unix.EINTR {
			return fd, err
		}
	}
}

// magicPath names what dirfd and rest name by one path, for the calls that take no directory
// descriptor (the xattr family): through the supervisor's own descriptor of the directory.
func magicPath(dirfd int, rest string) string {
	if dirfd == unix.AT_FDCWD {
		return rest
	}
	return fdPath(dirfd) + "/" + rest
}

// call1 runs fn on what dirfd and p name, made short enough.
func call1(dirfd int, p string, fn func(dirfd int, p string) error) error {
	d, rest, done, err := longAt(dirfd, p)
	if err != nil {
		return err
	}
	defer done()
	return fn(d, rest)
}

// call2 runs fn on two paths, each made short enough.
func call2(dirfd1 int, p1 string, dirfd2 int, p2 string,
	fn func(int, string, int, string) error) error {
	return call1(dirfd1, p1, func(d1 int, r1 string) error {
		return call1(dirfd2, p2, func(d2 int, r2 string) error { return fn(d1, r1, d2, r2) })
	})
}

func (longCalls) Lstat(p string, st *unix.Stat_t) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Fstatat(d, r, st, unix.AT_SYMLINK_NOFOLLOW)
	})
}

func (longCalls) Stat(p string, st *unix.Stat_t) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error { return unix.Fstatat(d, r, st, 0) })
}

func (longCalls) Open(p string, flags int, mode uint32) (fd int, err error) {
	err = call1(unix.AT_FDCWD, p, func(d int, r string) error {
		fd, err = unix.Openat(d, r, flags, mode)
		return err
	})
	return fd, err
}

func (longCalls) Openat2(dirfd int, p string, how *unix.OpenHow) (fd int, err error) {
	err = call1(dirfd, p, func(d int, r string) error {
		fd, err = unix.Openat2(d, r, how)
		return err
	})
	return fd, err
}

func (longCalls) Mkdir(p string, mode uint32) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error { return unix.Mkdirat(d, r, mode) })
}

func (longCalls) Mknod(p string, mode uint32, dev int) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Mknodat(d, r, mode, dev)
	})
}

func (longCalls) Unlink(p string) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error { return unix.Unlinkat(d, r, 0) })
}

func (longCalls) Rmdir(p string) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Unlinkat(d, r, unix.AT_REMOVEDIR)
	})
}

func (longCalls) Rename(from, to string) error {
	return call2(unix.AT_FDCWD, from, unix.AT_FDCWD, to,
		func(d1 int, r1 string, d2 int, r2 string) error {
			return unix.Renameat(d1, r1, d2, r2)
		})
}

func (longCalls) Renameat2(fromDir int, from string, toDir int, to string, flags uint) error {
	return call2(fromDir, from, toDir, to, func(d1 int, r1 string, d2 int, r2 string) error {
		return unix.Renameat2(d1, r1, d2, r2, flags)
	})
}

func (longCalls) Link(from, to string) error {
	return call2(unix.AT_FDCWD, from, unix.AT_FDCWD, to,
		func(d1 int, r1 string, d2 int, r2 string) error {
			return unix.Linkat(d1, r1, d2, r2, 0)
		})
}

func (longCalls) Linkat(fromDir int, from string, toDir int, to string, flags int) error {
	return call2(fromDir, from, toDir, to, func(d1 int, r1 string, d2 int, r2 string) error {
		return unix.Linkat(d1, r1, d2, r2, flags)
	})
}

func (longCalls) Symlink(target, p string) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Symlinkat(target, d, r)
	})
}

func (longCalls) Lchown(p string, uid, gid int) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Fchownat(d, r, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	})
}

func (longCalls) Chmod(p string, mode uint32) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Fchmodat(d, r, mode, 0)
	})
}

func (longCalls) Fchmodat(dirfd int, p string, mode uint32, flags int) error {
	return call1(dirfd, p, func(d int, r string) error { return unix.Fchmodat(d, r, mode, flags) })
}

func (longCalls) Truncate(p string, size int64) error {
	if len(p) < maxPath {
		return unix.Truncate(p, size)
	}
	// truncate(2) on the directory's descriptor and the rest, through the magic link.
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Truncate(magicPath(d, r), size)
	})
}

func (longCalls) UtimesNanoAt(dirfd int, p string, ts []unix.Timespec, flags int) error {
	return call1(dirfd, p, func(d int, r string) error {
		return unix.UtimesNanoAt(d, r, ts, flags)
	})
}

func (longCalls) Faccessat2(dirfd int, p string, mode uint32, flags int) error {
	return call1(dirfd, p, func(d int, r string) error {
		return unix.Faccessat2(d, r, mode, flags)
	})
}

func (longCalls) Statx(dirfd int, p string, flags, mask int, stx *unix.Statx_t) error {
	return call1(dirfd, p, func(d int, r string) error {
		return unix.Statx(d, r, flags, mask, stx)
	})
}

func (longCalls) Statfs(p string, buf *unix.Statfs_t) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Statfs(magicPath(d, r), buf)
	})
}

func (longCalls) Lgetxattr(p, attr string, dest []byte) (n int, err error) {
	err = call1(unix.AT_FDCWD, p, func(d int, r string) error {
		n, err = unix.Lgetxattr(magicPath(d, r), attr, dest)
		return err
	})
	return n, err
}

func (longCalls) Llistxattr(p string, dest []byte) (n int, err error) {
	err = call1(unix.AT_FDCWD, p, func(d int, r string) error {
		n, err = unix.Llistxattr(magicPath(d, r), dest)
		return err
	})
	return n, err
}

func (longCalls) Setxattr(p, attr string, data []byte, flags int) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Setxattr(magicPath(d, r), attr, data, flags)
	})
}

func (longCalls) Lsetxattr(p, attr string, data []byte, flags int) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Lsetxattr(magicPath(d, r), attr, data, flags)
	})
}

func (longCalls) Lremovexattr(p, attr string) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Lremovexattr(magicPath(d, r), attr)
	})
}

func (longCalls) Removexattr(p, attr string) error {
	return call1(unix.AT_FDCWD, p, func(d int, r string) error {
		return unix.Removexattr(magicPath(d, r), attr)
	})
}

func (longCalls) Readlinkat(dirfd int, p string, buf []byte) (n int, err error) {
	err = call1(dirfd, p, func(d int, r string) error {
		n, err = unix.Readlinkat(d, r, buf)
		return err
	})
	return n, err
}
