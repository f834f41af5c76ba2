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
	// mkdir ignores the type bits of its mode.
	var typ uint32
	if o.kind == opMknod {
		switch typ = o.mode & unix.S_IFMT; typ {
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
	if err := mknodeLayer(c, v.upperPath(r.path), o, typ); err != nil {
		return reply{}, err
	}
	e := &entry{kind: entryObj, own: true}
	if o.kind == opMkdir {
		e = &entry{kind: entryDir, own: true, listing: listMaterialized}
	}
	v.setEntry(r.path, e)
	return okReply, nil
}

// mknodeLayer makes o's new object at host path host in the private layer, as the supervisor, and
// gives it the owner, group and mode the kernel would have given caller c (newOwner). A failure
// leaves nothing behind.
func mknodeLayer(c creds, host string, o op, typ uint32) error {
	var err error
	switch o.kind {
	case opMkdir:
		err = long.Mkdir(host, 0o700)
	case opMknod:
		err = long.Mknod(host, typ|0o600, int(o.dev))
	case opSymlink:
		err = long.Symlink(o.target, host)
	}
	if err != nil {
		return err
	}
	var dir unix.Stat_t
	var acl []byte
	err = long.Lstat(path.Dir(host), &dir)
	if err == nil {
		acl, err = defaultACL(path.Dir(host))
	}
	if err == nil {
		var fd int
		if fd, err = long.Open(host, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
			err = newOwner(c, &dir, acl, nodeType(o, typ), o.mode).give(fd)
			unix.Close(fd)
		}
	}
	if err != nil {
		if o.kind == opMkdir {
			long.Rmdir(host)
		} else {
			long.Unlink(host)
		}
	}
	return err
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
	acl, err := defaultACL(fdPath(dirfd) + "/.")
	if err != nil {
		return err
	}
	own := newOwner(c, &dir, acl, nodeType(o, typ), o.mode)
	if own.perm&unix.S_ISGID != 0 && st.Mode&unix.S_IFMT == unix.S_IFDIR &&
		st.Gid == uint32(own.gid) && !c.capable(unix.CAP_FSETID) {
		// A new directory in a set-group-ID directory, which the kernel made set-group-ID too: the
		// caller's own chmod would drop that bit when it is not in the directory's group. The
		// chmod gets CAP_FSETID, which keeps it and nothing more: the caller must still own the
		// directory, which is one of the parent's group.
		base := c.capEff & selfIDs().capPrm
		if setEffectiveCaps(base|1<<unix.CAP_FSETID) == nil {
			defer setEffectiveCaps(base)
		}
	}
	return own.give(fd)
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
		// changes nothing.
		if err := v.emptyDir(r); err != nil {
			return reply{}, err
		}
	}
	if err := v.prepareRemove(r.path); err != nil {
		return reply{}, err
	}
	if rmdir {
		return okReply, v.removeDir(r)
	}
	if err := long.Unlink(v.upperPath(r.path)); err != nil {
		return reply{}, err
	}
	v.noteRemoved(r.path)
	v.dropTree(r.path)
	return okReply, nil
}

// emptyDir fails with ENOTEMPTY unless the view's directory r lists nothing. The listing is the
// upper directory's when the view owns it, else the shared directory's.
func (v *View) emptyDir(r resolved) error {
	names, err := readDirNames(r.host)
	if err != nil {
		return err
	}
	for _, n := range names {
		if !v.ns.hidden(path.Join(r.path, n)) {
			return unix.ENOTEMPTY
		}
	}
	return nil
}

