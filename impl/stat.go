package impl

import (
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stat is stat, lstat, newfstatat and statx. It resolves with lookup rather than lookupRead: the
// stat of a descriptor (an empty path, emptyFD) has a view of its own (fstat).
func (v *View) stat(t tracee, o op) (reply, error) {
	r, emptyFD, err := v.lookup(t, o, o.flags&unix.AT_SYMLINK_NOFOLLOW == 0)
	removedCwd := false
	if err == unix.ENOENT && o.unsafePath == "" && o.flags&unix.AT_EMPTY_PATH != 0 && o.dirfd == unix.AT_FDCWD {
		// The view removed the working directory, which the kernel still stats, with no links.
		if _, cerr := v.cwdOf(t); cerr == unix.ENOENT {
			r, removedCwd, err = resolved{host: t.procPath("cwd") + "/."}, true, nil
		}
	}
	if err != nil {
		return reply{}, err
	}
	if emptyFD {
		return v.fstat(t, o)
	}
	if !removedCwd && v.passThrough(r) {
		return reply{kind: replyContinue}, nil
	}
	host := r.host
	// A shared object outside the trees is looked at as the caller, who needs search permission on
	// the way to it; in the trees, the walk checked the view's way (resolve).
	as := func(fn func() error) error { return fn() }
	if !r.inTree && !r.own && r.kind != resGone && !removedCwd && !v.ns.hidden(host) {
		c, err := t.status()
		if err != nil {
			return reply{}, err
		}
		as = func(fn func() error) error { return asCaller(c, fn) }
	}
	if o.kind == opStatx {
		var stx unix.Statx_t
		flags := int(o.flags)&(statxSyncType) | unix.AT_SYMLINK_NOFOLLOW
		if err := as(func() error { return long.Statx(unix.AT_FDCWD, host, flags, int(o.mask), &stx) }); err != nil {
			return reply{}, err
		}
		if removedCwd {
			stx.Nlink = 0
		}
		if !r.own {
			stx.Nlink = uint32(v.nlink(host, uint64(stx.Nlink)))
		} else {
			stx.Nlink = uint32(v.linkCount(unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino, uint64(stx.Nlink)))
		}
		if dev, ino, ok := v.identity(r.ent, r.host, r.mode); ok {
			stx.Dev_major, stx.Dev_minor, stx.Ino = unix.Major(dev), unix.Minor(dev), ino
		}
		if r.own {
			sharedOwner(r.ent, &stx.Uid, &stx.Gid)
		}
		return okReply, t.writeStruct(o.buf, unsafe.Pointer(&stx), int(unsafe.Sizeof(stx)))
	}
	var st unix.Stat_t
	if err := as(func() error { return long.Lstat(host, &st) }); err != nil {
		return reply{}, err
	}
	if removedCwd {
		st.Nlink = 0
	}
	if !r.own {
		st.Nlink = v.nlink(host, st.Nlink)
	} else {
		st.Nlink = v.linkCount(st.Dev, st.Ino, st.Nlink)
	}
	if dev, ino, ok := v.identity(r.ent, r.host, r.mode); ok {
		st.Dev, st.Ino = dev, ino
	}
	if r.own {
		sharedOwner(r.ent, &st.Uid, &st.Gid)
	}
	return okReply, t.writeStruct(o.buf, unsafe.Pointer(&st), int(unsafe.Sizeof(st)))
}

// fstat is stat of a descriptor (fstat, and an empty path with AT_EMPTY_PATH, which glibc's
// fstat is), left to the kernel unless the descriptor is of a copy that identity gives the shared
// object's identity: a task must see the same object whether it stats it by name or by
// descriptor (fts, in du, rm -r, chmod -R and find, compares the two on its way back up a tree;
// vim, the file it reads by name with the one it opens to write).
func (v *View) fstat(t tracee, o op) (reply, error) {
	if !v.copyFDs.Load() || o.dirfd < 0 {
		return reply{kind: replyContinue}, nil
	}
	// One readlink tells the view's own objects from the rest, which the kernel answers for.
	target, err := readlink(t.procPath("fd/" + strconv.Itoa(o.dirfd)))
	if err != nil {
		return reply{kind: replyContinue}, nil // not a descriptor, deep, or gone: the kernel says
	}
	p, ok := v.viewPathOf(target)
	if !ok {
		return reply{kind: replyContinue}, nil
	}
	v.mu.Lock()
	e := v.entries[p]
	v.mu.Unlock()
	if !e.copiedShared() {
		return reply{kind: replyContinue}, nil
	}
	// The object itself, which no other thread can swap now; if one swapped the number since
	// the readlink, the kernel answers for what is there now.
	obj, _, err := t.taskObject(o.dirfd)
	if err != nil {
		return reply{}, err
	}
	defer unix.Close(obj)
	if now, err := readlink(fdPath(obj)); err != nil || now != target {
		return reply{kind: replyContinue}, nil
	}
	if o.kind == opStatx {
		var stx unix.Statx_t
		flags := int(o.flags)&statxSyncType | unix.AT_EMPTY_PATH
		if err := unix.Statx(obj, "", flags, int(o.mask)|unix.STATX_TYPE, &stx); err != nil {
			return reply{}, err
		}
		dev, ino, ok := v.identity(e, target, uint32(stx.Mode)&unix.S_IFMT)
		if !ok {
			return reply{kind: replyContinue}, nil
		}
		stx.Nlink = uint32(v.linkCount(unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino, uint64(stx.Nlink)))
		stx.Dev_major, stx.Dev_minor, stx.Ino = unix.Major(dev), unix.Minor(dev), ino
		sharedOwner(e, &stx.Uid, &stx.Gid)
		return okReply, t.writeStruct(o.buf, unsafe.Pointer(&stx), int(unsafe.Sizeof(stx)))
	}
	var st unix.Stat_t
	if err := unix.Fstat(obj, &st); err != nil {
		return reply{}, err
	}
	dev, ino, ok := v.identity(e, target, st.Mode&unix.S_IFMT)
	if !ok {
		return reply{kind: replyContinue}, nil
	}
	st.Nlink = v.linkCount(st.Dev, st.Ino, st.Nlink)
	st.Dev, st.Ino = dev, ino
	sharedOwner(e, &st.Uid, &st.Gid)
	return okReply, t.writeStruct(o.buf, unsafe.Pointer(&st), int(unsafe.Sizeof(st)))
}

// copiedShared reports whether e stands for a shared object the view copied: a shared directory
// it copied (to add to it, change it or rename it), or a shared file, symlink or node it copied up
// (to write or change it; a view-made link of a shared file shares the copy). Its upper object
// speaks for it once it is the view's own; before, the shared object itself.
func (e *entry) copiedShared() bool {
	return e != nil && e.lower != "" && (e.kind == entryDir || e.own)
}

// identity is the device and inode number that stat reports for the view's object at host path
// host, of type mode, whose entry is e, when it is the copy of a shared object: the shared
// object's, as before the copy, so that an object keeps its identity while a program works on it
// (vim, writing a file in place, checks that the file it opened is the one it read; tar x checks,
// before it sets a directory's times, that it is the one it extracted into). overlayfs keeps a
// copied-up object's inode number for the same reasons. ok is false for anything else, and where
// the shared object is gone or another kind of object now (the copy's own then).
func (v *View) identity(e *entry, host string, mode uint32) (dev, ino uint64, ok bool) {
	if !e.copiedShared() || host == e.lower {
		return 0, 0, false // not a copy, or stat'ed at the shared object already
	}
	var st unix.Stat_t
	if err := long.Lstat(e.lower, &st); err != nil || st.Mode&unix.S_IFMT != mode {
		return 0, 0, false
	}
	return st.Dev, st.Ino, true
}

// access is access, faccessat and faccessat2.
func (v *View) access(t tracee, o op) (reply, error) {
	if o.flags&^uint64(unix.AT_EACCESS|unix.AT_SYMLINK_NOFOLLOW|unix.AT_EMPTY_PATH) != 0 || o.mask&^7 != 0 {
		return reply{}, unix.EINVAL
	}
	r, pass, err := v.lookupRead(t, o, o.flags&unix.AT_SYMLINK_NOFOLLOW == 0)
	if err != nil {
		return reply{}, err
	}
	if pass {
		return reply{kind: replyContinue}, nil
	}
	// As the caller: the kernel checks the caller's rights on the view's object (a private copy has
	// the shared one's mode and owner), and, for a shared object, on the directories above it. A
	// tree on a read-only mount is writable in the view: a write copies the file up.
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	if r.own || r.kind == resGone || v.ns.hidden(r.host) || r.inTree {
		// The private layer is not the caller's to walk, nor are the shared tree's directories
		// above an object the view reaches by another way: the walk checked the view's (resolve).
		return okReply, hostMay(c, r.host, o.mask)
	}
	err = asCaller(c, func() error {
		return long.Faccessat2(unix.AT_FDCWD, r.host, o.mask, unix.AT_EACCESS|unix.AT_SYMLINK_NOFOLLOW)
	})
	if err == unix.EROFS && r.inTree {
		err = nil
	}
	return okReply, err
}

// readlink is readlink and readlinkat. A magic link of /proc reads as the view path of its
// target, so that no private-layer path leaks.
func (v *View) readlink(t tracee, o op) (reply, error) {
	if int64(o.size) <= 0 {
		return reply{}, unix.EINVAL
	}
	r, emptyFD, err := v.lookup(t, o, false)
	if err != nil {
		return reply{}, err
	}
	if emptyFD {
		return reply{kind: replyContinue}, nil
	}
	if r.mode != unix.S_IFLNK {
		return reply{}, unix.EINVAL
	}
	magic := magicLink.MatchString(r.path)
	if !magic && v.passThrough(r) {
		return reply{kind: replyContinue}, nil
	}
	target, err := readlink(r.host)
	if err != nil {
		return reply{}, err
	}
	if magic {
		if p, ok := v.viewPathOf(target); ok {
			target = p
		} else if v.ns.hidden(target) {
			return reply{}, unix.ENOENT
		}
	}
	b := []byte(target)
	if uint64(len(b)) > o.size {
		b = b[:o.size]
	}
	if err := t.write(o.buf, b); err != nil {
		return reply{}, err
	}
	return reply{kind: replyVal, val: int64(len(b))}, nil
}

// statfs reports the file system that holds the object in the view.
func (v *View) statfs(t tracee, o op) (reply, error) {
	r, pass, err := v.lookupRead(t, o, true)
	if err != nil {
		return reply{}, err
	}
	if pass {
		return reply{kind: replyContinue}, nil
	}
	var st unix.Statfs_t
	if err := long.Statfs(r.host, &st); err != nil {
		return reply{}, err
	}
	return okReply, t.writeStruct(o.buf, unsafe.Pointer(&st), int(unsafe.Sizeof(st)))
}

// inotify adds a watch on the object the view shows, to the caller's own inotify instance.
func (v *View) inotify(t tracee, o op) (reply, error) {
	r, _, err := v.lookup(t, o, o.mask&unix.IN_DONT_FOLLOW == 0)
	if err != nil {
		return reply{}, err
	}
	if r.pure {
		return reply{kind: replyContinue}, nil
	}
	fd, err := t.getfd(o.fd)
	if err != nil {
		return reply{}, err
	}
	defer unix.Close(fd)
	wd, err := unix.InotifyAddWatch(fd, r.host, o.mask|unix.IN_DONT_FOLLOW)
	if err != nil {
		return reply{}, err
	}
	return reply{kind: replyVal, val: int64(wd)}, nil
}

// statxSyncType is AT_STATX_SYNC_TYPE, which x/sys/unix does not name.
const statxSyncType = 0x6000
