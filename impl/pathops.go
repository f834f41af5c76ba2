package impl

import (
	"encoding/binary"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// do answers one decoded syscall in view v.
func (v *View) do(t tracee, o op) (reply, error) {
	switch o.kind {
	case opOpen:
		return v.open(t, o)
	case opStat, opStatx:
		return v.stat(t, o)
	case opAccess:
		return v.access(t, o)
	case opReadlink:
		return v.readlink(t, o)
	case opChdir:
		return v.chdir(t, o)
	case opFchdir:
		var st unix.Stat_t
		if err := long.Stat(t.procPath("fd/"+strconv.Itoa(o.fd)), &st); err != nil {
			return reply{}, unix.EBADF
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return reply{}, unix.ENOTDIR
		}
		v.clearCwd(t)
		return reply{kind: replyContinue}, nil
	case opGetcwd:
		return v.getcwd(t, o)
	case opMkdir, opMknod, opSymlink:
		return v.mknode(t, o)
	case opUnlink:
		return v.unlink(t, o)
	case opRename:
		return v.rename(t, o)
	case opLink:
		return v.link(t, o)
	case opChmod, opChown, opTruncate, opUtimens, opSetxattr, opRemovexattr:
		return v.setattr(t, o)
	case opGetxattr, opListxattr:
		return v.getxattr(t, o)
	case opExec:
		return v.exec(t, o)
	case opStatfs:
		return v.statfs(t, o)
	case opInotify:
		return v.inotify(t, o)
	case opSockaddr:
		return v.sockaddr(t, o)
	case opIoctl:
		return v.ioctl(t, o)
	}
	return reply{}, unix.ENOSYS
}

var okReply = reply{kind: replyVal}

// lookup resolves o's path for a call that acts on an existing object. follow says whether a final
// symlink is followed. An empty path with AT_EMPTY_PATH names the dirfd itself: emptyFD is then
// true and nothing is resolved.
func (v *View) lookup(t tracee, o op, follow bool) (r resolved, emptyFD bool, err error) {
	if o.pathErr != nil {
		return r, false, o.pathErr
	}
	if o.unsafePath == "" && o.flags&unix.AT_EMPTY_PATH != 0 {
		if p, ok := v.fdProxy(t, o.dirfd); ok { // an O_PATH proxy names the object it stands for
			r, err = v.resolve(t, unix.AT_FDCWD, p, resolveOpts{named: true})
			return r, false, err
		}
		if o.dirfd == unix.AT_FDCWD { // the working directory, which is not a descriptor: the view's
			r, err = v.resolve(t, unix.AT_FDCWD, ".", resolveOpts{followFinal: true, named: true})
			return r, false, err
		}
		return r, true, nil
	}
	r, err = v.resolve(t, o.dirfd, o.unsafePath, resolveOpts{followFinal: follow})
	if err == nil && !r.exists() {
		err = unix.ENOENT
	}
	return r, false, err
}

// lookupRead is the shared prologue of the read-only path handlers (access, statfs, getxattr,
// stat), as os.Root's doInRoot is of its operations: it resolves o's path as lookup does, and pass
// says that the kernel may answer the call itself: an empty path names the dirfd (emptyFD), or the
// view leaves r to it (passThrough). readlink, which must see that r is a symlink first, uses
// lookup and passThrough itself.
func (v *View) lookupRead(t tracee, o op, follow bool) (r resolved, pass bool, err error) {
	r, emptyFD, err := v.lookup(t, o, follow)
	if err != nil {
		return r, false, err
	}
	return r, emptyFD || v.passThrough(r), nil
}

// lookupName is the shared prologue of the path handlers that make or remove a name (mknode,
// unlink, and link's new name through o.second()): it resolves o's path for a call on the name
// itself, which need not exist yet, after failing with the reason the path could not be read.
func (v *View) lookupName(t tracee, o op) (resolved, error) {
	if o.pathErr != nil {
		return resolved{}, o.pathErr
	}
	return v.resolve(t, o.dirfd, o.unsafePath, resolveOpts{creat: true})
}

// lookupNames is lookupName for rename's two names. Both parents are walked before either final
// name is looked up: a final name longer than NAME_MAX does not fail the walk (deferLong), and
// rename checks it among the others, in do_renameat2's order.
func (v *View) lookupNames(t tracee, o op) (from, to resolved, err error) {
	opts := resolveOpts{creat: true, deferLong: true}
	if o.pathErr != nil {
		return from, to, o.pathErr
	}
	if from, err = v.resolve(t, o.dirfd, o.unsafePath, opts); err != nil {
		return from, to, err
	}
	o = o.second()
	if o.pathErr != nil {
		return from, to, o.pathErr
	}
	to, err = v.resolve(t, o.dirfd, o.unsafePath, opts)
	return from, to, err
}

// passThrough reports that a call that only looks at r may be left to the kernel: r is pure, and
// the policy is fast (fast) or r is outside the trees; or r is an object the caller holds that the
// view has no path for (a memfd, a pipe, a deleted file through /proc/PID/fd/N), which the kernel
// finds through the caller's own descriptor, whatever the view.
func (v *View) passThrough(r resolved) bool {
	return v.fast(r) || !r.inTree && r.pure || r.kind == resFDObject
}

// fast reports that a read-only call on r may be left to the kernel.
func (v *View) fast(r resolved) bool {
	return v.ns.policy == PolicyFast && r.pure && r.kind != resFDObject
}

func pathDir(p string) string { return path.Dir(p) }

// owner is what a new object is given: its owner, group and permission bits.
type owner struct {
	uid, gid int
	perm     uint32
}

// newOwner is the owner the kernel gives a new object of type typ (S_IFREG, S_IFDIR, ...) that
// caller c makes with mode (the call's argument; its type bits are ignored) in a directory whose
// stat is dir and whose default ACL is acl, nil for none (inode_init_owner and, since 6.0,
// vfs_prepare_mode; docs/kernel.md, "New objects' owner and mode"). The owner is c's fsuid; the
// group is the directory's when it is set-group-ID, else c's fsgid; a new directory there is
// set-group-ID too. A non-directory asked for with S_ISGID and group execute loses S_ISGID when c
// is neither in its group nor holds CAP_FSETID (mode_strip_sgid, checked before the umask). The
// permission bits are those of mode that the default ACL grants or, without one, that the umask
// leaves (posix_acl_create). mkdir keeps only the permission bits and S_ISVTX.
func newOwner(c creds, dir *unix.Stat_t, acl []byte, typ, mode uint32) owner {
	o := owner{uid: c.fsuid, gid: c.fsgid}
	sgidDir := dir.Mode&unix.S_ISGID != 0
	if sgidDir {
		o.gid = int(dir.Gid)
	}
	mode &= 07777
	if typ != unix.S_IFDIR && mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP &&
		!c.inGroup(uint32(o.gid)) && !c.capable(unix.CAP_FSETID) {
		mode &^= unix.S_ISGID
	}
	if keep, ok := aclCreatePerm(acl); ok {
		mode &= keep | ^uint32(0o777)
	} else {
		mode &^= c.umask
	}
	if typ == unix.S_IFDIR {
		mode &= 01777
		if sgidDir {
			mode |= unix.S_ISGID
		}
	}
	o.perm = mode
	return o
}

// The tags of a POSIX ACL's entries in its xattr (uapi linux/posix_acl.h).
const (
	aclUserObj  = 0x01
	aclGroupObj = 0x04
	aclMask     = 0x10
	aclOther    = 0x20
)

// aclCreatePerm returns the permission bits a new object keeps of its mode in a directory whose
// default ACL, in its xattr form, is acl: the owner's of the ACL's owner entry, the group's of its
// mask entry or, without one, of its group entry, and the others' of its other entry
// (posix_acl_create_masq). It reports false for no ACL (nil) or one it cannot read.
func aclCreatePerm(acl []byte) (uint32, bool) {
	const header, entry = 4, 8 // a version; tag, perm (16 bits each) and id (32) per entry
	if len(acl) < header || (len(acl)-header)%entry != 0 || binary.LittleEndian.Uint32(acl) != 2 {
		return 0, false
	}
	var user, group, mask, other uint32
	hasMask := false
	for e := acl[header:]; len(e) > 0; e = e[entry:] {
		perm := uint32(binary.LittleEndian.Uint16(e[2:])) & 7
		switch binary.LittleEndian.Uint16(e) {
		case aclUserObj:
			user = perm
		case aclGroupObj:
			group = perm
		case aclMask:
			mask, hasMask = perm, true
		case aclOther:
			other = perm
		}
	}
	if hasMask {
		group = mask
	}
	return user<<6 | group<<3 | other, true
}

// defaultACL returns the default ACL of the directory at host path dir in its xattr form, nil when
// it has none or its file system keeps none. dir's last name is not followed: a directory the
// supervisor holds is read as fdPath(fd)+"/.".
func defaultACL(dir string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := long.Lgetxattr(dir, "system.posix_acl_default", buf)
		switch err {
		case nil:
			return buf[:n], nil
		case unix.ENODATA, unix.EOPNOTSUPP:
			return nil, nil
		case unix.ERANGE:
			buf = make([]byte, 2*len(buf))
			continue
		}
		return nil, err
	}
}

