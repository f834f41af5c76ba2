package model

import (
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// openPlan is an open's flags as the kernel normalises them and where its
// path led.
type openPlan struct {
	flags    int
	trailing bool // the path ends in '/'
	walk     walk
	escaped  bool
}

func (p openPlan) has(flag int) bool { return p.flags&flag == flag }

// write says the open needs write access: O_TRUNC asks for it too.
func (p openPlan) write() bool {
	return !p.has(unix.O_PATH) && (p.flags&unix.O_ACCMODE != unix.O_RDONLY || p.has(unix.O_TRUNC))
}

// plan does the checks of open(2) that precede any change, in the kernel's
// order: flags, dirfd, path walk.
func (m *Model) plan(iv *invocation, op fsvirt.Op) (openPlan, syscall.Errno) {
	p := openPlan{flags: op.Flags, trailing: strings.HasSuffix(op.Path, "/")}
	if p.has(unix.O_PATH) {
		p.flags &= unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	}
	switch {
	case p.has(unix.O_DIRECTORY | unix.O_CREAT): // O_TMPFILE includes O_DIRECTORY
		return p, unix.EINVAL
	case p.has(unix.O_TMPFILE) && p.flags&unix.O_ACCMODE == unix.O_RDONLY:
		return p, unix.EINVAL
	}
	dir := ""
	if !strings.HasPrefix(op.Path, "/") && op.Dirfd != fsvirt.AtCWD {
		f := iv.fd(op.Dirfd)
		switch {
		case f == nil:
			return p, unix.EBADF
		case f.node.typ != fsvirt.Dir:
			return p, unix.ENOTDIR
		}
		dir = f.path
	}
	// O_CREAT|O_EXCL implies O_NOFOLLOW. A trailing slash follows, but
	// O_CREAT fails with EISDIR on it before following.
	follow := !p.has(unix.O_NOFOLLOW) && !p.has(unix.O_CREAT|unix.O_EXCL)
	if p.trailing {
		follow = !p.has(unix.O_CREAT)
	}
	r := resolver{m: m, iv: iv}
	w, errno := r.resolve(dir, op.Path, follow)
	p.walk, p.escaped = w, r.escaped
	return p, errno
}

// open is openat(2) in iv's view.
func (m *Model) open(iv *invocation, op fsvirt.Op) (fsvirt.Outcome, Decision) {
	p, errno := m.plan(iv, op)
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}
	if p.has(unix.O_TMPFILE) {
		return m.tmpfile(iv, op, p)
	}
	creat, excl := p.has(unix.O_CREAT), p.has(unix.O_CREAT|unix.O_EXCL)
	n, created := p.walk.node, false
	switch {
	case p.walk.dot && excl:
		errno = unix.EEXIST
	case creat && (p.walk.dot || p.trailing):
		errno = unix.EISDIR
	case n == nil && !creat:
		errno = unix.ENOENT
	case n == nil:
		n = &node{typ: fsvirt.File, mode: op.Mode &^ m.umask, nlink: 1}
		iv.layer[p.walk.path], created = n, true
	case excl:
		errno = unix.EEXIST
	case creat && n.typ == fsvirt.Dir:
		errno = unix.EISDIR
	case (p.has(unix.O_DIRECTORY) || p.trailing) && n.typ != fsvirt.Dir:
		errno = unix.ENOTDIR
	case n.typ == fsvirt.Symlink && !p.has(unix.O_PATH):
		errno = unix.ELOOP
	case n.typ == fsvirt.Dir && p.write():
		errno = unix.EISDIR
	}
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}

	dec := Decision{Mapping: PassThrough}
	switch {
	case created || iv.layer[p.walk.path] == n:
		dec.Mapping = Redirect
	case n.typ == fsvirt.File && p.write():
		n = &node{typ: fsvirt.File, mode: n.mode, data: slices.Clone(n.data), nlink: 1}
		iv.layer[p.walk.path] = n
		iv.copyUps++
		dec.Mapping = CopyUp
	}
	if n.typ == fsvirt.File && p.has(unix.O_TRUNC) && p.write() && !created {
		n.data = nil
	}
	f := &file{node: n, path: p.walk.path, private: dec.Mapping != PassThrough, flags: p.flags}
	return fsvirt.Outcome{Ret: int64(iv.install(f))}, dec
}

// tmpfile is open(2) with O_TMPFILE: an unnamed file in the private layer.
func (m *Model) tmpfile(iv *invocation, op fsvirt.Op, p openPlan) (fsvirt.Outcome, Decision) {
	switch {
	case p.walk.node == nil:
		return fsvirt.Fail(unix.ENOENT), Decision{}
	case p.walk.node.typ != fsvirt.Dir:
		return fsvirt.Fail(unix.ENOTDIR), Decision{}
	}
	n := &node{typ: fsvirt.File, mode: op.Mode &^ m.umask}
	f := &file{node: n, private: true, flags: p.flags}
	return fsvirt.Outcome{Ret: int64(iv.install(f))}, Decision{Mapping: Redirect}
}
