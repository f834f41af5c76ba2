package sysexec

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// Build creates t under dir, which must exist, with t's exact modes and
// owners (an entry owned by 0:0 keeps the builder's); dir itself gets mode
// 0755.
func Build(dir string, t fsvirt.Tree) error {
	for _, p := range t.Paths() {
		n, full := t[p], filepath.Join(dir, p)
		var err error
		switch n.Type {
		case fsvirt.Dir:
			err = os.Mkdir(full, 0o700)
		case fsvirt.File:
			err = os.WriteFile(full, []byte(n.Data), 0o600)
		case fsvirt.Symlink:
			err = os.Symlink(n.Target, full)
		case fsvirt.Fifo:
			err = unix.Mkfifo(full, 0o600)
		}
		if err == nil && (n.Uid != 0 || n.Gid != 0) {
			err = os.Lchown(full, ownerID(n.Uid), ownerID(n.Gid))
		}
		if err == nil && n.Type != fsvirt.Symlink {
			err = unix.Chmod(full, n.Mode) // exact, whatever the umask; after chown, which clears set-ID bits
		}
		if err != nil {
			return err
		}
	}
	return os.Chmod(dir, 0o755)
}

// ownerID is id for chown(2), where -1 keeps the builder's.
func ownerID(id uint32) int {
	if id == 0 {
		return -1
	}
	return int(id)
}

// Walk reads the tree under dir back. An owner that is dir's own is 0:0.
func Walk(dir string) (fsvirt.Tree, error) {
	var top unix.Stat_t
	if err := unix.Lstat(dir, &top); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	t := fsvirt.Tree{}
	err := filepath.WalkDir(dir, func(full string, d fs.DirEntry, err error) error {
		if err != nil || full == dir {
			return err
		}
		p, err := filepath.Rel(dir, full)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		n := fsvirt.Node{Mode: st.Mode & 0o7777}
		if st.Uid != top.Uid {
			n.Uid = st.Uid
		}
		if st.Gid != top.Gid {
			n.Gid = st.Gid
		}
		switch {
		case d.IsDir():
			n.Type = fsvirt.Dir
		case d.Type().IsRegular():
			n.Type = fsvirt.File
			data, err := os.ReadFile(full)
			n.Data = string(data)
			if err != nil {
				return err
			}
		case d.Type() == fs.ModeNamedPipe:
			n.Type = fsvirt.Fifo
		case d.Type() == fs.ModeSymlink:
			n.Type = fsvirt.Symlink
			if n.Target, err = os.Readlink(full); err != nil {
				return err
			}
		default:
			return fmt.Errorf("walk %s: unexpected file type %v", full, d.Type())
		}
		t[filepath.ToSlash(p)] = n
		return nil
	})
	return t, err
}

// Umask returns the calling thread's umask without changing it (umask(2)
// would set it, racing with other threads).
func Umask() (uint32, error) {
	status, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return uint32(mask), err
		}
	}
	return 0, fmt.Errorf("no Umask in /proc/thread-self/status")
}

// OpenFDs lists the process's open fds and what they refer to.
func OpenFDs() (map[int]string, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	fds := map[int]string{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			return nil, err
		}
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the fd ReadDir used, closed since
		}
		fds[fd] = target
	}
	return fds, nil
}

// HaveUserXattrs reports whether the file system at dir takes user.* extended
// attributes on regular files; the error wraps ENOTSUP when it does not.
func HaveUserXattrs(dir string) error {
	f, err := os.CreateTemp(dir, "xattr-probe-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Close(); err != nil {
		return err
	}
	if err := unix.Setxattr(f.Name(), "user.probe", []byte("1"), 0); err != nil {
		return &os.PathError{Op: "setxattr", Path: f.Name(), Err: err}
	}
	return nil
}
