package impl

import (
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// flagTmpfile is __O_TMPFILE, the bit that O_TMPFILE adds to O_DIRECTORY.
const flagTmpfile = unix.O_TMPFILE &^ unix.O_DIRECTORY

// validOpenFlags are the flags openat2 accepts (VALID_OPEN_FLAGS); openat ignores others.
const validOpenFlags = unix.O_ACCMODE | unix.O_CREAT | unix.O_EXCL | unix.O_NOCTTY | unix.O_TRUNC |
	unix.O_APPEND | unix.O_NONBLOCK | unix.O_DSYNC | unix.O_ASYNC | unix.O_DIRECT | unix.O_LARGEFILE |
	unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_NOATIME | unix.O_CLOEXEC | unix.O_PATH | unix.O_TMPFILE | unix.O_SYNC

const validResolve = unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_SYMLINKS |
	unix.RESOLVE_BENEATH | unix.RESOLVE_IN_ROOT | resolveCached

// checkOpenat2 applies the argument checks openat2 makes and openat does not.
func checkOpenat2(o op) error {
	f := o.flags
	if f&^uint64(validOpenFlags) != 0 || o.resolve&^uint64(validResolve) != 0 {
		return unix.EINVAL
	}
	if o.mode != 0 && f&(unix.O_CREAT|flagTmpfile) == 0 {
		return unix.EINVAL
	}
	if f&unix.O_PATH != 0 && f&^uint64(unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC) != 0 {
		return unix.EINVAL
	}
	if o.resolve&unix.RESOLVE_BENEATH != 0 && o.resolve&unix.RESOLVE_IN_ROOT != 0 {
		return unix.EINVAL
	}
	if o.resolve&resolveCached != 0 && f&(unix.O_TRUNC|unix.O_CREAT|flagTmpfile) != 0 {
		return unix.EAGAIN
	}
	return nil
}

// openFlagsErr applies the checks open(2) makes on flags alone, before looking at the dirfd or the
// path (build_open_flags; O_DIRECTORY|O_CREAT is refused since Linux 6.4:
// docs/kernel.md, "Open flags").
func openFlagsErr(flags int) error {
	switch {
	case flags&unix.O_PATH != 0:
		return nil // open and openat drop every other flag; openat2 refused them in checkOpenat2
	case flags&(unix.O_DIRECTORY|unix.O_CREAT) == unix.O_DIRECTORY|unix.O_CREAT:
		return unix.EINVAL
	case flags&flagTmpfile != 0 && (flags&unix.O_DIRECTORY == 0 || flags&unix.O_ACCMODE == unix.O_RDONLY):
		return unix.EINVAL
	}
	return nil
}

// writesData says an open of an existing regular file can change its content or needs write access
// to it, so that the file must be copied up first. O_TRUNC truncates even with O_RDONLY. O_CREAT and
// O_APPEND alone do not: on an existing file opened for reading they change nothing.
func writesData(flags int) bool {
	return flags&unix.O_PATH == 0 && (flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0)
}

// open answers the open family: pass-through for unchanged files read-only, copy-up then redirect
// for anything that can write, redirect for everything the private layer already holds. Errors come
// in the kernel's order: flags, dirfd, path walk, then the final object
// (docs/kernel.md, "Open flags").
func (v *View) open(t tracee, o op) (reply, error) {
	if o.strict {
		if err := checkOpenat2(o); err != nil {
			return reply{}, err
		}
	}
	flags := int(uint32(o.flags))
	if err := openFlagsErr(flags); err != nil {
		return reply{}, err
	}
	// open and openat drop the flags they do not know (build_open_how); the supervisor's own
	// opens, openat2 among them, would refuse them.
	flags &= validOpenFlags
	if o.pathErr != nil {
		return reply{}, o.pathErr
	}
	pathOnly := flags&unix.O_PATH != 0
	if pathOnly {
		flags &= unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	}
	tmpfile := flags&flagTmpfile != 0
	creat := flags&unix.O_CREAT != 0
	excl := creat && flags&unix.O_EXCL != 0
	cloexec := flags&unix.O_CLOEXEC != 0
	// O_CREAT|O_EXCL implies O_NOFOLLOW; with O_CREAT a trailing slash fails with EISDIR before
	// anything is followed.
	follow := flags&unix.O_NOFOLLOW == 0 && !excl
	trailing := strings.HasSuffix(o.unsafePath, "/")
	if trailing {
		follow = !creat
	}

	r, err := v.resolve(t, o.dirfd, o.unsafePath, resolveOpts{followFinal: follow, resolve: o.resolve, creat: creat, deferLong: creat})
	if err != nil {
		return reply{}, err
	}
	// A descriptor of a partial directory would list only what its upper directory holds: the
	// listing is completed before any open of it, O_PATH included (what stands in for one is
	// readable).
	if r.exists() && r.mode == unix.S_IFDIR && v.isPartial(r.ent) {
		if err := v.materialize(r.path); err != nil {
			return reply{}, err
		}
	}
	if r.exists() && r.inTree && (r.ent.copiedShared() || r.mode == unix.S_IFREG && writesData(flags)) {
		// The descriptor is (or, once copied up, will be) a copy's, whose stat View.fstat
		// corrects.
		v.copyFDs.Store(true)
	}
	switch {
	case pathOnly:
		return v.openPath(t, r, flags, cloexec)
	case r.kind == resFDObject: // a pipe, socket or deleted file reopened through /proc/PID/fd/N
		if !mayWrite(o.flags) && v.ns.policy == PolicyFast {
			return reply{kind: replyContinue}, nil
		}
		return v.openFDObject(t, r.path, flags&^(unix.O_CREAT|unix.O_EXCL), cloexec)
	case tmpfile:
		return v.openTmpfile(t, r, flags, o.mode, cloexec)
	case r.dot() && excl:
		return reply{}, unix.EEXIST
	case creat && (r.dot() || r.trailingSlash):
		return reply{}, unix.EISDIR
	case r.kind == resLongName:
		return reply{}, unix.ENAMETOOLONG
	case !r.exists() && (!creat || r.kind == resDeadDir):
		return reply{}, unix.ENOENT
	case !r.exists():
		return v.openCreate(t, r, flags, o.mode, cloexec)
	case excl:
		return reply{}, unix.EEXIST
	case creat && r.mode == unix.S_IFDIR:
		return reply{}, unix.EISDIR
	case flags&unix.O_DIRECTORY != 0 && r.mode != unix.S_IFDIR:
		return reply{}, unix.ENOTDIR
	case r.mode == unix.S_IFLNK:
		return reply{}, unix.ELOOP
	}
	return v.openExisting(t, r, flags&^(unix.O_CREAT|unix.O_EXCL), cloexec, creat)
}

// openPath is open with O_PATH of r. The kernel cannot inject an O_PATH file (ADDFD uses fget,
// which refuses them: docs/kernel.md, "Injected descriptors"). An O_PATH fd gives no access to
// data, and every later use of it passes through the view again, so the kernel may open it itself,
// in either policy, wherever it reaches the same object (pure). An object it would not reach, in
// the private layer or a shared one whose path leads through it (a working directory or directory
// descriptor there, a directory renamed or made in the view, a symlink made there), is opened for
// reading instead, so that the descriptor names the right file; it stays non-blocking: it stands
// for a descriptor without I/O.
func (v *View) openPath(t tracee, r resolved, flags int, cloexec bool) (reply, error) {
	switch {
	case !r.exists():
		return reply{}, unix.ENOENT
	case r.pure:
		return reply{kind: replyContinue}, nil
	case flags&unix.O_DIRECTORY != 0 && r.mode != unix.S_IFDIR:
		return reply{}, unix.ENOTDIR
	case r.mode == unix.S_IFLNK: // cannot be opened without O_PATH, which cannot be injected
		return v.opathProxy(r.path, cloexec)
	}
	ro := flags&^(unix.O_PATH|unix.O_NOFOLLOW) | unix.O_RDONLY | unix.O_NONBLOCK
	if r.own || r.kind == resGone {
		return openFD(r.host, ro, cloexec)
	}
	return openHostFD(t, r.host, ro, cloexec)
}

// openTmpfile is open with O_TMPFILE in directory r: an unnamed file, in the private layer's copy
// of r in the trees.
func (v *View) openTmpfile(t tracee, r resolved, flags int, mode uint32, cloexec bool) (reply, error) {
	switch {
	case !r.exists():
		return reply{}, unix.ENOENT
	case r.mode != unix.S_IFDIR:
		return reply{}, unix.ENOTDIR
	case !r.inTree:
		return v.create(t, r, r.path, flags, mode, cloexec, true)
	}
	if err := v.mayCreate(t, r.path); err != nil {
		return reply{}, err
	}
	if err := v.ensureDir(r.path); err != nil {
		return reply{}, err
	}
	return v.create(t, r, v.upperPath(r.path), flags, mode, cloexec, true)
}

// openCreate is open with O_CREAT where r does not exist: a new file, in the private layer in the
// trees, else on the host's file system.
func (v *View) openCreate(t tracee, r resolved, flags int, mode uint32, cloexec bool) (reply, error) {
	if !r.inTree {
		return v.create(t, r, r.path, flags, mode, cloexec, false)
	}
	if err := v.mayCreate(t, path.Dir(r.path)); err != nil {
		return reply{}, err
	}
	if err := v.addable(path.Dir(r.path)); err != nil {
		return reply{}, err
	}
	return v.create(t, r, v.upperPath(r.path), flags, mode, cloexec, false)
}

// openExisting is open of the existing object r, once O_CREAT (creat: it was given) has done its
// part and is out of flags: what remains is the kernel's open of it.
func (v *View) openExisting(t tracee, r resolved, flags int, cloexec, creat bool) (reply, error) {
	fast := v.ns.policy == PolicyFast
	if r.mode == unix.S_IFDIR && openMask(flags)&unix.W_OK != 0 {
		return reply{}, unix.EISDIR // may_open refuses before it checks permissions
	}
	if r.inTree && (r.own || writesData(flags)) {
		// The supervisor opens these itself: the kernel checks its rights, not the caller's.
		c, err := t.status()
		if err != nil {
			return reply{}, err
		}
		// A shared file's flags, before it is copied up (may_open's order: an immutable file's
		// refusal comes before the permission check, an append-only file's after it). A copy
		// has them itself.
		shared := !r.own && writesData(flags)
		if shared && r.mode == unix.S_IFREG && hostFlags(r.host).immutable {
			return reply{}, unix.EPERM
		}
		if err := hostMay(c, r.host, openMask(flags)); err != nil {
			return reply{}, err
		}
		if shared && r.mode == unix.S_IFREG && openChange(flags) == changeData && hostFlags(r.host).appendOnly {
			return reply{}, unix.EPERM
		}
	}
	switch {
	case r.own:
		return openFD(r.host, flags, cloexec)
	case !mayWrite(uint64(flags)) && fast && r.pure && !creat:
		return reply{kind: replyContinue}, nil
	case r.mode == unix.S_IFREG && r.inTree && writesData(flags):
		trunc := flags&unix.O_TRUNC != 0
		if err := v.copyUp(r.path, r.host, trunc); err != nil {
			return reply{}, err
		}
		rep, err := openFD(v.upperPath(r.path), flags, cloexec)
		if err != nil && trunc {
			// The open failed after a copy-up that left the data out (a flag the private layer's
			// file system refuses, O_DIRECT on tmpfs before 6.6, say:
			// docs/kernel.md, "O_DIRECT on tmpfs"), where the kernel fails before it truncates: the
			// data is copied again from the shared file, which is unchanged. The file stays the
			// view's own copy, with the shared file's content.
			if cerr := v.copyUp(r.path, r.host, false); cerr != nil {
				return reply{}, cerr
			}
		}
		return rep, err
	}
	// A shared file opened for reading, a directory (the kernel refuses to open one for writing),
	// a device, a FIFO or a socket, or a file outside the virtualized trees: opening it writes
	// nothing to the view's tree.
	if r.kind == resGone {
		return openFD(r.host, flags, cloexec) // the supervisor's own ghost
	}
	if r.inTree && !r.pure {
		return openViewFD(t, r.host, flags, cloexec)
	}
	return openHostFD(t, r.host, flags, cloexec)
}

// openViewFD is openHostFD for a shared object that the view reaches by another way than the
// kernel would (a name the view moved it to, say): the caller's right to search the view's way
// there was checked by the walk (resolve), and the shared tree's directories above the object
// are not the caller's way; the supervisor checks the caller's right to the object and opens it
// itself, following nothing (openHost).
func openViewFD(t tracee, p string, flags int, cloexec bool) (reply, error) {
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	if err := hostMay(c, p, openMask(flags)); err != nil {
		return reply{}, err
	}
	fd, err := openHost(p, flags|unix.O_NONBLOCK, 0)
	return fdReply(fd, err, flags, cloexec)
}

// openFD opens host path p with the caller's flags for injection, without ever waiting.
//
// The supervisor answers the notifications of every task it serves one at a time: an open that
// waited for a FIFO's other end would stall all of them (docs/kernel.md, "The supervisor must not wait"), for good when that
// end is to be opened by one of them. So openFD opens with O_NONBLOCK, and clears it again when
// the caller did not ask for it. For anything but a FIFO this changes nothing the caller sees,
// except that a device that would wait in open (a terminal waiting for carrier) does not, and an
// open that would break a lease fails with EWOULDBLOCK instead of waiting for its holder. For a
// FIFO opened without O_NONBLOCK, the kernel would wait for the other end; the view does not:
//
//   - read-write, and every open with O_NONBLOCK: as the kernel, which never waits for these;
//   - read-only: the descriptor comes at once, also without a writer; until a writer opens the
//     FIFO, read returns end of file instead of the open waiting;
//   - write-only: if the FIFO has a reader, as the kernel; if not, ENXIO (what O_NONBLOCK gives)
//     instead of waiting for one.
//
// Where the kernel can make the open itself, it waits in the caller, with nobody else held up:
// the fast policy continues read-only opens of shared FIFOs it reaches plainly. Only an open that
// may write, or that the kernel would resolve elsewhere, or any open in the strict policy, comes
// here. Waiting on another thread would need a deferred answer, which the supervisor does not
// give; a writer's open cannot be continued (docs/kernel.md, "CONTINUE re-reads memory").
func openFD(p string, flags int, cloexec bool) (reply, error) {
	fd, err := long.Open(p, flags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	return fdReply(fd, err, flags, cloexec)
}

// openHostFD is openFD for an object that is not the view's own: a shared one, or one outside the
// trees. The kernel checks the caller's right to the object itself: the supervisor opens p with
// O_PATH, following nothing the view did not follow (openHost), and reopens that descriptor as
// the caller. The caller's right to search the directories on the way is the view's to check
// (maySearch), on the view's way to p: a directory chmod'ed or chowned in the view is its copy's
// business, not the shared directory's, which an open of p as the caller would check instead.
func openHostFD(t tracee, p string, flags int, cloexec bool) (reply, error) {
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	var fd int
	if flags&unix.O_PATH != 0 {
		fd, err = openHost(p, flags|unix.O_NONBLOCK, 0) // needs no right to the object
		return fdReply(fd, err, flags, cloexec)
	}
	obj, err := openHost(p, unix.O_PATH, 0)
	if err != nil {
		return reply{}, err
	}
	defer unix.Close(obj)
	var st unix.Stat_t
	if err := unix.Fstat(obj, &st); err != nil {
		return reply{}, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK { // what openHost refuses a symlink with
		return reply{}, unix.ELOOP
	}
	// O_NOFOLLOW would refuse the magic link itself; the O_PATH open followed nothing.
	reopen := flags&^unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	err = asCaller(c, func() (err error) {
		fd, err = long.Open(fdPath(obj), reopen, 0)
		return err
	})
	return fdReply(fd, err, flags, cloexec)
}

// openFDObject reopens, as the caller, an object that has no path in the view (a pipe, a socket, a
// deleted file, a shared file the view removed) through the task's /proc/TID/fd/N, for an open of
// that magic link. A second thread may have dup2()ed a shared file onto N since the view looked:
// an object that turns out to have a name in a tree fails the call with EAGAIN.
func (v *View) openFDObject(t tracee, p string, flags int, cloexec bool) (reply, error) {
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	obj, err := v.fdObject(t, c, p)
	if err != nil {
		return reply{}, err
	}
	defer unix.Close(obj)
	// Where the object lies is decided before it is opened as asked: an open for writing (with
	// O_TRUNC, say) must not reach a shared object.
	switch _, pl, err := v.placeOf(obj); {
	case err != nil:
		return reply{}, err
	case pl == placeTree:
		return reply{}, unix.EAGAIN
	case pl == placeDetached && mayWrite(uint64(flags)):
		return reply{}, unix.EROFS // a shared object the view removed has no copy to write (README)
	}
	var fd int
	err = asCaller(c, func() (err error) {
		fd, err = long.Open(fdPath(obj), flags&^unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		return err
	})
	return fdReply(fd, err, flags, cloexec)
}

// fdObject returns the supervisor's own descriptor of the object that magic link p (a
// resFDObject resolution) leads to, to decide on and act on. The caller's own descriptor is taken
// as the fd forms take it (taskObject), whatever the modes of its /proc directory (root's, once
// it changed its credentials: docs/kernel.md, "A task's own /proc directory"); another task's
// link is opened as the caller, whose right to follow it the kernel checks. The supervisor then
// opens the object through its own descriptor's magic link, which it may always follow. The
// caller closes the descriptor.
func (v *View) fdObject(t tracee, c creds, p string) (int, error) {
	if n, ok := ownFDLink(p, t.tid, c.tgid); ok {
		obj, _, err := t.taskObject(n)
		return obj, err
	}
	var obj int
	err := asCaller(c, func() (err error) {
		obj, err = long.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		return err
	})
	return obj, err
}

// ownFDLink returns N when p is /proc/PID/fd/N or /proc/PID/task/TID/fd/N of the caller's own
// process (tgid) or thread (tid).
func ownFDLink(p string, tid, tgid int) (int, bool) {
	if !ownProc(p, tid, tgid) {
		return 0, false
	}
	dir, name := path.Split(p)
	if !strings.HasSuffix(dir, "/fd/") {
		return 0, false
	}
	n, err := strconv.Atoi(name)
	return n, err == nil && n >= 0
}

// fdReply answers with descriptor fd, opened with O_NONBLOCK added to flags, or with err.
func fdReply(fd int, err error, flags int, cloexec bool) (reply, error) {
	if err != nil {
		return reply{}, err
	}
	if flags&unix.O_NONBLOCK == 0 {
		if err := clearNonblock(fd); err != nil {
			unix.Close(fd)
			return reply{}, err
		}
	}
	return reply{kind: replyFD, fd: fd, cloexec: cloexec}, nil
}

// clearNonblock clears O_NONBLOCK from fd's status flags and keeps the others.
func clearNonblock(fd int) error {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	return err
}

// create makes a new file at host path p (or, with tmpfile, an unnamed one in directory p) with the
// caller's flags, and the owner, group and mode the kernel would give it (newOwner).
func (v *View) create(t tracee, r resolved, p string, flags int, mode uint32, cloexec, tmpfile bool) (reply, error) {
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	if !tmpfile {
		flags |= unix.O_EXCL
	}
	var fd int
	if r.inTree {
		fd, err = long.Open(p, flags|unix.O_CLOEXEC, 0o600)
	} else {
		// On the host, as the caller: the kernel checks its right to the directory and makes it
		// the owner; nothing the view did not follow is followed on the way.
		err = asCaller(c, func() (err error) {
			fd, err = openHost(p, flags, 0o600)
			return err
		})
	}
	if err != nil {
		return reply{}, err
	}
	undo := func() {}
	if !tmpfile {
		undo = func() {
			if dirfd, name, err := hostParent(p); err == nil {
				unix.Unlinkat(dirfd, name, 0)
				unix.Close(dirfd)
			}
		}
	}
	fail := func(err error) (reply, error) {
		unix.Close(fd)
		undo()
		return reply{}, err
	}
	var dir unix.Stat_t
	var acl []byte
	if r.inTree {
		dirPath := path.Dir(p)
		if tmpfile {
			dirPath = p
		}
		if err = long.Lstat(dirPath, &dir); err == nil {
			acl, err = defaultACL(dirPath)
		}
	} else {
		// Made as the caller: the kernel gave it its group, the directory's when that is
		// set-group-ID, which is all newOwner needs of the directory for a file, but for its
		// default ACL.
		err = unix.Fstat(fd, &dir)
		dir.Mode = unix.S_ISGID
		if err == nil {
			acl, err = hostDefaultACL(p, tmpfile)
		}
	}
	if err == nil {
		err = newOwner(c, &dir, acl, unix.S_IFREG, mode).give(fd)
	}
	if err != nil {
		return fail(err)
	}
	if !tmpfile && r.inTree {
		v.setEntry(r.path, &entry{kind: entryObj, own: true})
		undo = func() { long.Unlink(p); v.dropTree(r.path) }
	}
	return reply{kind: replyFD, fd: fd, cloexec: cloexec, undo: undo}, nil
}

// resolveCached is RESOLVE_CACHED (5.12; docs/kernel.md, "Open flags"), which x/sys/unix does not
// name.
const resolveCached = 0x20

// opathPrefix names the memfds that stand in for O_PATH descriptors of objects the kernel cannot
// open and the supervisor cannot inject as O_PATH (a symlink in the private layer;
// docs/kernel.md, "Injected descriptors"): readlink of /proc/TID/fd/N then reads "/memfd:" +
// opathPrefix + view path + " (deleted)", which the supervisor maps back to the view path wherever
// a descriptor is used as a name (AT_EMPTY_PATH, /proc/self/fd/N).
const opathPrefix = "fsvirt-opath:"

// opathProxy makes the O_PATH proxy of the view's symlink at p. A task can make a memfd with
// such a name too: only the memfds the view made are proxies. The
// view keeps a descriptor of each, until it ends, so that no other file gets its inode number,
// and knows them by device and inode (View.proxies).
func (v *View) opathProxy(p string, cloexec bool) (reply, error) {
	fd, err := unix.MemfdCreate(opathPrefix+p, unix.MFD_CLOEXEC)
	if err != nil {
		return reply{}, unix.ELOOP // a name too long for a memfd: as if O_NOFOLLOW refused it
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return reply{}, err
	}
	held, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return reply{}, err
	}
	v.mu.Lock()
	if v.proxies == nil {
		v.proxies = map[devIno]int{}
	}
	v.proxies[devIno{st.Dev, st.Ino}] = held
	v.mu.Unlock()
	return reply{kind: replyFD, fd: fd, cloexec: cloexec}, nil
}

// proxyOf returns the view path an O_PATH proxy stands for, given what readlink of a magic link
// to it reads; false for anything but a memfd this view made, which stat, the object's own stat,
// tells from a task's memfd of the same name (it is called only for a name that could be one).
func (v *View) proxyOf(target string, stat func(*unix.Stat_t) error) (string, bool, error) {
	s, ok := strings.CutPrefix(target, "/memfd:"+opathPrefix)
	if !ok {
		return "", false, nil
	}
	var st unix.Stat_t
	if err := stat(&st); err != nil {
		return "", false, err
	}
	v.mu.Lock()
	_, made := v.proxies[devIno{st.Dev, st.Ino}]
	v.mu.Unlock()
	if !made {
		return "", false, nil
	}
	return strings.TrimSuffix(s, " (deleted)"), true, nil
}

// fdProxy returns the view path that the task's descriptor fd stands for, when it is a proxy.
func (v *View) fdProxy(t tracee, fd int) (string, bool) {
	link := t.procPath("fd/" + strconv.Itoa(fd))
	target, err := readlink(link)
	if err != nil {
		return "", false
	}
	p, ok, _ := v.proxyOf(target, func(st *unix.Stat_t) error { return unix.Stat(link, st) })
	return p, ok
}
