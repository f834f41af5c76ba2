package impl

import "golang.org/x/sys/unix"

// opKind says which operation a decoded syscall performs. The path syscalls decode into one form
// each: open, creat, openat and openat2 into opOpen; stat, lstat and newfstatat into opStat;
// access, faccessat and faccessat2 into opAccess; unlink, rmdir and unlinkat into opUnlink; and so
// on. The zero kind is no operation: what a failed decode returns.
type opKind uint8

const (
	opNone opKind = iota
	opOpen
	opStat
	opStatx
	opAccess
	opReadlink
	opChdir
	opFchdir
	opGetcwd
	opMkdir
	opUnlink
	opRename
	opLink
	opSymlink
	opChmod
	opChown
	opTruncate
	opUtimens
	opMknod
	opGetxattr
	opListxattr
	opSetxattr
	opRemovexattr
	opExec
	opStatfs
	opInotify
)

// op is a decoded file-system syscall: legacy forms (open, creat) decode into the *at form with
// AT_FDCWD and share its code. unsafePath came from tracee memory and is not yet resolved.
type op struct {
	kind       opKind
	dirfd      int
	unsafePath string
	// pathErr is why unsafePath could not be read (EFAULT; ENAMETOOLONG at PATH_MAX or more). The
	// kernel copies a path in after checking the call's flags: the view fails with pathErr there.
	pathErr error
	flags   uint64
	mode    uint32
	resolve uint64 // openat2's RESOLVE_* flags
	strict  bool   // openat2: unknown flags and stray mode bits are EINVAL
	pathArgs
}

// pathArgs carries what the path syscalls add to op.
type pathArgs struct {
	dirfd2      int    // rename, link: the second path's dirfd
	unsafePath2 string // rename, link: the second path; symlink: the link's path
	pathErr2    error  // why unsafePath2 could not be read
	target      string // symlink: the link's content (not resolved)
	buf         uint64 // where results go in tracee memory
	size        uint64 // the buffer's size
	fd          int    // fd-based forms (fchmod, futimens, fsetxattr, ...); -1 for path forms
	uid, gid    int
	times       *[2]unix.Timespec // utimens: nil means now
	name        string            // xattr name
	value       []byte            // setxattr value
	mask        uint32            // statx mask, access mode, inotify mask
	length      int64             // truncate
	dev         uint64            // mknod
	pathAddr    uint64            // exec: where the path string is in tracee memory
	pathLen     int               // exec: its length
	argv        uint64            // exec: where the argument vector is in tracee memory
}

// second returns o with its second path (rename's and link's new name) in place of its first, for
// the prologues that look up o's path (lookupName).
func (o op) second() op {
	o.dirfd, o.unsafePath, o.pathErr = o.dirfd2, o.unsafePath2, o.pathErr2
	return o
}

// readOnly reports whether answering o changes nothing: the stat family and read-only opens (no
// write access, O_CREAT, O_TRUNC or O_TMPFILE) anywhere, and, outside any invocation (inView
// false: a worker thread, where the kernel may run such a call itself), chdir and fchdir too. In
// a view those two are not read-only: they set the task's virtual working directory, view state,
// so the supervisor checks that the call is still waiting before answering them, as it does for
// every call that acts. Outside one there is no view, and they change only the task's own working
// directory, which is the kernel's to keep.
func (o op) readOnly(inView bool) bool {
	switch o.kind {
	case opStat, opStatx, opAccess, opReadlink, opGetcwd, opGetxattr, opListxattr, opStatfs:
		return true
	case opOpen:
		return !mayWrite(o.flags)
	case opChdir, opFchdir:
		return !inView
	}
	return false
}

// replyKind says how the supervisor answers a notification.
type replyKind uint8

const (
	replyNone     replyKind = iota // the task went away: nothing to answer
	replyErrno                     // fail with errno
	replyVal                       // succeed with val
	replyContinue                  // let the kernel run the syscall (read-only calls only)
	replyFD                        // inject fd and return its number in the task
	replyExec                      // install fd in the task, rewrite its path argument, continue
)

// reply is the supervisor's answer to one notification.
type reply struct {
	kind    replyKind
	errno   unix.Errno
	val     int64
	fd      int    // replyFD: the supervisor's descriptor, closed once injected
	cloexec bool   // replyFD: the new descriptor gets FD_CLOEXEC
	undo    func() // replyFD: rolls back a file created for a task that went away before injection
	// replyExec: points the task's path argument at the installed descriptor.
	rewrite func(newfd int) error
}

func errnoReply(e unix.Errno) reply { return reply{kind: replyErrno, errno: e} }
