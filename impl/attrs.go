package impl

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// setattr is every call that changes an existing object's data or metadata by path or by fd:
// chmod, chown, truncate, utimensat and the others, setxattr, removexattr. In the tree the object
// is copied up (a directory materialized) and the change made to the copy.
func (v *View) setattr(t tracee, o op) (reply, error) {
	if o.kind == opTruncate && o.fd < 0 && o.length < 0 {
		return reply{}, unix.EINVAL
	}
	c, err := t.status() // the caller's credentials, for every check and action below
	if err != nil {
		return reply{}, err
	}
	at, err := v.setattrTarget(t, c, o)
	if err != nil {
		return reply{}, err
	}
	viewPath, obj := at.path, at.obj
	defer func() {
		if obj >= 0 {
			unix.Close(obj)
		}
	}()
	if err := timesErr(o); err != nil {
		return reply{}, err
	}
	if obj < 0 {
		// Fail before copying up: a failed call changes nothing, not even where the file is.
		// Flags first (notify_change, xattr_permission), but truncate's append-only refusal,
		// which comes after its permission check (vfs_truncate).
		change := attrChange(o)
		if o.kind == opTruncate {
			change = changeTouch
		}
		if err := v.flagsForbid(viewPath, change); err != nil {
			return reply{}, err
		}
		if err := v.mayChangeAttr(c, viewPath, o); err != nil {
			return reply{}, err
		}
		if o.kind == opTruncate {
			if err := v.flagsForbid(viewPath, changeAttr); err != nil {
				return reply{}, err
			}
		}
		if err := v.precheck(viewPath, o); err != nil {
			return reply{}, err
		}
		if err := v.copyUpObj(viewPath, o.kind == opTruncate && o.length == 0); err != nil {
			return reply{}, err
		}
		var err error
		if obj, err = long.Open(v.upperPath(viewPath), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			return reply{}, err
		}
	}
	if !at.outside && (at.place == placeOwn || at.place == placeDetached) { // checked above for a copy-up
		var e *entry
		if at.place == placeOwn {
			v.mu.Lock()
			e = v.entries[viewPath]
			v.mu.Unlock()
		}
		if err := maySetattr(c, obj, o, e); err != nil {
			return reply{}, err
		}
	}
	if at.place == placeDetached {
		// A shared object the view removed while the task held it: the kernel would change it,
		// and only the task's descriptor could show that, which shows the shared object anyway
		// (README, limits). Nothing is changed; the call succeeds as the kernel's would, or fails
		// as it would where the object's file system takes no such attribute (tmpfs before 6.6).
		if o.kind == opSetxattr || o.kind == opRemovexattr {
			if _, err := unix.Getxattr(fdPath(obj), o.name, nil); err == unix.EOPNOTSUPP {
				return reply{}, err
			}
		}
		return okReply, nil
	}
	// As the caller, also on the view's copy, which has the shared object's owner and group: the
	// kernel then applies what it applies to the caller, the set-group-ID bit dropped by a chmod
	// from outside the file's group and set-user-ID bits dropped by a chown among them.
	return okReply, asCaller(c, func() error { return setattrObj(obj, o) })
}

// setattrAt is the object setattr changes: either the view path of an object in the tree, which
// is copied up and changed there (obj -1), or the supervisor's own descriptor of an object outside
// the trees (outside: changed with the caller's credentials) or of the view's own, changed where
// it is. place is where a descriptor's object lies (placeOf).
type setattrAt struct {
	path    string
	obj     int
	outside bool
	place   place
}

