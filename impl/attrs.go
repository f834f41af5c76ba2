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
	// Either the view path of an object in the tree, which is copied up and changed there, or the
	// supervisor's own descriptor of an object outside the trees (or the view's own), changed
	// where it is.
	var viewPath string
	obj := -1
	defer func() {
		if obj >= 0 {
			unix.Close(obj)
		}
	}()
	outside := false // obj is outside the trees: act with the caller's credentials
	var pl place
	// byObject places obj, the object a descriptor or a magic link leads to.
	byObject := func() (err error) {
		viewPath, pl, err = v.placeOf(obj)
		if err != nil {
			return err
		}
		outside = pl == placeOutside
		if pl == placeTree {
			unix.Close(obj)
			obj = -1
		}
		return nil
	}
	if o.fd >= 0 || o.pathErr == nil && o.unsafePath == "" && o.flags&unix.AT_EMPTY_PATH != 0 && o.dirfd != unix.AT_FDCWD {
		fd := o.fd
		if fd < 0 {
			fd = o.dirfd
		}
		obj0, shared, err := t.taskObject(fd)
		if err != nil {
			return reply{}, err
		}
		obj = obj0
		if o.fd >= 0 && shared {
			// fchmod, fchown, fsetxattr... refuse an O_PATH descriptor, which pidfd_getfd shares.
			if fl, err := unix.FcntlInt(uintptr(obj), unix.F_GETFL, 0); err == nil && fl&unix.O_PATH != 0 {
				return reply{}, unix.EBADF
			}
		}
		if err := byObject(); err != nil {
			return reply{}, err
		}
	} else {
		r, _, err := v.lookup(t, o, o.flags&unix.AT_SYMLINK_NOFOLLOW == 0)
		if err != nil {
			return reply{}, err
		}
		mode := r.mode
		if r.kind == resFDObject {
			// A magic link to an object without a path in the view (a memfd, a pipe, a deleted
			// file, a shared file the view removed): the kernel changes the object itself.
			if obj, err = v.fdObject(t, c, r.path); err != nil {
				return reply{}, err
			}
			var st unix.Stat_t
			if err := unix.Fstat(obj, &st); err != nil {
				return reply{}, err
			}
			mode = st.Mode & unix.S_IFMT
		}
		if o.kind == opTruncate {
			switch {
			case mode == unix.S_IFDIR:
				return reply{}, unix.EISDIR
			case mode != unix.S_IFREG:
				return reply{}, unix.EINVAL
			}
		}
		viewPath = r.path
		if r.kind == resFDObject {
			if err := byObject(); err != nil {
				return reply{}, err
			}
		} else if !r.inTree {
			// The host's object, opened without following anything the view did not follow
			// (docs/kernel.md, "Opening host paths without following symlinks"). A removed
			// directory the caller still holds (gone) is the supervisor's own ghost.
			if r.kind == resGone {
				obj, err = long.Open(r.host, unix.O_PATH|unix.O_CLOEXEC, 0)
			} else {
				outside = true
				err = asCaller(c, func() (err error) {
					obj, err = openHost(r.host, unix.O_PATH, 0)
					return err
				})
			}
			if err != nil {
				return reply{}, err
			}
		}
	}
	if err := timesErr(o); err != nil {
		return reply{}, err
	}
	if obj < 0 {
		// Fail before copying up: a failed call changes nothing, not even where the file is.
		if err := v.mayChangeAttr(c, viewPath, o); err != nil {
			return reply{}, err
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
	if !outside && (pl == placeOwn || pl == placeDetached) { // checked above for a copy-up
		if err := maySetattr(c, obj, o); err != nil {
			return reply{}, err
		}
	}
	if pl == placeDetached {
		// A shared object the view removed while the task held it: the kernel would change it,
		// and only the task's descriptor could show that, which shows the shared object anyway
		// (README, limits). Nothing is changed; the call succeeds as the kernel's would.
		return okReply, nil
	}
	// As the caller, also on the view's copy, which has the shared object's owner and group: the
	// kernel then applies what it applies to the caller, the set-group-ID bit dropped by a chmod
	// from outside the file's group and set-user-ID bits dropped by a chown among them.
	return okReply, asCaller(c, func() error { return setattrObj(obj, o) })
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
