package model

import (
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// create makes a new name: mkdirat, mknodat, symlinkat, linkat. The new name
// is checked as filename_create does: after the walk to its directory, "." or
// ".." or "/" give EEXIST, an existing name EEXIST, a trailing slash on a
// missing name ENOENT (but for mkdir).
func (m *Model) create(iv *invocation, op fsvirt.Op) (fsvirt.Outcome, Decision) {
	dirfd, path := op.Dirfd, op.Path
	var old walk // OpLink: the file to link
	switch op.Kind {
	case fsvirt.OpMknod:
		if t := op.Mode & unix.S_IFMT; t != 0 && t != unix.S_IFREG && t != unix.S_IFIFO {
			return fsvirt.Fail(unix.EINVAL), Decision{}
		}
	case fsvirt.OpSymlink:
		if len(op.Data) == 0 {
			return fsvirt.Fail(unix.ENOENT), Decision{}
		}
	case fsvirt.OpLink:
		if op.Flags&^(unix.AT_SYMLINK_FOLLOW) != 0 {
			return fsvirt.Fail(unix.EINVAL), Decision{}
		}
		var errno unix.Errno
		old, errno = iv.at(op.Dirfd, op.Path, op.Flags&unix.AT_SYMLINK_FOLLOW != 0 || hasTrailing(op.Path))
		if errno == 0 && old.node == nil {
			errno = unix.ENOENT
		}
		if errno != 0 {
			return fsvirt.Fail(errno), Decision{}
		}
		dirfd, path = op.NewDirfd, op.NewPath
	}
	w, errno := iv.parentAt(dirfd, path)
	switch {
	case errno != 0:
	case w.dot() || w.node != nil:
		errno = unix.EEXIST
	case w.dir.dead:
		errno = unix.ENOENT
	case w.trailing && op.Kind != fsvirt.OpMkdir:
		errno = unix.ENOENT
	case op.Kind == fsvirt.OpLink && iv.mayLink(old.node) != 0:
		errno = unix.EPERM
	case iv.mayCreate(w.dir) != 0:
		errno = unix.EACCES
	case op.Kind == fsvirt.OpLink && old.node.typ == fsvirt.Dir: // vfs_link, after may_create
		errno = unix.EPERM
	}
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}

	mode := op.Mode &^ m.umask & 0o7777
	var n *node
	dec := Decision{Mapping: Redirect}
	switch op.Kind {
	case fsvirt.OpMkdir:
		n = iv.owned(w.dir, &node{typ: fsvirt.Dir, mode: mode & 0o1777, entries: map[string]*node{}, parent: w.dir, touched: true})
	case fsvirt.OpMknod:
		n = &node{typ: fsvirt.File, mode: mode, nlink: 1}
		if op.Mode&unix.S_IFMT == unix.S_IFIFO {
			n.typ = fsvirt.Fifo
		}
		iv.owned(w.dir, n)
	case fsvirt.OpSymlink:
		n = iv.owned(w.dir, &node{typ: fsvirt.Symlink, mode: 0o777, target: string(op.Data), nlink: 1})
	case fsvirt.OpLink:
		n = old.node
		if n.shared && n.typ != fsvirt.File { // a shared symlink or FIFO is copied up first
			n, dec.Mapping = iv.private(old.dir, old.name, old.node)
			n.nlink++
			break
		}
		if n.shared { // a new name for the shared file: nothing is copied
			if iv.names == nil {
				iv.names = map[*node]uint64{}
			}
			if iv.names[n] == 0 {
				iv.names[n] = n.nlink
			}
			iv.names[n]++
			break
		}
		n.nlink++
	}
	w.dir.entries[w.name] = n
	w.dir.touched = true
	return fsvirt.Outcome{}, dec
}

func hasTrailing(path string) bool { return strings.HasSuffix(path, "/") }

// unlink is unlinkat, with and without AT_REMOVEDIR.
func (m *Model) unlink(iv *invocation, op fsvirt.Op) (fsvirt.Outcome, Decision) {
	if op.Flags&^unix.AT_REMOVEDIR != 0 {
		return fsvirt.Fail(unix.EINVAL), Decision{}
	}
	rmdir := op.Flags != 0
	w, errno := iv.parentAt(op.Dirfd, op.Path)
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}
	n := w.node
	switch {
	case rmdir && w.name == "..":
		errno = unix.ENOTEMPTY
	case rmdir && w.name == ".":
		errno = unix.EINVAL
	case rmdir && w.name == "":
		errno = unix.EBUSY
	case w.dot():
		errno = unix.EISDIR
	case n == nil:
		errno = unix.ENOENT
	case !rmdir && w.trailing && n.typ != fsvirt.Dir:
		errno = unix.ENOTDIR
	case !rmdir && w.trailing:
		errno = unix.EISDIR
	}
	if errno == 0 {
		errno = iv.mayDelete(w.dir, n) // may_delete, before the type of n
	}
	switch {
	case errno != 0:
	case rmdir && n.typ != fsvirt.Dir:
		errno = unix.ENOTDIR
	case rmdir && len(n.entries) > 0:
		errno = unix.ENOTEMPTY
	case !rmdir && n.typ == fsvirt.Dir:
		errno = unix.EISDIR
	}
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}
	if w.name == "" || w.name == "." || w.name == ".." {
		iv.undefined = "[bug] model: removing a dot"
	}
	iv.remove(w.dir, w.name)
	return fsvirt.Outcome{}, Decision{Mapping: Redirect}
}

