package impl

import (
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
	"unsafe"

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

// fast reports that a read-only call on r may be left to the kernel.
func (v *View) fast(r resolved) bool {
	return v.ns.policy == PolicyFast && r.pure && r.kind != resFDObject
}

// getcwd writes the caller's working directory as a view path.
func (v *View) getcwd(t tracee, o op) (reply, error) {
	cwd, err := v.cwdOf(t)
	if err != nil {
		return reply{}, err
	}
	b := append([]byte(cwd), 0)
	if uint64(len(b)) > o.size {
		return reply{}, unix.ERANGE
	}
	if err := t.write(o.buf, b); err != nil {
		return reply{}, err
	}
	return reply{kind: replyVal, val: int64(len(b))}, nil
}

// cwdOf is the caller's working directory in the view: ENOENT once the view removed it.
func (v *View) cwdOf(t tracee) (string, error) {
	p, g, ok := v.virtualCwd(t)
	if g != nil {
		return "", unix.ENOENT
	}
	if !ok {
		target, err := readlink(t.procPath("cwd"))
		if err != nil {
			return "", errTraceeGone
		}
		if strings.HasSuffix(target, " (deleted)") {
			return "", unix.ENOENT
		}
		if p, ok = v.viewPathOf(target); !ok {
			p = v.viewOfLower(target)
			if v.ghostOfLower(target, p) != nil {
				return "", unix.ENOENT
			}
		}
	}
	if v.ns.inTree(p) && !v.ns.isTreeRoot(p) {
		if _, st, err := v.locate(p); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return "", unix.ENOENT
		}
	}
	return p, nil
}

// chdir changes the caller's working directory. A directory the kernel can reach under its view
// path is left to the kernel, also when the view materialized it or changed its metadata: the
// kernel's working directory is then the shared directory, which the view maps back to the
// view's (startDir), and a relative path that the kernel resolves from there to a shared object
// stays pure. One that exists only in the private layer, or moved there, becomes the caller's
// virtual working directory: the kernel's stays where it was, and the supervisor, which resolves
// every relative path, starts from the virtual one.
func (v *View) chdir(t tracee, o op) (reply, error) {
	r, _, err := v.lookup(t, o, true)
	if err != nil {
		return reply{}, err
	}
	if r.mode != unix.S_IFDIR {
		return reply{}, unix.ENOTDIR
	}
	// Search permission, the caller's (access(2) would check the supervisor's).
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	if r.kind == resGone { // "." in a removed working directory: it stays
		if err := hostMay(c, r.host, unix.X_OK); err != nil {
			return reply{}, err
		}
		return okReply, nil
	}
	// The kernel checks the shared directory's permissions: when the view changed them, both
	// must let the caller in.
	if r.reachesLower && r.kind != resFDObject &&
		(r.ent == nil || !r.ent.own || hostMay(c, r.host, unix.X_OK) == nil && hostMay(c, r.ent.lower, unix.X_OK) == nil) {
		v.clearCwd(t)
		return reply{kind: replyContinue}, nil
	}
	if err := hostMay(c, r.host, unix.X_OK); err != nil {
		return reply{}, err
	}
	return okReply, v.setCwd(t, r.path)
}

func pathDir(p string) string { return path.Dir(p) }