// setattrTarget finds the object o changes, by descriptor (fchmod and the others, AT_EMPTY_PATH)
// or by path, for caller c. The caller closes obj.
func (v *View) setattrTarget(t tracee, c creds, o op) (at setattrAt, err error) {
	at.obj = -1
	defer func() {
		if err != nil && at.obj >= 0 {
			unix.Close(at.obj)
			at.obj = -1
		}
	}()
	if o.fd >= 0 || o.pathErr == nil && o.unsafePath == "" && o.flags&unix.AT_EMPTY_PATH != 0 && o.dirfd != unix.AT_FDCWD {
		fd := o.fd
		if fd < 0 {
			fd = o.dirfd
		}
		obj, shared, err := t.taskObject(fd)
		if err != nil {
			return at, err
		}
		at.obj = obj
		if o.fd >= 0 && shared {
			// fchmod, fchown, fsetxattr... refuse an O_PATH descriptor, which pidfd_getfd shares.
			if fl, err := unix.FcntlInt(uintptr(obj), unix.F_GETFL, 0); err == nil && fl&unix.O_PATH != 0 {
				return at, unix.EBADF
			}
		}
		return at, v.placeObject(&at)
	}
	r, _, err := v.lookup(t, o, o.flags&unix.AT_SYMLINK_NOFOLLOW == 0)
	if err != nil {
		return at, err
	}
	mode := r.mode
	if r.kind == resFDObject {
		// A magic link to an object without a path in the view (a memfd, a pipe, a deleted file,
		// a shared file the view removed): the kernel changes the object itself.
		if at.obj, err = v.fdObject(t, c, r.path); err != nil {
			return at, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(at.obj, &st); err != nil {
			return at, err
		}
		mode = st.Mode & unix.S_IFMT
	}
	if o.kind == opTruncate {
		switch {
		case mode == unix.S_IFDIR:
			return at, unix.EISDIR
		case mode != unix.S_IFREG:
			return at, unix.EINVAL
		}
	}
	at.path = r.path
	if r.kind == resFDObject {
		return at, v.placeObject(&at)
	}
	if r.inTree {
		return at, nil
	}
	// The host's object, opened without following anything the view did not follow
	// (docs/kernel.md, "Opening host paths without following symlinks"). A removed directory the
	// caller still holds (gone) is the supervisor's own ghost.
	if r.kind == resGone {
		at.obj, err = long.Open(r.host, unix.O_PATH|unix.O_CLOEXEC, 0)
		return at, err
	}
	at.outside = true
	err = asCaller(c, func() (err error) {
		at.obj, err = openHost(r.host, unix.O_PATH, 0)
		return err
	})
	return at, err
}

// placeObject places at.obj, the object a descriptor or a magic link leads to (placeOf): an
// object in the tree is changed by its view path (at.obj closed), any other through at.obj.
func (v *View) placeObject(at *setattrAt) (err error) {
	if at.path, at.place, err = v.placeOf(at.obj); err != nil {
		return err
	}
	at.outside = at.place == placeOutside
	if at.place == placeTree {
		unix.Close(at.obj)
		at.obj = -1
	}
	return nil
}

// setattrObj makes o's change to the object behind the supervisor's descriptor obj.
func setattrObj(obj int, o op) error {
	p := fdPath(obj)
	switch o.kind {
	case opChmod:
		if o.flags&unix.AT_SYMLINK_NOFOLLOW != 0 {
			var st unix.Stat_t
			if err := unix.Fstat(obj, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				return unix.EOPNOTSUPP
			}
		}
		return long.Fchmodat(unix.AT_FDCWD, p, o.mode&07777, 0)
	case opChown:
		return unix.Fchownat(obj, "", o.uid, o.gid, unix.AT_EMPTY_PATH)
	case opTruncate:
		if o.length < 0 {
			return unix.EINVAL
		}
		return long.Truncate(p, o.length)
	case opUtimens:
		ts := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
		if o.times != nil {
			ts = o.times[:]
		}
		return long.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0)
	case opSetxattr:
		return long.Setxattr(p, o.name, o.value, int(o.flags>>32))
	case opRemovexattr:
		return long.Removexattr(p, o.name)
	}
	return fmt.Errorf("[bug] setattr of op kind %d", o.kind)
}

// getxattr is getxattr, lgetxattr, listxattr and llistxattr.
func (v *View) getxattr(t tracee, o op) (reply, error) {
	r, pass, err := v.lookupRead(t, o, o.flags&unix.AT_SYMLINK_NOFOLLOW == 0)
	if err != nil {
		return reply{}, err
	}
	if pass {
		return reply{kind: replyContinue}, nil
	}
	size := o.size
	if size > xattrSizeMax {
		size = xattrSizeMax
	}
	buf := make([]byte, size)
	var n int
	if o.kind == opGetxattr {
		c, serr := t.status()
		if serr == nil {
			serr = mayGetxattr(c, r.host, o.name)
		}
		if serr != nil {
			return reply{}, serr
		}
		n, err = long.Lgetxattr(r.host, o.name, buf)
	} else {
		n, err = long.Llistxattr(r.host, buf)
	}
	if err != nil {
		return reply{}, err
	}
	if size > 0 {
		if err := t.write(o.buf, buf[:n]); err != nil {
			return reply{}, err
		}
	}
	return reply{kind: replyVal, val: int64(n)}, nil
}

// timesErr is utimensat's check of its times, which the kernel makes once it found the file.
func timesErr(o op) error {
	if o.kind != opUtimens || o.times == nil {
		return nil
	}
	for _, x := range o.times {
		if x.Nsec != unix.UTIME_NOW && x.Nsec != unix.UTIME_OMIT && (x.Nsec < 0 || x.Nsec >= 1e9) {
			return unix.EINVAL
		}
	}
	return nil
}

// precheck returns the error a metadata change of the object at view path p would fail with,
// checked on the object where it is now, so that a failing call does not copy it up.
func (v *View) precheck(p string, o op) error {
	l, st, err := v.locate(p)
	if err != nil {
		return err
	}
	typ := st.Mode & unix.S_IFMT
	switch o.kind {
	case opSetxattr, opRemovexattr:
		if strings.HasPrefix(o.name, "user.") && typ != unix.S_IFREG && typ != unix.S_IFDIR {
			return unix.EPERM
		}
		_, err := long.Lgetxattr(l.host, o.name, nil)
		exists := err == nil || err == unix.ERANGE
		if err != nil && err != unix.ENODATA && !exists {
			return err
		}
		switch {
		case o.kind == opRemovexattr && !exists:
			return unix.ENODATA
		case o.kind == opSetxattr && o.flags>>32&unix.XATTR_REPLACE != 0 && !exists:
			return unix.ENODATA
		case o.kind == opSetxattr && o.flags>>32&unix.XATTR_CREATE != 0 && exists:
			return unix.EEXIST
		case o.kind == opSetxattr && o.flags>>32&^(unix.XATTR_CREATE|unix.XATTR_REPLACE) != 0:
			return unix.EINVAL
		}
	case opChmod:
		if o.flags&unix.AT_SYMLINK_NOFOLLOW != 0 && typ == unix.S_IFLNK {
			return unix.EOPNOTSUPP
		}
	}
	return nil
}
