package sysexec

import (
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// Exec runs ops with real syscalls in the tree at root.
type Exec struct {
	// CountDirLinks makes the st_nlink of a directory 2 plus its
	// subdirectories, counted by listing it, and 0 when it was removed:
	// overlayfs reports 1 for a merged directory. Set it before the first op.
	CountDirLinks bool
	// FilteredListxattr sizes a listxattr by the names it returns: overlayfs
	// hides its trusted.overlay.* names from the list but counts them when
	// it checks the buffer size. Set it before the first op.
	FilteredListxattr bool
	root              string
	cwd               bool  // the thread's working directory is root: relative paths are passed as they are
	cwdFd             int   // without cwd: the working directory after a chdir, or -1 for root
	fds               []int // by handle; -1 when free
}

// New returns an Exec for the tree at root, an absolute path. It opens nothing.
func New(root string) *Exec {
	return &Exec{root: strings.TrimSuffix(root, "/"), cwdFd: -1}
}

// NewInCwd returns an Exec that changes the calling thread's working directory to root and then
// passes relative paths to the kernel unchanged, so that they resolve against the thread's cwd for
// real. Only a thread with a working directory of its own (unshare(CLONE_FS), as the engine's
// workers have) may use it, from a goroutine locked to that thread.
func NewInCwd(root string) (*Exec, error) {
	if err := unix.Chdir(root); err != nil {
		return nil, err
	}
	return &Exec{root: strings.TrimSuffix(root, "/"), cwd: true, cwdFd: -1}, nil
}

// fd is the kernel fd behind h, or -1.
func (x *Exec) fd(h fsvirt.Handle) int {
	if h >= 0 && int(h) < len(x.fds) {
		return x.fds[h]
	}
	return -1
}

// FD is the kernel fd behind handle h, or -1, for a caller that looks at
// what an op opened.
func (x *Exec) FD(h fsvirt.Handle) int { return x.fd(h) }

// at is the dirfd and path to pass to an *at syscall for dirfd and
// unsafePath: absolute paths are taken from the root.
func (x *Exec) at(dirfd fsvirt.Handle, unsafePath string) (int, string) {
	switch {
	case strings.HasPrefix(unsafePath, "/"):
		return unix.AT_FDCWD, x.root + unsafePath
	case dirfd != fsvirt.AtCWD:
		return x.fd(dirfd), unsafePath // -1: EBADF, as for any fd that is not open
	case x.cwd:
		return unix.AT_FDCWD, unsafePath
	case x.cwdFd >= 0:
		return x.cwdFd, unsafePath
	case unsafePath == "":
		return unix.AT_FDCWD, x.root
	}
	return unix.AT_FDCWD, x.root + "/" + unsafePath
}

// path is the path to pass to a syscall without a dirfd, from the working
// directory.
func (x *Exec) path(unsafePath string) string {
	dirfd, p := x.at(fsvirt.AtCWD, unsafePath)
	if dirfd == unix.AT_FDCWD || unsafePath == "" {
		return p
	}
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + p
}

// Do runs op and returns what the kernel said.
func (x *Exec) Do(op fsvirt.Op) fsvirt.Outcome {
	fd := x.fd(op.Fd)
	dirfd, path := x.at(op.Dirfd, op.Path)
	switch op.Kind {
	case fsvirt.OpOpen:
		fd, err := unix.Openat(dirfd, path, op.Flags, op.Mode)
		if err != nil {
			return fail(err)
		}
		return fsvirt.Outcome{Ret: int64(x.install(fd))}
	case fsvirt.OpRead:
		buf := make([]byte, op.Size)
		n, err := unix.Read(fd, buf)
		if err != nil {
			return fail(err)
		}
		return fsvirt.Outcome{Ret: int64(n), Data: buf[:n]}
	case fsvirt.OpWrite:
		return result(unix.Write(fd, op.Data))
	case fsvirt.OpPwrite:
		return result(unix.Pwrite(fd, op.Data, op.Offset))
	case fsvirt.OpSeek:
		off, err := unix.Seek(fd, op.Offset, op.Whence)
		if err != nil {
			return fail(err)
		}
		return fsvirt.Outcome{Ret: off}
	case fsvirt.OpTruncate:
		return result(0, unix.Ftruncate(fd, op.Size))
	case fsvirt.OpStat:
		return x.stat(fd, "", unix.AT_EMPTY_PATH)
	case fsvirt.OpClose:
		err := unix.Close(fd)
		if fd >= 0 {
			x.fds[op.Fd] = -1
		}
		return result(0, err)
	case fsvirt.OpFstatat:
		return x.stat(dirfd, path, op.Flags)
	case fsvirt.OpAccess:
		return result(0, unix.Faccessat(dirfd, path, op.Mode, 0)) // faccessat(2): no flags
	case fsvirt.OpReadlink:
		return x.readlink(dirfd, path, op.Size)
	case fsvirt.OpGetdents:
		return getdents(fd)
	case fsvirt.OpChdir:
		return x.chdir(op.Path)
	case fsvirt.OpFchdir:
		return x.fchdir(fd)
	case fsvirt.OpGetcwd:
		return x.getcwd()
	case fsvirt.OpMkdir:
		return result(0, unix.Mkdirat(dirfd, path, op.Mode))
	case fsvirt.OpUnlink:
		return result(0, unix.Unlinkat(dirfd, path, op.Flags))
	case fsvirt.OpRename:
		newDirfd, newPath := x.at(op.NewDirfd, op.NewPath)
		return result(0, unix.Renameat2(dirfd, path, newDirfd, newPath, uint(op.Flags)))
	case fsvirt.OpLink:
		newDirfd, newPath := x.at(op.NewDirfd, op.NewPath)
		return result(0, unix.Linkat(dirfd, path, newDirfd, newPath, op.Flags))
	case fsvirt.OpSymlink:
		return result(0, unix.Symlinkat(x.target(string(op.Data)), dirfd, path))
	case fsvirt.OpChmod:
		return result(0, unix.Fchmodat(dirfd, path, op.Mode, 0))
	case fsvirt.OpChown:
		return result(0, unix.Fchownat(dirfd, path, op.Uid, op.Gid, op.Flags))
	case fsvirt.OpTruncatePath:
		return result(0, unix.Truncate(x.path(op.Path), op.Size))
	case fsvirt.OpUtimens:
		ts := []unix.Timespec{{Sec: op.Time}, {Sec: op.Time}}
		return result(0, unix.UtimesNanoAt(dirfd, path, ts, op.Flags))
	case fsvirt.OpMknod:
		return result(0, unix.Mknodat(dirfd, path, op.Mode, 0))
	case fsvirt.OpSetxattr:
		return result(0, unix.Setxattr(x.path(op.Path), op.Name, op.Data, op.Flags))
	case fsvirt.OpGetxattr:
		buf := make([]byte, op.Size)
		n, err := unix.Getxattr(x.path(op.Path), op.Name, buf)
		if err != nil || op.Size == 0 {
			return result(n, err)
		}
		return fsvirt.Outcome{Ret: int64(n), Data: buf[:n]}
	case fsvirt.OpListxattr:
		return x.listxattr(x.path(op.Path), op.Size)
	case fsvirt.OpRemovexattr:
		return result(0, unix.Removexattr(x.path(op.Path), op.Name))
	}
	return fsvirt.Fail(unix.ENOSYS)
}

// install gives fd the lowest free handle.
func (x *Exec) install(fd int) fsvirt.Handle {
	h := slices.Index(x.fds, -1)
	if h < 0 {
		h = len(x.fds)
		x.fds = append(x.fds, fd)
	}
	x.fds[h] = fd
	return fsvirt.Handle(h)
}

// target is a symlink target as stored: an absolute one is taken from the
// root, as absolute paths are.
func (x *Exec) target(t string) string {
	if strings.HasPrefix(t, "/") {
		return x.root + t
	}
	return t
}

// untarget undoes target.
func (x *Exec) untarget(t string) string {
	if rest, ok := strings.CutPrefix(t, x.root); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
		return "/" + strings.TrimPrefix(rest, "/")
	}
	return t
}

