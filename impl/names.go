package impl

import (
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// mknode is mkdir, mknod and symlink: a new name in a directory.
func (v *View) mknode(t tracee, o op) (reply, error) {
	if o.kind == opSymlink && o.target == "" {
		return reply{}, unix.ENOENT
	}
	// mknod checks the type before the path (may_mknod), and the right to make a device after it.
	typ := o.mode & unix.S_IFMT
	if o.kind == opMknod {
		switch typ {
		case 0:
			typ = unix.S_IFREG
		case unix.S_IFREG, unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFCHR, unix.S_IFBLK:
		case unix.S_IFDIR:
			return reply{}, unix.EPERM
		default:
			return reply{}, unix.EINVAL
		}
	}
	r, err := v.lookupName(t, o)
	if err != nil {
		return reply{}, err
	}
	switch {
	case r.dot() || r.exists():
		return reply{}, unix.EEXIST
	case r.kind == resDeadDir, r.trailingSlash && o.kind != opMkdir:
		return reply{}, unix.ENOENT
	}
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	if (typ == unix.S_IFCHR || typ == unix.S_IFBLK) && !c.capable(unix.CAP_MKNOD) {
		// The kernel wants CAP_MKNOD. A caller that holds it gets its device node in the private
		// layer, as on overlayfs: opening it opens the host's device, as the node would natively.
		return reply{}, unix.EPERM
	}
	if !r.inTree {
		return okReply, atHost(t, r.path, func(dirfd int, name string) error {
			return mknodeAt(c, dirfd, name, o, typ)
		})
	}
	if err := v.mayMakeIn(c, pathDir(r.path)); err != nil {
		return reply{}, err
	}
	if err := v.addable(pathDir(r.path)); err != nil {
		return reply{}, err
	}
	host := v.upperPath(r.path)
	switch o.kind {
	case opMkdir:
		err = long.Mkdir(host, 0o700)
	case opMknod:
		err = long.Mknod(host, typ|0o600, int(o.dev))
	case opSymlink:
		err = long.Symlink(o.target, host)
	}
	if err != nil {
		return reply{}, err
	}
	// The supervisor made it: it gets the caller's owner, as the kernel would have given it.
	var dir unix.Stat_t
	err = long.Lstat(path.Dir(host), &dir)
	if err == nil {
		var fd int
		if fd, err = long.Open(host, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
			err = newOwner(c, &dir, nodeType(o, typ), o.mode).give(fd)
			unix.Close(fd)
		}
	}
	if err != nil {
		if o.kind == opMkdir {
			long.Rmdir(host)
		} else {
			long.Unlink(host)
		}
		return reply{}, err
	}
	e := &entry{kind: entryObj, own: true}
	if o.kind == opMkdir {
		e = &entry{kind: entryDir, own: true, listing: listMaterialized}
	}
	v.setEntry(r.path, e)
	return okReply, nil
}

// nodeType is the type of the object mknode makes for o: typ, mknod's, or a directory or a symlink.
func nodeType(o op, typ uint32) uint32 {
	switch o.kind {
	case opMkdir:
		return unix.S_IFDIR
	case opSymlink:
		return unix.S_IFLNK
	}
	return typ
}

// mknodeAt makes o's new name in directory dirfd on the host, with the credentials of the thread
// (caller c's: the kernel gives the owner, and a set-group-ID directory's group) and then the
// permissions newOwner says, which the supervisor's own umask would otherwise reduce. The new
// object is changed through a descriptor of its own, never by a name that a racing task could
// replace.
func mknodeAt(c creds, dirfd int, name string, o op, typ uint32) error {
	var err error
	switch o.kind {
	case opMkdir:
		err = unix.Mkdirat(dirfd, name, 0o700)
	case opMknod:
		err = unix.Mknodat(dirfd, name, typ|0o600, int(o.dev))
	case opSymlink:
		return unix.Symlinkat(o.target, dirfd, name)
	}
	if err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st, dir unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.EEXIST // replaced by a symlink since: changed nothing through it
	}
	if err := unix.Fstat(dirfd, &dir); err != nil {
		return err
	}
	return newOwner(c, &dir, nodeType(o, typ), o.mode).give(fd)
}