// removeDir removes the view's empty directory r, whose parent prepareRemove made ready, and keeps
// what a task that still holds it will see of it (see ghost).
func (v *View) removeDir(r resolved) error {
	var st unix.Stat_t
	if err := long.Lstat(r.host, &st); err != nil {
		return err
	}
	// A mirrored directory's upper directory holds only copies of shared children, and the
	// shared directory is empty: whatever is left there is not in the view.
	up := v.upperPath(r.path)
	if r.ent != nil && r.ent.listing != listMaterialized {
		if err := os.RemoveAll(up); err != nil {
			return err
		}
	} else if err := long.Rmdir(up); err != nil {
		return err
	}
	v.noteRemoved(r.path)
	v.dropTree(r.path)
	lower := r.host
	if r.ent != nil {
		lower = r.ent.lower
	}
	v.removedDir(r.path, lower, &st)
	return nil
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
	if err := renameNamesErr(from, to, o.flags); err != nil {
		return reply{}, err
	}
	exchange := o.flags&unix.RENAME_EXCHANGE != 0
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
	replaced, err := v.prepareRename(from, to, exchange)
	if err != nil {
		return reply{}, err
	}
	if err := long.Renameat2(unix.AT_FDCWD, v.upperPath(from.path), unix.AT_FDCWD, v.upperPath(to.path), uint(o.flags)); err != nil {
		return reply{}, err
	}
	v.noteRenamed(from, to, exchange, replaced)
	return okReply, nil
}

// noteRenamed records in the view what the kernel's rename of from to to in the private layer did:
// a replaced object is deleted (replaced: a directory, as prepareRename saw it), and the entries
// and working directories under from move to to (or, exchange, trade places).
func (v *View) noteRenamed(from, to resolved, exchange bool, replaced *unix.Stat_t) {
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
		return
	}
	if !exchange {
		v.noteRemoved(from.path)
	}
	v.moveTree(from.path, to.path, exchange)
	v.mu.Lock()
	v.renamed = true
	v.moveCwds(from.path, to.path, exchange)
	v.mu.Unlock()
}

// linkFrom is the object link gives another name: the view path of an object in the tree (path),
// or else the supervisor's own descriptor of it (obj; -1 with path): the view's own, or one outside
// the trees. inTree says it is the view's, dir that it is a directory.
type linkFrom struct {
	path        string
	obj         int
	inTree, dir bool
	// detached: obj is a shared file the view removed (placeDetached), which has no name left.
	detached bool
}

// linkSource finds the object link's old name names: the task's descriptor with AT_EMPTY_PATH,
// typically an O_TMPFILE file given a name, else o's path. The caller closes obj.
func (v *View) linkSource(t tracee, o op) (s linkFrom, err error) {
	s.obj = -1
	if o.unsafePath != "" || o.flags&unix.AT_EMPTY_PATH == 0 {
		from, _, err := v.lookup(t, o, o.flags&unix.AT_SYMLINK_FOLLOW != 0) // not AT_EMPTY_PATH's form
		if err != nil {
			return s, err
		}
		if from.kind == resFDObject {
			// linkat("/proc/self/fd/N", ..., AT_SYMLINK_FOLLOW): the other way to name an
			// O_TMPFILE file.
			c, err := t.status()
			if err != nil {
				return s, err
			}
			obj, err := v.fdObject(t, c, from.path)
			if err != nil {
				return s, err
			}
			return v.linkObject(obj)
		}
		s.inTree, s.dir = from.inTree, from.mode == unix.S_IFDIR
		if from.inTree {
			s.path = from.path
		} else if !s.dir {
			c, err := t.status()
			if err != nil {
				return s, err
			}
			err = asCaller(c, func() (err error) {
				s.obj, err = openHost(from.host, unix.O_PATH, 0)
				return err
			})
			return s, err
		}
		return s, nil
	}
	obj, _, err := t.taskObject(o.dirfd)
	if err != nil {
		return s, err
	}
	return v.linkObject(obj)
}

// linkObject is linkSource for the supervisor's descriptor obj of the object a descriptor or a
// magic link leads to, which it places (placeOf). obj is closed on an error, and when the object
// is named by its view path.
func (v *View) linkObject(obj int) (s linkFrom, err error) {
	s.obj = -1
	p, pl, err := v.placeOf(obj)
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstat(obj, &st)
	}
	if err != nil {
		unix.Close(obj)
		return s, err
	}
	s.inTree, s.dir = pl != placeOutside, st.Mode&unix.S_IFMT == unix.S_IFDIR
	s.detached = pl == placeDetached
	if pl == placeTree { // named by its view path; link opens what it needs
		unix.Close(obj)
		s.path = p
	} else {
		s.obj = obj
	}
	return s, nil
}