func (x *Exec) stat(dirfd int, path string, flags int) fsvirt.Outcome {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, path, &st, flags); err != nil {
		return fail(err)
	}
	s := StatOf(&st)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		// The size of the target as the op gave it.
		buf := make([]byte, unix.PathMax)
		if n, err := unix.Readlinkat(dirfd, path, buf); err == nil {
			s.Size = int64(len(x.untarget(string(buf[:n]))))
		}
	case unix.S_IFDIR:
		if x.CountDirLinks {
			s.Nlink = countDirLinks(dirfd, path)
		}
	}
	return fsvirt.Outcome{Stat: s}
}

func (x *Exec) readlink(dirfd int, path string, size int64) fsvirt.Outcome {
	if size <= 0 {
		return fail(unix.EINVAL) // before the buffer is made
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, path, buf)
	if err != nil {
		return fail(err)
	}
	t := x.untarget(string(buf[:n]))
	t = t[:min(int64(len(t)), size)]
	return fsvirt.Outcome{Ret: int64(len(t)), Data: []byte(t)}
}

// countDirLinks is 2 plus the subdirectories of the directory at dirfd and
// path, or 0 if it was removed.
func countDirLinks(dirfd int, path string) uint64 {
	switch {
	case path == "" && dirfd == unix.AT_FDCWD: // the working directory (NewInCwd)
		path = "."
	case path == "":
		dirfd, path = unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(dirfd)
	}
	fd, err := unix.Openat(dirfd, path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	o := getdents(fd)
	if o.Errno != 0 {
		return 0
	}
	n := uint64(0)
	for _, d := range o.Dirents {
		if d.Type == unix.DT_DIR {
			n++ // "." and ".." count for the 2
		}
	}
	return n
}

// getdentsChunk is small, so that listing a directory takes several calls.
const getdentsChunk = 64

// getdents lists the directory fd from its start to its end, and rewinds it
// again: the offset at the end is file-system specific (on ext4, a read
// from there fails with EINVAL rather than EISDIR).
func getdents(fd int) fsvirt.Outcome {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if _, err := unix.Seek(fd, 0, unix.SEEK_SET); err != nil {
			return fail(err)
		}
		defer unix.Seek(fd, 0, unix.SEEK_SET)
	}
	ents := []fsvirt.Dirent{}
	buf := make([]byte, getdentsChunk)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return fail(err)
		}
		if n == 0 {
			break
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := int(b[16]) | int(b[17])<<8
			name, _, _ := strings.Cut(string(b[19:reclen]), "\x00")
			ents = append(ents, fsvirt.Dirent{Name: name, Type: b[18]})
			b = b[reclen:]
		}
	}
	slices.SortFunc(ents, func(a, b fsvirt.Dirent) int { return strings.Compare(a.Name, b.Name) })
	return fsvirt.Outcome{Ret: int64(len(ents)), Dirents: ents}
}