// hostDefaultACL is defaultACL of the host directory that holds host path p (p itself for an
// O_TMPFILE file), opened as openHost opens, so that no symlink put on the way since leads
// elsewhere.
func hostDefaultACL(p string, tmpfile bool) ([]byte, error) {
	dir := p
	if !tmpfile {
		dir = path.Dir(p)
	}
	dirfd, err := openHost(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	return defaultACL(fdPath(dirfd) + "/.")
}

// give gives the new object behind the supervisor's descriptor fd (which may be O_PATH) owner o.
// The owner comes first: a chown drops S_ISUID and S_ISGID from a group-executable
// non-directory, also root's (chown_common), and the mode then sets them. A chown the supervisor
// may not make (EPERM: it is not root) leaves the supervisor the owner. A symlink's mode is
// always 0777 and is not set.
func (o owner) give(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Uid != uint32(o.uid) || st.Gid != uint32(o.gid) {
		if err := unix.Fchownat(fd, "", o.uid, o.gid, unix.AT_EMPTY_PATH); err != nil && err != unix.EPERM {
			return err
		}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil
	}
	return long.Fchmodat(unix.AT_FDCWD, fdPath(fd), o.perm, 0)
}

func (v *View) isTreeRoot(p string) bool { return v.ns.isTreeRoot(p) }

func (ns *namespace) isTreeRoot(p string) bool {
	for _, d := range ns.trees {
		if p == d {
			return true
		}
	}
	return false
}

// place is where an object the task holds a descriptor of lies for a view.
type place uint8

const (
	placeOutside place = iota // outside the trees, or no file-system object (pipe, socket...)
	placeOwn                  // the view's own: in its private layer
	placeTree                 // a shared object in a tree, at the view path placeOf returns
	// placeDetached: a shared object in a tree that no view path stands for any more: the view
	// removed it, or put another object at its name, while the task held it. placeOf returns its
	// host path. Nothing may change it, and the view has no copy of it to change instead.
	placeDetached
)

// placeOf says where the object behind the supervisor's own descriptor obj lies, and its view path
// when it has one. The name comes from the supervisor's descriptor, which no task can change; a
// name that no longer leads to the object (the host moved it) fails with EAGAIN rather than be
// trusted, and so does a shared object whose name the host removed while another remains.
func (v *View) placeOf(obj int) (string, place, error) {
	target, err := readlink(fdPath(obj))
	if err == unix.ENAMETOOLONG {
		target, err = v.deepOwnFile(obj)
	}
	if err != nil {
		return "", 0, err
	}
	p, ok, err := v.proxyOf(target, func(st *unix.Stat_t) error { return unix.Fstat(obj, st) })
	if err != nil {
		return "", 0, err
	}
	if ok { // an O_PATH proxy stands for a symlink of the view
		return p, placeTree, nil
	}
	if !strings.HasPrefix(target, "/") {
		return "", placeOutside, nil
	}
	h, deleted := strings.CutSuffix(target, " (deleted)")
	if p, ok := v.viewPathOf(h); ok {
		return p, placeOwn, nil
	}
	if v.ns.hidden(h) {
		return "", 0, unix.EPERM
	}
	var st, at unix.Stat_t
	if err := unix.Fstat(obj, &st); err != nil {
		return "", 0, err
	}
	if deleted {
		if st.Nlink == 0 {
			return "", placeOutside, nil // no name anywhere: nothing shared can change
		}
		return "", 0, unix.EAGAIN
	}
	if err := long.Lstat(h, &at); err != nil || at.Dev != st.Dev || at.Ino != st.Ino {
		return "", 0, unix.EAGAIN
	}
	p = v.viewOfLower(h)
	if v.ns.inTree(p) {
		if p, ok := v.sharedAt(h, p); ok {
			return p, placeTree, nil
		}
		return h, placeDetached, nil
	}
	return p, placeOutside, nil
}

// deepOwnFile returns the private layer's path of the file behind the supervisor's descriptor obj
// whose path is longer than the kernel writes out for a magic link (readlink, ENAMETOOLONG), and
// that no ".." leads up from (not a directory: longDirPath): it looks for it among the view's own
// files whose paths are that long, by device and inode. ENAMETOOLONG for anything else (a shared
// file that deep).
func (v *View) deepOwnFile(obj int) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(obj, &st); err != nil {
		return "", err
	}
	var deep []string
	v.mu.Lock()
	for p := range v.entries {
		if len(v.upper)+len(p) >= maxPath-len(" (deleted)") {
			deep = append(deep, p)
		}
	}
	v.mu.Unlock()
	for _, p := range deep {
		var at unix.Stat_t
		if long.Lstat(v.upperPath(p), &at) == nil && at.Dev == st.Dev && at.Ino == st.Ino {
			return v.upperPath(p), nil
		}
	}
	return "", unix.ENAMETOOLONG
}