// newGid is the group the kernel gives a new object of caller c in host directory dir, where the
// supervisor made it with its own credentials: the directory's group when it is set-group-ID,
// else c's fsgid.
func newGid(c creds, dir string) int {
	var st unix.Stat_t
	if long.Stat(dir, &st) == nil && st.Mode&unix.S_ISGID != 0 {
		return int(st.Gid)
	}
	return c.fsgid
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
		viewPath, pl, err = v.placeOf(obj)
		if err != nil {
			return reply{}, err
		}
		outside = pl == placeOutside
		if pl == placeTree {
			unix.Close(obj)
			obj = -1
		}
	} else {
		r, _, err := v.lookup(t, o, o.flags&unix.AT_SYMLINK_NOFOLLOW == 0)
		if err != nil {
			return reply{}, err
		}
		if o.kind == opTruncate {
			switch {
			case r.mode == unix.S_IFDIR:
				return reply{}, unix.EISDIR
			case r.mode != unix.S_IFREG:
				return reply{}, unix.EINVAL
			}
		}
		viewPath = r.path
		if !r.inTree {
			// The host's object, opened without following anything the view did not follow. A
			// removed directory the caller still holds (gone) is the supervisor's own ghost.
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
	if !outside && pl == placeOwn { // checked above for a copy-up
		if err := maySetattr(c, obj, o); err != nil {
			return reply{}, err
		}
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

// place is where an object the task holds a descriptor of lies for a view.
type place uint8

const (
	placeOutside place = iota // outside the trees, or no file-system object (pipe, socket...)
	placeOwn                  // the view's own: in its private layer
	placeTree                 // a shared object in a tree, at the view path placeOf returns
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
		return p, placeTree, nil
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

// getxattr is getxattr, lgetxattr, listxattr and llistxattr.
func (v *View) getxattr(t tracee, o op) (reply, error) {
	r, _, err := v.lookup(t, o, o.flags&unix.AT_SYMLINK_NOFOLLOW == 0)
	if err != nil {
		return reply{}, err
	}
	if v.fast(r) || !r.inTree && r.pure {
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

// sockaddr is bind and connect. Anything but a UNIX socket address naming a path is left to the
// kernel. A path is resolved in the view: binding creates the socket file in the private layer,
// and connecting to a socket file there connects the caller's socket to it; the supervisor acts
// on its own duplicate of the caller's socket (pidfd_getfd), which is the same socket.
func (v *View) sockaddr(t tracee, o op) (reply, error) {
	const sunPath = 2 // offsetof(struct sockaddr_un, sun_path)
	connect := o.flags == 1
	if o.size <= sunPath || o.size > uint64(unsafe.Sizeof(unix.RawSockaddrUnix{})) {
		if connect {
			return reply{kind: replyContinue}, nil
		}
		return v.bindRaw(t, o, nil)
	}
	raw := make([]byte, o.size)
	if _, err := t.read(o.buf, raw); err != nil {
		return reply{}, err
	}
	family := *(*uint16)(unsafe.Pointer(&raw[0]))
	name := raw[sunPath:]
	if family != unix.AF_UNIX || name[0] == 0 { // not UNIX, or an abstract address
		// A bind is never continued: the kernel would read the address again, and a second
		// thread may have made it a path by then (docs/kernel.md, "CONTINUE re-reads memory").
		// A connect makes no file; the threat model says where a raced one can lead.
		if connect {
			return reply{kind: replyContinue}, nil
		}
		return v.bindRaw(t, o, raw)
	}
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	r, err := v.resolve(t, unix.AT_FDCWD, string(name), resolveOpts{followFinal: connect, creat: !connect})
	if err != nil {
		return reply{}, err
	}
	if connect && (!r.inTree || r.pure) {
		return reply{kind: replyContinue}, nil
	}
	if !r.inTree { // bind outside the trees: made on the host, as the caller
		if r.exists() || r.dot() {
			return reply{}, unix.EADDRINUSE
		}
		fd, err := t.getfd(o.fd)
		if err != nil {
			return reply{}, err
		}
		defer unix.Close(fd)
		return okReply, atHost(t, r.path, func(dirfd int, name string) error {
			short := fdPath(dirfd) + "/" + name
			if len(short) >= len(unix.RawSockaddrUnix{}.Path) {
				return unix.ENAMETOOLONG
			}
			return unix.Bind(fd, &unix.SockaddrUnix{Name: short})
		})
	}
	host := r.host
	if !connect {
		if r.exists() || r.dot() {
			return reply{}, unix.EADDRINUSE
		}
		if r.kind == resDeadDir {
			return reply{}, unix.ENOENT
		}
		if err := v.addable(path.Dir(r.path)); err != nil {
			return reply{}, err
		}
		host = v.upperPath(r.path)
	} else if !r.exists() {
		return reply{}, unix.ENOENT
	}
	// The private layer's path may be longer than sun_path holds: name the socket file through
	// the supervisor's descriptor of its directory instead.
	dir, err := long.Open(path.Dir(host), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return reply{}, err
	}
	defer unix.Close(dir)
	short := "/proc/self/fd/" + strconv.Itoa(dir) + "/" + path.Base(host)
	if len(short) >= len(unix.RawSockaddrUnix{}.Path) {
		return reply{}, unix.ENAMETOOLONG
	}
	fd, err := t.getfd(o.fd)
	if err != nil {
		return reply{}, err
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrUnix{Name: short}
	if connect {
		err = v.waitOutsideTurn(func() error { return unix.Connect(fd, sa) })
	} else if err = unix.Bind(fd, sa); err == nil {
		v.setEntry(r.path, &entry{kind: entryObj, own: true})
	}
	if err != nil {
		return reply{}, err
	}
	return okReply, nil
}