// remove drops the entry name of dir: a directory dies, a non-directory
// loses a link, and a shared one is gone from the view.
func (iv *invocation) remove(dir *node, name string) {
	n := dir.entries[name]
	delete(dir.entries, name)
	dir.touched = true
	switch {
	case n.typ == fsvirt.Dir:
		n.dead = true
	case n.shared && iv.names[n] > 1: // another name still shows it
		iv.names[n]--
	case n.shared:
		iv.gone[n] = true
	default:
		n.nlink--
	}
}

// rename is renameat2 with 0, RENAME_NOREPLACE or RENAME_EXCHANGE, with the
// checks of do_renameat2 and vfs_rename in their order.
func (m *Model) rename(iv *invocation, op fsvirt.Op) (fsvirt.Outcome, Decision) {
	noreplace, exchange := op.Flags&unix.RENAME_NOREPLACE != 0, op.Flags&unix.RENAME_EXCHANGE != 0
	if op.Flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 || noreplace && exchange {
		return fsvirt.Fail(unix.EINVAL), Decision{}
	}
	from, errno := iv.parentAt(op.Dirfd, op.Path)
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}
	to, errno := iv.parentAt(op.NewDirfd, op.NewPath)
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}
	switch {
	case from.dot():
		errno = unix.EBUSY
	case to.dot() && noreplace:
		errno = unix.EEXIST
	case to.dot():
		errno = unix.EBUSY
	case from.node == nil:
		errno = unix.ENOENT
	case to.dir.dead:
		errno = unix.ENOENT
	case noreplace && to.node != nil:
		errno = unix.EEXIST
	case exchange && to.node == nil:
		errno = unix.ENOENT
	case exchange && to.node.typ != fsvirt.Dir && to.trailing:
		errno = unix.ENOTDIR
	case from.node.typ != fsvirt.Dir && (from.trailing || !exchange && to.trailing):
		errno = unix.ENOTDIR
	}
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}
	// lock_rename's trap: a child of one parent that is an ancestor of the
	// other.
	if trap := ancestorChild(from.dir, to.dir); trap != nil && trap == from.node {
		return fsvirt.Fail(unix.EINVAL), Decision{}
	}
	if trap := ancestorChild(to.dir, from.dir); trap != nil && trap == to.node {
		if exchange {
			return fsvirt.Fail(unix.EINVAL), Decision{}
		}
		return fsvirt.Fail(unix.ENOTEMPTY), Decision{}
	}
	src, dst := from.node, to.node
	if src == dst {
		return fsvirt.Outcome{}, Decision{Mapping: Redirect}
	}
	errno = iv.mayRename(from, to)
	if errno == 0 && dst != nil && !exchange {
		switch {
		case src.typ == fsvirt.Dir && dst.typ != fsvirt.Dir:
			errno = unix.ENOTDIR
		case src.typ != fsvirt.Dir && dst.typ == fsvirt.Dir:
			errno = unix.EISDIR
		}
	}
	if errno == 0 && from.dir != to.dir { // the parent changes: a directory's ".." is written
		if src.typ == fsvirt.Dir && !iv.may(src, unix.W_OK) || exchange && dst.typ == fsvirt.Dir && !iv.may(dst, unix.W_OK) {
			errno = unix.EACCES
		}
	}
	if errno == 0 && dst != nil && !exchange && dst.typ == fsvirt.Dir && len(dst.entries) > 0 {
		errno = unix.ENOTEMPTY
	}
	if errno != 0 {
		return fsvirt.Fail(errno), Decision{}
	}
	if dst != nil && !exchange {
		iv.remove(to.dir, to.name)
	}
	delete(from.dir.entries, from.name)
	if exchange {
		from.dir.entries[from.name] = dst
		reparent(dst, from.dir)
	}
	to.dir.entries[to.name] = src
	reparent(src, to.dir)
	from.dir.touched, to.dir.touched = true, true
	return fsvirt.Outcome{}, Decision{Mapping: Redirect}
}

func reparent(n, dir *node) {
	if n.typ == fsvirt.Dir {
		n.parent = dir
	}
}

// ancestorChild is d_ancestor(p1, p2): the child of p1 on the way up from
// p2 when p1 is a proper ancestor of p2, else nil.
func ancestorChild(p1, p2 *node) *node {
	for ; p2.parent != nil; p2 = p2.parent {
		if p2.parent == p1 {
			return p2
		}
	}
	return nil
}

// mayRename is vfs_rename's first permission checks: from's name may be removed, and to's name
// removed or made.
func (iv *invocation) mayRename(from, to walk) syscall.Errno {
	if errno := iv.mayDelete(from.dir, from.node); errno != 0 {
		return errno
	}
	if to.node == nil {
		return iv.mayCreate(to.dir)
	}
	return iv.mayDelete(to.dir, to.node)
}
