package model

import (
	"maps"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// pathOp runs an op on the file a path names, with the kernel's checks in
// its order: arguments, path walk, the file.
func (m *Model) pathOp(iv *invocation, op fsvirt.Op) (fsvirt.Outcome, Decision) {
	if op.Kind == fsvirt.OpGetcwd {
		if iv.cwd.dead {
			return fsvirt.Fail(unix.ENOENT), Decision{}
		}
		return fsvirt.Outcome{Ret: int64(len(pathOf(iv.cwd)) + 1), Data: []byte(pathOf(iv.cwd))}, Decision{Mapping: mapping(iv.cwd)}
	}
	follow, ok := pathArgs(op)
	if !ok {
		return fsvirt.Fail(unix.EINVAL), Decision{}
	}
	if op.Kind == fsvirt.OpFstatat && op.Path == "" && op.Flags&unix.AT_EMPTY_PATH != 0 {
		if op.Dirfd == fsvirt.AtCWD {
			return fsvirt.Outcome{Stat: m.stat(iv.cwd)}, Decision{Mapping: mapping(iv.cwd)}
		}
		return m.fdOp(iv, fsvirt.Op{Kind: fsvirt.OpStat, Fd: op.Dirfd})
	}
	w, errno := iv.at(op.Dirfd, op.Path, follow || strings.HasSuffix(op.Path, "/"))
	if errno == 0 && w.node == nil {
		errno = unix.ENOENT
	}
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}
	n := w.node
	dec := Decision{Mapping: mapping(n)}
	if k := iv.names[n]; k > 0 { // a shared file the view linked: its names are the view's
		dec.Mapping = Redirect
		if op.Kind == fsvirt.OpFstatat {
			st := m.stat(n)
			st.Nlink = k
			return fsvirt.Outcome{Stat: st}, dec
		}
	}
	switch op.Kind {
	case fsvirt.OpFstatat:
		return fsvirt.Outcome{Stat: m.stat(n)}, dec
	case fsvirt.OpAccess:
		if !iv.may(n, op.Mode) {
			return fsvirt.Fail(unix.EACCES), dec
		}
		return fsvirt.Outcome{}, dec
	case fsvirt.OpReadlink:
		if n.typ != fsvirt.Symlink {
			return fsvirt.Fail(unix.EINVAL), dec
		}
		target := n.target[:min(int64(len(n.target)), op.Size)]
		return fsvirt.Outcome{Ret: int64(len(target)), Data: []byte(target)}, dec
	case fsvirt.OpChdir:
		if n.typ != fsvirt.Dir {
			return fsvirt.Fail(unix.ENOTDIR), dec
		}
		if !iv.may(n, unix.X_OK) {
			return fsvirt.Fail(unix.EACCES), dec
		}
		iv.cwd = n
		return fsvirt.Outcome{}, dec
	case fsvirt.OpGetxattr:
		v, ok := n.xattrs[op.Name]
		switch {
		case (n.typ == fsvirt.File || n.typ == fsvirt.Dir) && !iv.may(n, unix.R_OK): // xattr_permission
			return fsvirt.Fail(unix.EACCES), dec
		case !ok:
			return fsvirt.Fail(unix.ENODATA), dec
		case op.Size == 0:
			return fsvirt.Outcome{Ret: int64(len(v))}, dec
		case op.Size < int64(len(v)):
			return fsvirt.Fail(unix.ERANGE), dec
		}
		return fsvirt.Outcome{Ret: int64(len(v)), Data: []byte(v)}, dec
	case fsvirt.OpListxattr:
		var list []byte
		for _, name := range slices.Sorted(maps.Keys(n.xattrs)) {
			list = append(append(list, name...), 0)
		}
		switch {
		case op.Size == 0:
			return fsvirt.Outcome{Ret: int64(len(list))}, dec
		case op.Size < int64(len(list)):
			return fsvirt.Fail(unix.ERANGE), dec
		}
		return fsvirt.Outcome{Ret: int64(len(list)), Data: append([]byte{}, list...)}, dec
	}
	return m.change(iv, op, w)
}