func (x *Exec) chdir(unsafePath string) fsvirt.Outcome {
	if x.cwd {
		_, p := x.at(fsvirt.AtCWD, unsafePath)
		return result(0, unix.Chdir(p))
	}
	dirfd, p := x.at(fsvirt.AtCWD, unsafePath)
	if unsafePath == "" {
		return fail(unix.ENOENT)
	}
	fd, err := unix.Openat(dirfd, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	x.setCwd(fd)
	return fsvirt.Outcome{}
}

func (x *Exec) fchdir(fd int) fsvirt.Outcome {
	if x.cwd {
		return result(0, unix.Fchdir(fd))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fail(unix.ENOTDIR)
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	x.setCwd(dup)
	return fsvirt.Outcome{}
}

func (x *Exec) setCwd(fd int) {
	if x.cwdFd >= 0 {
		unix.Close(x.cwdFd)
	}
	x.cwdFd = fd
}

// getcwd returns the working directory's path below the root.
func (x *Exec) getcwd() fsvirt.Outcome {
	var wd string
	switch {
	case x.cwd:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Getcwd(buf)
		if err != nil {
			return fail(err)
		}
		wd = string(buf[:n-1])
	case x.cwdFd < 0:
		wd = x.root
	default:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(x.cwdFd), buf)
		if err != nil {
			return fail(err)
		}
		wd = string(buf[:n])
		if strings.HasSuffix(wd, " (deleted)") {
			return fail(unix.ENOENT)
		}
	}
	root := x.root
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	rel, ok := strings.CutPrefix(wd, root)
	if !ok || rel != "" && !strings.HasPrefix(rel, "/") {
		return fail(unix.ENOENT) // outside the tree
	}
	if rel == "" {
		rel = "/"
	}
	return fsvirt.Outcome{Ret: int64(len(rel) + 1), Data: []byte(rel)}
}

// listxattr lists the names sorted: their order is file-system specific.
func (x *Exec) listxattr(path string, size int64) fsvirt.Outcome {
	bufSize := size
	if x.FilteredListxattr {
		bufSize = 1 << 16 // XATTR_LIST_MAX
	}
	buf := make([]byte, bufSize)
	n, err := unix.Listxattr(path, buf)
	switch {
	case err != nil:
		return fail(err)
	case size == 0:
		return fsvirt.Outcome{Ret: int64(n)}
	case int64(n) > size:
		return fail(unix.ERANGE)
	}
	names := strings.SplitAfter(string(buf[:n]), "\x00")
	slices.Sort(names)
	return fsvirt.Outcome{Ret: int64(n), Data: []byte(strings.Join(names, ""))}
}

// Close closes every open handle and the working directory.
func (x *Exec) Close() error {
	var errs []error
	for h, fd := range x.fds {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
			x.fds[h] = -1
		}
	}
	if x.cwdFd >= 0 {
		errs = append(errs, unix.Close(x.cwdFd))
		x.cwdFd = -1
	}
	return errors.Join(errs...)
}

// StatOf keeps the fields of st that [fsvirt.Stat] promises.
func StatOf(st *unix.Stat_t) fsvirt.Stat {
	s := fsvirt.Stat{Mode: st.Mode, Size: st.Size, Nlink: st.Nlink, Uid: st.Uid, Gid: st.Gid}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		s.Size = 0
	}
	return s
}

func result(n int, err error) fsvirt.Outcome {
	if err != nil {
		return fail(err)
	}
	return fsvirt.Outcome{Ret: int64(n)}
}

// fail turns a syscall error into its outcome. Anything that is not an errno
// is a bug here: the unix package returns bare errnos.
func fail(err error) fsvirt.Outcome {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		panic("[bug] sysexec: not an errno: " + err.Error())
	}
	return fsvirt.Fail(errno)
}