// linkDirErr is the error link of the view's directory at view path from to view path to fails
// with: vfs_link refuses a directory (EPERM) after may_linkat and may_create.
func (v *View) linkDirErr(t tracee, from, to string) error {
	l, _, err := v.locate(from)
	if err == nil {
		err = v.mayLinkPath(t, l.host)
	}
	if err == nil {
		err = v.mayCreate(t, pathDir(to))
	}
	if err != nil {
		return err
	}
	return unix.EPERM
}

// renameNamesErr is the error rename fails with, in do_renameat2's order, for what the walks found
// at its two names (lookupNames), before anything is looked at in the view.
func renameNamesErr(from, to resolved, flags uint64) error {
	exchange := flags&unix.RENAME_EXCHANGE != 0
	switch {
	case from.inTree != to.inTree:
		return unix.EXDEV
	case from.dot():
		return unix.EBUSY
	case to.dot() && flags&unix.RENAME_NOREPLACE != 0:
		return unix.EEXIST
	case to.dot():
		return unix.EBUSY
	case from.kind == resLongName:
		return unix.ENAMETOOLONG
	case !from.exists():
		return unix.ENOENT
	case to.kind == resLongName:
		return unix.ENAMETOOLONG
	case to.kind == resDeadDir, exchange && !to.exists():
		return unix.ENOENT
	case flags&unix.RENAME_NOREPLACE != 0 && to.exists():
		return unix.EEXIST
	case !exchange && from.mode != unix.S_IFDIR && (from.trailingSlash || to.trailingSlash):
		return unix.ENOTDIR
	case exchange && (from.mode != unix.S_IFDIR && from.trailingSlash || to.mode != unix.S_IFDIR && to.trailingSlash):
		return unix.ENOTDIR
	}
	return nil
}

// prepareRename readies the private layer for the kernel's rename of from to to, once every check
// passed: both names' directories list what the kernel needs, and a directory the rename replaces
// is in its upper directory, complete. It returns what a task that holds that directory will see
// of it once it is removed (see ghost), or nil.
func (v *View) prepareRename(from, to resolved, exchange bool) (*unix.Stat_t, error) {
	if exchange || from.path == to.path || to.exists() { // a shared name may be replaced: complete listings
		if err := v.materialize(pathDir(from.path)); err != nil {
			return nil, err
		}
		if err := v.materialize(pathDir(to.path)); err != nil {
			return nil, err
		}
	} else {
		if err := v.prepareRemove(from.path); err != nil {
			return nil, err
		}
		if err := v.addableDir(pathDir(to.path)); err != nil {
			return nil, err
		}
	}
	if !to.exists() || to.mode != unix.S_IFDIR || exchange || from.path == to.path {
		return nil, nil
	}
	// The kernel checks that a replaced directory is empty: its upper directory must list it.
	if err := v.materialize(to.path); err != nil {
		return nil, err
	}
	replaced := new(unix.Stat_t)
	if err := long.Lstat(to.host, replaced); err != nil {
		return nil, err
	}
	return replaced, nil
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
	src, err := v.linkSource(t, o)
	if err != nil {
		return reply{}, err
	}
	fromPath, oldInTree, oldDir, obj := src.path, src.inTree, src.dir, src.obj
	defer func() {
		if obj >= 0 {
			unix.Close(obj)
		}
	}()
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
		return reply{}, v.linkDirErr(t, fromPath, to.path)
	case oldDir:
		return reply{}, unix.EPERM
	case src.detached:
		// The kernel refuses to name again a file whose last name is gone (docs/kernel.md, "A file
		// without names cannot be named again"); the view removed every name of this one.
		return reply{}, unix.ENOENT
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