// sameObject reports whether host paths a and b name one object.
func sameObject(a, b string) bool {
	var sa, sb unix.Stat_t
	return a == b || long.Lstat(a, &sa) == nil && long.Lstat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// unlink is unlink, unlinkat and rmdir.
func (v *View) unlink(t tracee, o op) (reply, error) {
	if o.flags&^uint64(unix.AT_REMOVEDIR) != 0 {
		return reply{}, unix.EINVAL
	}
	rmdir := o.flags&unix.AT_REMOVEDIR != 0
	r, err := v.lookupName(t, o)
	if err != nil {
		return reply{}, err
	}
	base := path.Base(strings.TrimRight(o.unsafePath, "/"))
	switch {
	case rmdir && base == ".":
		return reply{}, unix.EINVAL
	case rmdir && base == "..":
		return reply{}, unix.ENOTEMPTY
	case r.dot():
		return reply{}, unix.EISDIR
	case !r.exists():
		return reply{}, unix.ENOENT
	case !rmdir && r.trailingSlash && r.mode == unix.S_IFDIR:
		return reply{}, unix.EISDIR
	case !rmdir && r.trailingSlash:
		return reply{}, unix.ENOTDIR
	}
	if !r.inTree {
		return okReply, atHost(t, r.host, func(dirfd int, name string) error {
			return unix.Unlinkat(dirfd, name, int(o.flags))
		})
	}
	if v.isTreeRoot(r.path) {
		if !rmdir {
			return reply{}, unix.EISDIR
		}
		return reply{}, unix.EBUSY
	}
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	if err := v.mayRemove(c, r.path); err != nil {
		return reply{}, err
	}
	switch { // may_delete checks the type after the permissions
	case rmdir && r.mode != unix.S_IFDIR:
		return reply{}, unix.ENOTDIR
	case !rmdir && r.mode == unix.S_IFDIR:
		return reply{}, unix.EISDIR
	}
	if rmdir && v.isPartial(r.ent) { // its listing is not all in its upper directory
		if err := v.materialize(r.path); err != nil {
			return reply{}, err
		}
	}
	if rmdir {
		// The kernel's check, before prepareRemove materializes the parent: a failed rmdir
		// changes nothing. The listing is the upper directory's when the view owns it, else the
		// shared directory's.
		names, err := readDirNames(r.host)
		if err != nil {
			return reply{}, err
		}
		for _, n := range names {
			if !v.ns.hidden(path.Join(r.path, n)) {
				return reply{}, unix.ENOTEMPTY
			}
		}
	}
	if err := v.prepareRemove(r.path); err != nil {
		return reply{}, err
	}
	up := v.upperPath(r.path)
	if !rmdir {
		if err := long.Unlink(up); err != nil {
			return reply{}, err
		}
		v.noteRemoved(r.path)
		v.dropTree(r.path)
		return okReply, nil
	}
	// What a task that still holds the directory will see of it (see ghost).
	var st unix.Stat_t
	if err := long.Lstat(r.host, &st); err != nil {
		return reply{}, err
	}
	// A mirrored directory's upper directory holds only copies of shared children, and the
	// shared directory is empty: whatever is left there is not in the view.
	if r.ent != nil && r.ent.listing != listMaterialized {
		if err := os.RemoveAll(up); err != nil {
			return reply{}, err
		}
	} else if err := long.Rmdir(up); err != nil {
		return reply{}, err
	}
	v.noteRemoved(r.path)
	v.dropTree(r.path)
	lower := r.host
	if r.ent != nil {
		lower = r.ent.lower
	}
	v.removedDir(r.path, lower, &st)
	return okReply, nil
}

// rename is rename, renameat and renameat2. Both names' directories are materialized and the
// kernel renames in the private layer; a shared file or directory moves as its placeholder,
// without copying data.
func (v *View) rename(t tracee, o op) (reply, error) {
	const known = unix.RENAME_NOREPLACE | unix.RENAME_EXCHANGE | unix.RENAME_WHITEOUT
	if o.flags&^uint64(known) != 0 || o.flags&unix.RENAME_EXCHANGE != 0 && o.flags&(unix.RENAME_NOREPLACE|unix.RENAME_WHITEOUT) != 0 {
		return reply{}, unix.EINVAL
	}
	if o.flags&unix.RENAME_WHITEOUT != 0 {
		return reply{}, unix.EPERM
	}
	from, to, err := v.lookupNames(t, o)
	if err != nil {
		return reply{}, err
	}
	exchange := o.flags&unix.RENAME_EXCHANGE != 0
	// In do_renameat2's order.
	switch {
	case from.inTree != to.inTree:
		return reply{}, unix.EXDEV
	case from.dot():
		return reply{}, unix.EBUSY
	case to.dot() && o.flags&unix.RENAME_NOREPLACE != 0:
		return reply{}, unix.EEXIST
	case to.dot():
		return reply{}, unix.EBUSY
	case from.kind == resLongName:
		return reply{}, unix.ENAMETOOLONG
	case !from.exists():
		return reply{}, unix.ENOENT
	case to.kind == resLongName:
		return reply{}, unix.ENAMETOOLONG
	case to.kind == resDeadDir, exchange && !to.exists():
		return reply{}, unix.ENOENT
	case o.flags&unix.RENAME_NOREPLACE != 0 && to.exists():
		return reply{}, unix.EEXIST
	case !exchange && from.mode != unix.S_IFDIR && (from.trailingSlash || to.trailingSlash):
		return reply{}, unix.ENOTDIR
	case exchange && (from.mode != unix.S_IFDIR && from.trailingSlash || to.mode != unix.S_IFDIR && to.trailingSlash):
		return reply{}, unix.ENOTDIR
	}
	if !from.inTree {
		return okReply, atHost(t, from.host, func(fromDir int, fromName string) error {
			toDir, toName, err := hostParent(to.path)
			if err != nil {
				return err
			}
			defer unix.Close(toDir)
			return long.Renameat2(fromDir, fromName, toDir, toName, uint(o.flags))
		})
	}
	if v.isTreeRoot(from.path) || v.isTreeRoot(to.path) {
		return reply{}, unix.EBUSY
	}
	// The checks that need no listing, before anything is materialized: a failed rename changes
	// nothing in the private layer. In do_renameat2's and vfs_rename's order: the ancestors, one
	// file under two names (which renames nothing), the permissions, the types.
	if from.path != to.path {
		switch {
		case within(to.path, from.path) && to.path != from.path:
			return reply{}, unix.EINVAL
		case within(from.path, to.path) && !exchange && to.exists():
			return reply{}, unix.ENOTEMPTY
		case within(from.path, to.path) && exchange:
			return reply{}, unix.EINVAL
		}
	}
	if from.path != to.path && to.exists() && from.mode != unix.S_IFDIR && sameObject(from.host, to.host) {
		// Two names of one file (see linkShared): vfs_rename changes nothing, with or without
		// RENAME_EXCHANGE, before it checks permissions.
		return okReply, nil
	}
	if from.path != to.path {
		if err := v.mayRename(t, from, to); err != nil {
			return reply{}, err
		}
		switch {
		case !to.exists() || exchange:
		case from.mode == unix.S_IFDIR && to.mode != unix.S_IFDIR:
			return reply{}, unix.ENOTDIR
		case from.mode != unix.S_IFDIR && to.mode == unix.S_IFDIR:
			return reply{}, unix.EISDIR
		}
		if err := v.mayReparent(t, from, to, exchange); err != nil {
			return reply{}, err
		}
	}
	if exchange || from.path == to.path || to.exists() { // a shared name may be replaced: complete listings
		if err := v.materialize(pathDir(from.path)); err != nil {
			return reply{}, err
		}
		if err := v.materialize(pathDir(to.path)); err != nil {
			return reply{}, err
		}
	} else {
		if err := v.prepareRemove(from.path); err != nil {
			return reply{}, err
		}
		if err := v.addableDir(pathDir(to.path)); err != nil {
			return reply{}, err
		}
	}
	if to.exists() && to.mode == unix.S_IFDIR && !exchange && from.path != to.path {
		// The kernel checks that a replaced directory is empty: its upper directory must list it.
		if err := v.materialize(to.path); err != nil {
			return reply{}, err
		}
	}
	// A directory the rename replaces is removed: what a task that holds it will see (see ghost).
	var replaced *unix.Stat_t
	if to.exists() && to.mode == unix.S_IFDIR && !exchange && from.path != to.path {
		replaced = new(unix.Stat_t)
		if err := long.Lstat(to.host, replaced); err != nil {
			return reply{}, err
		}
	}
	if err := long.Renameat2(unix.AT_FDCWD, v.upperPath(from.path), unix.AT_FDCWD, v.upperPath(to.path), uint(o.flags)); err != nil {
		return reply{}, err
	}
	if to.exists() && !exchange && from.path != to.path {
		v.noteRemoved(to.path) // the name now shows another object: a shared one it replaced is deleted
	}
	if replaced != nil {
		lower := to.host
		if to.ent != nil {
			lower = to.ent.lower
		}
		v.removedDir(to.path, lower, replaced)
	}
	// A name renamed onto another link of its file stays where it was, as rename(2) leaves both.
	var st unix.Stat_t
	if from.path == to.path || !exchange && long.Lstat(v.upperPath(from.path), &st) == nil {
		return okReply, nil
	}
	if !exchange {
		v.noteRemoved(from.path)
	}
	v.moveTree(from.path, to.path, exchange)
	v.mu.Lock()
	v.renamed = true
	v.moveCwds(from.path, to.path, exchange)
	v.mu.Unlock()
	return okReply, nil
}

// link is link and linkat. A shared file is copied up first, so that writes through either name
// stay in the view; both names then share the private copy.
func (v *View) link(t tracee, o op) (reply, error) {
	if o.flags&^uint64(unix.AT_SYMLINK_FOLLOW|unix.AT_EMPTY_PATH) != 0 {
		return reply{}, unix.EINVAL
	}
	if o.pathErr != nil {
		return reply{}, o.pathErr
	}
	// The old name is either the view path of an object in the tree (fromPath) or the supervisor's
	// own descriptor of the object (obj): the view's own, or one outside the trees.
	var fromPath string
	var oldInTree, oldDir bool
	obj := -1
	defer func() {
		if obj >= 0 {
			unix.Close(obj)
		}
	}()
	if o.unsafePath == "" && o.flags&unix.AT_EMPTY_PATH != 0 {
		// linkat(fd, "", ..., AT_EMPTY_PATH): typically an O_TMPFILE file given a name.
		var err error
		if obj, _, err = t.taskObject(o.dirfd); err != nil {
			return reply{}, err
		}
		p, pl, err := v.placeOf(obj)
		if err != nil {
			return reply{}, err
		}
		oldInTree = pl != placeOutside
		var st unix.Stat_t
		if err := unix.Fstat(obj, &st); err != nil {
			return reply{}, err
		}
		oldDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
		if pl == placeTree {
			fromPath = p
		}
	} else {
		from, _, err := v.lookup(t, o, o.flags&unix.AT_SYMLINK_FOLLOW != 0) // not AT_EMPTY_PATH's form
		if err != nil {
			return reply{}, err
		}
		oldInTree, oldDir = from.inTree, from.mode == unix.S_IFDIR
		if from.inTree {
			fromPath = from.path
		} else if !oldDir {
			c, err := t.status()
			if err != nil {
				return reply{}, err
			}
			if err := asCaller(c, func() (err error) {
				obj, err = openHost(from.host, unix.O_PATH, 0)
				return err
			}); err != nil {
				return reply{}, err
			}
		}
	}
	to, err := v.lookupName(t, o.second())
	switch {
	case err != nil:
		return reply{}, err
	case to.exists() || to.dot():
		return reply{}, unix.EEXIST
	case to.kind == resDeadDir, to.trailingSlash:
		return reply{}, unix.ENOENT
	case oldInTree != to.inTree:
		return reply{}, unix.EXDEV
	case oldDir && to.inTree && fromPath != "":
		// vfs_link refuses a directory after may_linkat and may_create.
		l, _, err := v.locate(fromPath)
		if err == nil {
			err = v.mayLinkPath(t, l.host)
		}
		if err == nil {
			err = v.mayCreate(t, pathDir(to.path))
		}
		if err != nil {
			return reply{}, err
		}
		return reply{}, unix.EPERM
	case oldDir:
		return reply{}, unix.EPERM
	}
	if fromPath != "" {
		l, st, err := v.locate(fromPath)
		if err != nil {
			return reply{}, err
		}
		if err := v.mayLinkPath(t, l.host); err != nil {
			return reply{}, err
		}
		if (l.ent == nil || !l.ent.own) && st.Mode&unix.S_IFMT == unix.S_IFREG {
			// A shared file: the new name stands for it too, nothing is copied (see linkShared).
			if err := v.mayCreate(t, pathDir(to.path)); err != nil {
				return reply{}, err
			}
			return okReply, v.linkShared(l.host, to.path)
		}
		// Anything else shared is copied up first, and both names share the copy.
		if err := v.copyUpObj(fromPath, false); err != nil {
			return reply{}, err
		}
		if obj, err = long.Open(v.upperPath(fromPath), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			return reply{}, err
		}
	}
	// Through the magic link of the supervisor's descriptor, to the object itself.
	if !to.inTree {
		return okReply, atHost(t, to.path, func(dirfd int, name string) error {
			return long.Linkat(unix.AT_FDCWD, fdPath(obj), dirfd, name, unix.AT_SYMLINK_FOLLOW)
		})
	}
	if err := v.mayCreate(t, pathDir(to.path)); err != nil {
		return reply{}, err
	}
	if err := v.addable(pathDir(to.path)); err != nil {
		return reply{}, err
	}
	if err := long.Linkat(unix.AT_FDCWD, fdPath(obj), unix.AT_FDCWD, v.upperPath(to.path), unix.AT_SYMLINK_FOLLOW); err != nil {
		return reply{}, err
	}
	v.setEntry(to.path, &entry{kind: entryObj, own: true})
	return okReply, nil
}
