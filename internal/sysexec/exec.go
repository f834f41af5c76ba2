package sysexec

import (
	"errors"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// Exec runs ops with real syscalls in the tree at root.
type Exec struct {
	root string
	cwd  bool  // the thread's working directory is root: relative paths are passed as they are
	fds  []int // by handle; -1 when free
}

// New returns an Exec for the tree at root, an absolute path. It opens nothing.
func New(root string) *Exec {
	return &Exec{root: strings.TrimSuffix(root, "/")}
}

// NewInCwd returns an Exec that changes the calling thread's working directory to root and then
// passes relative paths to the kernel unchanged, so that they resolve against the thread's cwd for
// real. Only a thread with a working directory of its own (unshare(CLONE_FS), as the engine's
// workers have) may use it, from a goroutine locked to that thread.
func NewInCwd(root string) (*Exec, error) {
	if err := unix.Chdir(root); err != nil {
		return nil, err
	}
	return &Exec{root: strings.TrimSuffix(root, "/"), cwd: true}, nil
}

// Do runs op and returns what the kernel said.
func (x *Exec) Do(op fsvirt.Op) fsvirt.Outcome {
	if op.Kind == fsvirt.OpOpen {
		return x.open(op)
	}
	fd := -1
	if op.Fd >= 0 && int(op.Fd) < len(x.fds) {
		fd = x.fds[op.Fd]
	}
	switch op.Kind {
	case fsvirt.OpRead:
		buf := make([]byte, op.Size)
		n, err := unix.Read(fd, buf)
		if err != nil {
			return fail(err)
		}
		return fsvirt.Outcome{Ret: int64(n), Data: buf[:n]}
	case fsvirt.OpWrite:
		return result(unix.Write(fd, op.Data))
	case fsvirt.OpPwrite:
		return result(unix.Pwrite(fd, op.Data, op.Offset))
	case fsvirt.OpSeek:
		off, err := unix.Seek(fd, op.Offset, op.Whence)
		if err != nil {
			return fail(err)
		}
		return fsvirt.Outcome{Ret: off}
	case fsvirt.OpTruncate:
		return result(0, unix.Ftruncate(fd, op.Size))
	case fsvirt.OpStat:
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fail(err)
		}
		return fsvirt.Outcome{Stat: StatOf(&st)}
	case fsvirt.OpClose:
		err := unix.Close(fd)
		if fd >= 0 {
			x.fds[op.Fd] = -1
		}
		return result(0, err)
	}
	return fsvirt.Fail(unix.ENOSYS)
}

func (x *Exec) open(op fsvirt.Op) fsvirt.Outcome {
	dirfd, path := unix.AT_FDCWD, op.Path
	switch {
	case strings.HasPrefix(path, "/"):
		path = x.root + path
	case op.Dirfd == fsvirt.AtCWD && x.cwd:
	case op.Dirfd == fsvirt.AtCWD:
		path = x.root + "/" + path
	case op.Dirfd >= 0 && int(op.Dirfd) < len(x.fds):
		dirfd = x.fds[op.Dirfd]
	default:
		dirfd = -1 // EBADF, as for any fd that is not open
	}
	fd, err := unix.Openat(dirfd, path, op.Flags, op.Mode)
	if err != nil {
		return fail(err)
	}
	h := slices.Index(x.fds, -1)
	if h < 0 {
		h = len(x.fds)
		x.fds = append(x.fds, fd)
	}
	x.fds[h] = fd
	return fsvirt.Outcome{Ret: int64(h)}
}

// Close closes every open handle.
func (x *Exec) Close() error {
	var errs []error
	for h, fd := range x.fds {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
			x.fds[h] = -1
		}
	}
	return errors.Join(errs...)
}

// StatOf keeps the fields of st that [fsvirt.Stat] promises.
func StatOf(st *unix.Stat_t) fsvirt.Stat {
	s := fsvirt.Stat{Mode: st.Mode, Size: st.Size, Nlink: st.Nlink}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		s.Size, s.Nlink = 0, 0
	}
	return s
}

func result(n int, err error) fsvirt.Outcome {
	if err != nil {
		return fail(err)
	}
	return fsvirt.Outcome{Ret: int64(n)}
}

// fail turns a syscall error into its outcome. Anything that is not an errno
// is a bug here: the unix package returns bare errnos.
func fail(err error) fsvirt.Outcome {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		panic("[bug] sysexec: not an errno: " + err.Error())
	}
	return fsvirt.Fail(errno)
}