// pathArgs says whether op follows a final symlink, and whether its
// arguments are valid; the kernel checks them before the path.
func pathArgs(op fsvirt.Op) (follow, ok bool) {
	nofollow := op.Flags&unix.AT_SYMLINK_NOFOLLOW != 0
	switch op.Kind {
	case fsvirt.OpFstatat:
		return !nofollow, op.Flags&^(unix.AT_SYMLINK_NOFOLLOW|unix.AT_EMPTY_PATH) == 0
	case fsvirt.OpAccess:
		return true, op.Mode&^(unix.R_OK|unix.W_OK|unix.X_OK) == 0
	case fsvirt.OpReadlink:
		return false, op.Size > 0
	case fsvirt.OpChown, fsvirt.OpUtimens:
		return !nofollow, op.Flags&^unix.AT_SYMLINK_NOFOLLOW == 0
	case fsvirt.OpTruncatePath:
		return true, op.Size >= 0
	case fsvirt.OpSetxattr:
		return true, op.Flags&^(unix.XATTR_CREATE|unix.XATTR_REPLACE) == 0
	case fsvirt.OpChdir, fsvirt.OpChmod, fsvirt.OpGetxattr, fsvirt.OpListxattr, fsvirt.OpRemovexattr:
		return true, true
	}
	return false, false
}

// change runs an op that changes the metadata or data of the file w names,
// copying it up first when it succeeds.
func (m *Model) change(iv *invocation, op fsvirt.Op, w walk) (fsvirt.Outcome, Decision) {
	n := w.node
	userXattrs := n.typ == fsvirt.File || n.typ == fsvirt.Dir
	// xattr_permission: a sticky directory's user.* names are its owner's to change.
	xattrErr := syscall.Errno(0)
	switch {
	case !userXattrs || n.typ == fsvirt.Dir && n.mode&unix.S_ISVTX != 0 && !iv.owns(n):
		xattrErr = unix.EPERM
	case !iv.may(n, unix.W_OK):
		xattrErr = unix.EACCES
	}
	switch op.Kind {
	case fsvirt.OpTruncatePath:
		switch {
		case n.typ == fsvirt.Dir:
			return fsvirt.Fail(unix.EISDIR), Decision{}
		case n.typ != fsvirt.File:
			return fsvirt.Fail(unix.EINVAL), Decision{}
		case !iv.may(n, unix.W_OK):
			return fsvirt.Fail(unix.EACCES), Decision{}
		}
	case fsvirt.OpChmod, fsvirt.OpUtimens: // explicit times, as the ops give them
		if !iv.owns(n) {
			return fsvirt.Fail(unix.EPERM), Decision{}
		}
	case fsvirt.OpChown:
		if errno := iv.chown(n, op.Uid, op.Gid); errno != 0 {
			return fsvirt.Fail(errno), Decision{}
		}
	case fsvirt.OpSetxattr:
		_, set := n.xattrs[op.Name]
		switch {
		case xattrErr != 0:
			return fsvirt.Fail(xattrErr), Decision{}
		case set && op.Flags == unix.XATTR_CREATE:
			return fsvirt.Fail(unix.EEXIST), Decision{}
		case !set && op.Flags == unix.XATTR_REPLACE:
			return fsvirt.Fail(unix.ENODATA), Decision{}
		}
	case fsvirt.OpRemovexattr:
		if _, set := n.xattrs[op.Name]; xattrErr != 0 {
			return fsvirt.Fail(xattrErr), Decision{}
		} else if !set {
			return fsvirt.Fail(unix.ENODATA), Decision{}
		}
	}
	n, mapping := iv.private(w.dir, w.name, n)
	switch op.Kind {
	case fsvirt.OpChmod:
		n.mode = op.Mode & 0o7777
		if !iv.inGroup(n.gid) {
			n.mode &^= unix.S_ISGID
		}
	case fsvirt.OpChown:
		if n.typ != fsvirt.Dir {
			n.mode &^= iv.dropIDs(n)
		}
		if op.Uid != -1 {
			n.uid = uint32(op.Uid)
		}
		if op.Gid != -1 {
			n.gid = uint32(op.Gid)
		}
	case fsvirt.OpTruncatePath:
		n.data = resize(n.data, op.Size)
		iv.killPrivs(n)
	case fsvirt.OpSetxattr:
		if n.xattrs == nil {
			n.xattrs = map[string]string{}
		}
		n.xattrs[op.Name] = string(op.Data)
	case fsvirt.OpRemovexattr:
		delete(n.xattrs, op.Name)
	}
	return fsvirt.Outcome{}, Decision{Mapping: mapping}
}
