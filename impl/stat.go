package impl

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// stat is stat, lstat, newfstatat and statx.
func (v *View) stat(t tracee, o op) (reply, error) {
	r, pass, err := v.lookupRead(t, o, o.flags&unix.AT_SYMLINK_NOFOLLOW == 0)
	removedCwd := false
	if err == unix.ENOENT && o.unsafePath == "" && o.flags&unix.AT_EMPTY_PATH != 0 && o.dirfd == unix.AT_FDCWD {
		// The view removed the working directory, which the kernel still stats, with no links.
		if _, cerr := v.cwdOf(t); cerr == unix.ENOENT {
			r, pass, removedCwd, err = resolved{host: t.procPath("cwd") + "/."}, false, true, nil
		}
	}
	if err != nil {
		return reply{}, err
	}
	if pass {
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
	}
	return okReply, t.writeStruct(o.buf, unsafe.Pointer(&st), int(unsafe.Sizeof(st)))
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
