package model

import (
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// open is openat(2) in iv's view, with the kernel's checks in its order:
// flags, dirfd, path walk, final component.
func (m *Model) open(iv *invocation, op fsvirt.Op) (fsvirt.Outcome, Decision) {
	flags := op.Flags
	has := func(flag int) bool { return flags&flag == flag }
	if has(unix.O_PATH) {
		flags &= unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	}
	switch {
	case has(unix.O_DIRECTORY | unix.O_CREAT): // O_TMPFILE includes O_DIRECTORY
		return fsvirt.Fail(unix.EINVAL), Decision{}
	case has(unix.O_TMPFILE) && flags&unix.O_ACCMODE == unix.O_RDONLY:
		return fsvirt.Fail(unix.EINVAL), Decision{}
	}
	// O_TRUNC asks for write access too.
	write := !has(unix.O_PATH) && (flags&unix.O_ACCMODE != unix.O_RDONLY || has(unix.O_TRUNC))
	trailing := strings.HasSuffix(op.Path, "/")
	creat, excl := has(unix.O_CREAT), has(unix.O_CREAT|unix.O_EXCL)
	// O_CREAT|O_EXCL implies O_NOFOLLOW. A trailing slash follows, but
	// O_CREAT fails with EISDIR on it before following.
	follow := !has(unix.O_NOFOLLOW) && !excl
	if trailing {
		follow = !creat
	}
	w, errno := iv.at(op.Dirfd, op.Path, follow)
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}
	if has(unix.O_TMPFILE) {
		return m.tmpfile(iv, op, w, flags)
	}
	n, created := w.node, false
	switch {
	case w.dot() && excl:
		errno = unix.EEXIST
	case creat && (w.dot() || trailing):
		errno = unix.EISDIR
	case n == nil && !creat:
		errno = unix.ENOENT
	case n == nil && w.dir.dead:
		errno = unix.ENOENT
	case n == nil && iv.mayCreate(w.dir) != 0:
		errno = unix.EACCES
	case n == nil:
		n = iv.owned(w.dir, &node{typ: fsvirt.File, mode: op.Mode &^ m.umask & 0o7777, nlink: 1})
		w.dir.entries[w.name], created = n, true
		w.dir.touched = true
	case excl:
		errno = unix.EEXIST
	case creat && n.typ == fsvirt.Dir:
		errno = unix.EISDIR
	case (has(unix.O_DIRECTORY) || trailing) && n.typ != fsvirt.Dir:
		errno = unix.ENOTDIR
	case n.typ == fsvirt.Symlink && !has(unix.O_PATH):
		errno = unix.ELOOP
	case n.typ == fsvirt.Dir && write:
		errno = unix.EISDIR
	case n.typ == fsvirt.Fifo && !has(unix.O_PATH):
		iv.undefined = "a FIFO opened without O_PATH blocks"
	case !has(unix.O_PATH) && !iv.may(n, openMask(flags)): // may_open
		errno = unix.EACCES
	}
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}

	dec := Decision{Mapping: mapping(n)}
	switch {
	case created:
		dec.Mapping = Redirect
	case n.typ == fsvirt.File && write:
		n, dec.Mapping = iv.private(w.dir, w.name, n)
	}
	if n.typ == fsvirt.File && has(unix.O_TRUNC) && write && !created {
		n.data = nil
		iv.killPrivs(n)
	}
	f := &file{node: n, flags: flags}
	f.listShared = n.typ == fsvirt.Dir && dec.Mapping == PassThrough
	return fsvirt.Outcome{Ret: int64(iv.install(f))}, dec
}

// tmpfile is open(2) with O_TMPFILE: an unnamed file in the private layer.
func (m *Model) tmpfile(iv *invocation, op fsvirt.Op, w walk, flags int) (fsvirt.Outcome, Decision) {
	switch {
	case w.node == nil:
		return fsvirt.Fail(unix.ENOENT), Decision{}
	case w.node.typ != fsvirt.Dir:
		return fsvirt.Fail(unix.ENOTDIR), Decision{}
	case iv.mayCreate(w.node) != 0: // vfs_tmpfile
		return fsvirt.Fail(unix.EACCES), Decision{}
	case w.node.dead:
		// ext4 says EPERM; overlayfs ENOTDIR for a removed lower directory.
		iv.undefined = "O_TMPFILE in a removed directory is file-system specific"
		return fsvirt.Fail(unix.EPERM), Decision{}
	}
	n := iv.owned(w.node, &node{typ: fsvirt.File, mode: op.Mode &^ m.umask & 0o7777})
	f := &file{node: n, flags: flags}
	return fsvirt.Outcome{Ret: int64(iv.install(f))}, Decision{Mapping: Redirect}
}

// openMask is the access an open with flags asks for (build_open_flags): read and write by
// access mode, write for O_TRUNC.
func openMask(flags int) uint32 {
	mask := [...]uint32{unix.R_OK, unix.W_OK, unix.R_OK | unix.W_OK, unix.R_OK | unix.W_OK}[flags&unix.O_ACCMODE]
	if flags&unix.O_TRUNC != 0 {
		mask |= unix.W_OK
	}
	return mask
}
