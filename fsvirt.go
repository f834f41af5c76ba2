package fsvirt

import (
	"fmt"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Inv identifies an invocation. The caller picks the number; an implementation
// must accept any Inv that is not live.
type Inv int

// Handle names an open file of one invocation. Implementations assign the
// lowest free handle, starting at 0, as the kernel does with fd numbers.
type Handle int32

// AtCWD as a dirfd resolves a relative path from the invocation's working
// directory, which starts at the tree root.
const AtCWD Handle = unix.AT_FDCWD

// OpKind is the system call an [Op] stands for.
type OpKind uint8

// The operations. Unless a comment says otherwise, an op on a handle returns
// EBADF when Fd is not open, and an op on a path:
//   - resolves a relative Path from Dirfd, or from the invocation's working
//     directory when Dirfd is AtCWD; Dirfd is ignored when Path is absolute;
//   - fails with EBADF when Path is relative and Dirfd is neither AtCWD nor
//     open, ENOTDIR when Dirfd is not a directory or a non-final component
//     is not one, ENOENT when a component is missing (also any name looked
//     up in a removed directory) or Path is empty, ELOOP after 40
//     symlinks, and EACCES when the invocation's user ([Cred]) may not
//     search a directory it looks a name up in;
//   - follows a final symlink unless its comment says otherwise, and always
//     when Path ends in '/', which the final component must then be a
//     directory for (ENOTDIR).
//
// Unless the invocation runs as root, ops are refused as the kernel refuses
// its user (EACCES, EPERM): see the model's package doc.
//
// Ops that create a name (OpMkdir, OpMknod, OpSymlink, the new name of
// OpLink) fail with EEXIST when it exists, symlinks included, or when Path
// ends in ".", ".." or is "/"; with ENOENT when its directory was removed, or
// Path ends in '/' and names nothing (but for OpMkdir).
const (
	// OpOpen is openat(Dirfd, Path, Flags, Mode). It returns the new handle.
	// Flags are Linux open flags; O_PATH drops all but O_DIRECTORY,
	// O_NOFOLLOW and O_CLOEXEC, as open(2) does. Errors:
	//   - ENOTDIR: the final component with O_DIRECTORY or a trailing slash,
	//     or the target of O_TMPFILE is not a directory;
	//   - ENOENT: a component is missing and is not the final one of an
	//     O_CREAT open; a symlink dangles;
	//   - ELOOP: the final component is a symlink and O_NOFOLLOW is set
	//     without O_PATH;
	//   - EEXIST: O_CREAT|O_EXCL and the final component exists (symlinks
	//     are not followed);
	//   - EISDIR: O_CREAT on a directory, on ".", ".." or a path with a
	//     trailing slash; a directory opened with O_WRONLY, O_RDWR or O_TRUNC;
	//   - EINVAL: O_CREAT with O_DIRECTORY (so also with O_TMPFILE);
	//     O_TMPFILE without write access.
	// Precondition: Path is not empty; a FIFO is opened with O_PATH only
	// (anything else blocks).
	OpOpen OpKind = iota + 1
	// OpRead is read(Fd, Size): up to Size bytes from the fd's offset, which
	// advances. Errors: EBADF (also O_PATH or O_WRONLY fds), EISDIR.
	OpRead
	// OpWrite is write(Fd, Data) at the fd's offset, or at the end with
	// O_APPEND; the offset advances. Errors: EBADF (also O_PATH or O_RDONLY
	// fds).
	OpWrite
	// OpPwrite is pwrite(Fd, Data, Offset); with O_APPEND Linux writes at the
	// end. The fd's offset does not move. Errors: EINVAL (Offset < 0, checked
	// first), EBADF (also O_PATH or O_RDONLY fds).
	OpPwrite
	// OpSeek is lseek(Fd, Offset, Whence) with SEEK_SET, SEEK_CUR or SEEK_END.
	// It returns the new offset. Errors: EBADF (also O_PATH fds), EINVAL (a
	// negative result or another whence). Precondition: Fd is not a
	// directory, where the result is file-system specific.
	OpSeek
	// OpTruncate is ftruncate(Fd, Size). Errors: EINVAL (Size < 0, checked
	// first; the fd is not a regular file open for writing), EBADF (also
	// O_PATH fds).
	OpTruncate
	// OpStat is fstat(Fd); O_PATH fds are fine. Errors: EBADF.
	OpStat
	// OpClose is close(Fd). Errors: EBADF.
	OpClose

	// OpFstatat is newfstatat(Dirfd, Path, Flags) with AT_SYMLINK_NOFOLLOW
	// (the final symlink itself) and AT_EMPTY_PATH (an empty Path: Dirfd
	// itself, as OpStat, or the working directory). Errors: EINVAL (another
	// flag).
	OpFstatat
	// OpAccess is faccessat(Dirfd, Path, Mode) with F_OK, R_OK, W_OK, X_OK.
	// Errors: EINVAL (another mode bit, checked first); EACCES (the
	// permission bits refuse it; root is refused only X_OK on a file without
	// any execute bit).
	OpAccess
	// OpReadlink is readlinkat(Dirfd, Path, Size) into a buffer of Size
	// bytes: the target, cut to Size. The final component is not followed.
	// Errors: EINVAL (Size <= 0, checked first; not a symlink).
	OpReadlink
	// OpGetdents lists the directory Fd: lseek(Fd, 0, SEEK_SET), then
	// getdents64 in small chunks to the end, then lseek(Fd, 0, SEEK_SET)
	// again (the offset at the end is file-system specific). It returns the number of
	// entries; the outcome's Dirents hold them sorted, "." and ".."
	// included. Errors: EBADF (also O_PATH fds), ENOTDIR, ENOENT (the
	// directory was removed).
	OpGetdents
	// OpChdir is chdir(Path), from the working directory. Errors: ENOTDIR.
	OpChdir
	// OpFchdir is fchdir(Fd); O_PATH fds are fine. Errors: EBADF, ENOTDIR.
	OpFchdir
	// OpGetcwd is getcwd: the working directory's path in the view, in Data.
	// Errors: ENOENT (it was removed).
	OpGetcwd
	// OpMkdir is mkdirat(Dirfd, Path, Mode); Mode is cut by the umask.
	OpMkdir
	// OpUnlink is unlinkat(Dirfd, Path, Flags); the final component is not
	// followed. Without AT_REMOVEDIR it removes a non-directory. Errors:
	// EISDIR (a directory, or Path ends in ".", ".." or is "/"), ENOTDIR
	// (Path ends in '/' after a non-directory). With AT_REMOVEDIR it
	// removes an empty directory: ENOTDIR (not one), ENOTEMPTY (it has
	// entries, or Path ends in ".."), EINVAL (Path ends in "."), EBUSY ("/").
	// EINVAL for another flag.
	OpUnlink
	// OpRename is renameat2(Dirfd, Path, NewDirfd, NewPath, Flags) with 0,
	// RENAME_NOREPLACE or RENAME_EXCHANGE; final components are not
	// followed. Renaming a name onto itself, or onto another link of the
	// same file, does nothing. Errors:
	//   - EINVAL: both flags or another one; moving a directory under itself;
	//   - EBUSY: either path ends in ".", ".." or is "/" (EEXIST for the new
	//     one with RENAME_NOREPLACE);
	//   - ENOENT: Path names nothing; NewPath names nothing with
	//     RENAME_EXCHANGE;
	//   - EEXIST: RENAME_NOREPLACE and NewPath exists;
	//   - ENOTDIR: a trailing slash on a non-directory; a directory onto a
	//     non-directory;
	//   - EISDIR: a non-directory onto a directory;
	//   - ENOTEMPTY: onto a directory with entries, or onto an ancestor.
	OpRename
	// OpLink is linkat(Dirfd, Path, NewDirfd, NewPath, Flags): a new name
	// for the file at Path, followed only with AT_SYMLINK_FOLLOW. Errors:
	// EINVAL (another flag), EPERM (a directory).
	OpLink
	// OpSymlink is symlinkat(Data, Dirfd, Path): a symlink to Data. Errors:
	// ENOENT (Data is empty).
	OpSymlink
	// OpChmod is fchmodat(Dirfd, Path, Mode, 0); Mode keeps its setuid,
	// setgid and sticky bits.
	OpChmod
	// OpChown is fchownat(Dirfd, Path, Uid, Gid, Flags) with
	// AT_SYMLINK_NOFOLLOW; -1 keeps an id. It clears S_ISUID of a
	// non-directory, and S_ISGID when S_IXGRP is set. Errors: EINVAL
	// (another flag).
	OpChown
	// OpTruncatePath is truncate(Path, Size), from the working directory.
	// Errors: EINVAL (Size < 0, checked first; not a regular file), EISDIR.
	OpTruncatePath
	// OpUtimens is utimensat(Dirfd, Path, {Time, Time}, Flags) with
	// AT_SYMLINK_NOFOLLOW: access and modification time set to Time
	// seconds. Errors: EINVAL (another flag).
	OpUtimens
	// OpMknod is mknodat(Dirfd, Path, Mode, 0) for a FIFO (S_IFIFO) or a
	// regular file (S_IFREG or no type); the permission bits are cut by the
	// umask.
	OpMknod
	// OpSetxattr is setxattr(Path, Name, Data, Flags) with XATTR_CREATE or
	// XATTR_REPLACE, from the working directory. Errors: EINVAL (another
	// flag, checked first), EPERM (a user.* name on neither a regular file
	// nor a directory), EEXIST (XATTR_CREATE and Name is set), ENODATA
	// (XATTR_REPLACE and it is not).
	OpSetxattr
	// OpGetxattr is getxattr(Path, Name, Size): the value in Data and its
	// length, or with Size 0 just the length. Errors: ENODATA (not set),
	// ERANGE (longer than Size).
	OpGetxattr
	// OpListxattr is listxattr(Path, Size): the names, sorted, each ended by
	// a NUL, in Data; with Size 0 just their length. Errors: ERANGE (longer
	// than Size).
	OpListxattr
	// OpRemovexattr is removexattr(Path, Name). Errors: EPERM as for
	// OpSetxattr, ENODATA (not set).
	OpRemovexattr
)

var kindNames = [...]string{
	OpOpen: "open", OpRead: "read", OpWrite: "write", OpPwrite: "pwrite",
	OpSeek: "lseek", OpTruncate: "ftruncate", OpStat: "fstat", OpClose: "close",
	OpFstatat: "newfstatat", OpAccess: "faccessat", OpReadlink: "readlinkat", OpGetdents: "getdents64",
	OpChdir: "chdir", OpFchdir: "fchdir", OpGetcwd: "getcwd", OpMkdir: "mkdirat", OpUnlink: "unlinkat",
	OpRename: "renameat2", OpLink: "linkat", OpSymlink: "symlinkat", OpChmod: "fchmodat",
	OpChown: "fchownat", OpTruncatePath: "truncate", OpUtimens: "utimensat", OpMknod: "mknodat",
	OpSetxattr: "setxattr", OpGetxattr: "getxattr", OpListxattr: "listxattr", OpRemovexattr: "removexattr",
}

func (k OpKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", k)
}

// Op is one decoded file-system operation. Fields a kind does not use are zero.
type Op struct {
	Kind     OpKind
	Fd       Handle // ops on a handle
	Dirfd    Handle // ops on a path; AtCWD for those without a dirfd
	Path     string // ops on a path
	NewDirfd Handle // OpRename, OpLink
	NewPath  string // OpRename, OpLink
	Flags    int    // OpOpen: open flags; others: AT_*, RENAME_* or XATTR_* flags
	Mode     uint32 // OpOpen, OpMkdir, OpChmod: permission bits; OpMknod: and type; OpAccess: F_OK...
	Data     []byte // OpWrite, OpPwrite, OpSetxattr: the bytes; OpSymlink: the target
	Name     string // xattr ops
	Offset   int64  // OpPwrite, OpSeek
	Whence   int    // OpSeek
	Size     int64  // OpRead, OpTruncate, OpTruncatePath; buffer size of OpReadlink, OpGetxattr, OpListxattr
	Uid, Gid int    // OpChown
	Time     int64  // OpUtimens
}

func (op Op) String() string {
	at := func(dirfd Handle, path string) string {
		if dirfd == AtCWD {
			return fmt.Sprintf("AT_FDCWD, %q", path)
		}
		return fmt.Sprintf("%d, %q", dirfd, path)
	}
	switch op.Kind {
	case OpOpen:
		return fmt.Sprintf("open(%s, %s, %#o)", at(op.Dirfd, op.Path), FormatFlags(op.Flags), op.Mode)
	case OpRead, OpTruncate:
		return fmt.Sprintf("%v(%d, %d)", op.Kind, op.Fd, op.Size)
	case OpWrite:
		return fmt.Sprintf("write(%d, %q)", op.Fd, op.Data)
	case OpPwrite:
		return fmt.Sprintf("pwrite(%d, %q, %d)", op.Fd, op.Data, op.Offset)
	case OpSeek:
		return fmt.Sprintf("lseek(%d, %d, %s)", op.Fd, op.Offset, whenceNames[op.Whence])
	case OpFstatat, OpUnlink:
		return fmt.Sprintf("%v(%s, %s)", op.Kind, at(op.Dirfd, op.Path), formatAt(op.Flags))
	case OpAccess:
		return fmt.Sprintf("faccessat(%s, %s)", at(op.Dirfd, op.Path), formatAccess(op.Mode))
	case OpReadlink:
		return fmt.Sprintf("readlinkat(%s, %d)", at(op.Dirfd, op.Path), op.Size)
	case OpChdir, OpTruncatePath, OpListxattr:
		s := fmt.Sprintf("%v(%q", op.Kind, op.Path)
		if op.Kind != OpChdir {
			s += fmt.Sprintf(", %d", op.Size)
		}
		return s + ")"
	case OpGetcwd:
		return "getcwd()"
	case OpMkdir, OpChmod:
		return fmt.Sprintf("%v(%s, %#o)", op.Kind, at(op.Dirfd, op.Path), op.Mode)
	case OpMknod:
		typ := map[uint32]string{unix.S_IFIFO: "S_IFIFO|", unix.S_IFREG: "S_IFREG|"}[op.Mode&unix.S_IFMT]
		return fmt.Sprintf("mknodat(%s, %s%#o)", at(op.Dirfd, op.Path), typ, op.Mode&^uint32(unix.S_IFMT))
	case OpRename:
		return fmt.Sprintf("renameat2(%s, %s, %s)", at(op.Dirfd, op.Path), at(op.NewDirfd, op.NewPath), formatRename(op.Flags))
	case OpLink:
		return fmt.Sprintf("linkat(%s, %s, %s)", at(op.Dirfd, op.Path), at(op.NewDirfd, op.NewPath), formatAt(op.Flags))
	case OpSymlink:
		return fmt.Sprintf("symlinkat(%q, %s)", op.Data, at(op.Dirfd, op.Path))
	case OpChown:
		return fmt.Sprintf("fchownat(%s, %d, %d, %s)", at(op.Dirfd, op.Path), op.Uid, op.Gid, formatAt(op.Flags))
	case OpUtimens:
		return fmt.Sprintf("utimensat(%s, %d, %s)", at(op.Dirfd, op.Path), op.Time, formatAt(op.Flags))
	case OpSetxattr:
		flags := map[int]string{0: "0", unix.XATTR_CREATE: "XATTR_CREATE", unix.XATTR_REPLACE: "XATTR_REPLACE"}[op.Flags]
		return fmt.Sprintf("setxattr(%q, %q, %q, %s)", op.Path, op.Name, op.Data, flags)
	case OpGetxattr:
		return fmt.Sprintf("getxattr(%q, %q, %d)", op.Path, op.Name, op.Size)
	case OpRemovexattr:
		return fmt.Sprintf("removexattr(%q, %q)", op.Path, op.Name)
	default:
		return fmt.Sprintf("%v(%d)", op.Kind, op.Fd)
	}
}

var whenceNames = map[int]string{unix.SEEK_SET: "SEEK_SET", unix.SEEK_CUR: "SEEK_CUR", unix.SEEK_END: "SEEK_END"}

func formatBits(v int, names []struct {
	Flag int
	Name string
}) string {
	var out []string
	for _, f := range names {
		if v&f.Flag == f.Flag && f.Flag != 0 {
			out = append(out, f.Name)
			v &^= f.Flag
		}
	}
	switch {
	case v != 0:
		out = append(out, fmt.Sprintf("%#x", v))
	case len(out) == 0:
		out = append(out, "0")
	}
	return strings.Join(out, "|")
}

func formatAt(flags int) string {
	return formatBits(flags, []struct {
		Flag int
		Name string
	}{{unix.AT_SYMLINK_NOFOLLOW, "AT_SYMLINK_NOFOLLOW"}, {unix.AT_SYMLINK_FOLLOW, "AT_SYMLINK_FOLLOW"},
		{unix.AT_EMPTY_PATH, "AT_EMPTY_PATH"}, {unix.AT_REMOVEDIR, "AT_REMOVEDIR"}})
}

func formatRename(flags int) string {
	return formatBits(flags, []struct {
		Flag int
		Name string
	}{{unix.RENAME_NOREPLACE, "RENAME_NOREPLACE"}, {unix.RENAME_EXCHANGE, "RENAME_EXCHANGE"}})
}

func formatAccess(mode uint32) string {
	if mode == unix.F_OK {
		return "F_OK"
	}
	return formatBits(int(mode), []struct {
		Flag int
		Name string
	}{{unix.R_OK, "R_OK"}, {unix.W_OK, "W_OK"}, {unix.X_OK, "X_OK"}})
}

// FlagNames lists the open flags an [Op] may carry besides the access mode,
// in the order [FormatFlags] prints them.
var FlagNames = []struct {
	Flag int
	Name string
}{
	{unix.O_CREAT, "O_CREAT"}, {unix.O_EXCL, "O_EXCL"}, {unix.O_TRUNC, "O_TRUNC"},
	{unix.O_APPEND, "O_APPEND"}, {unix.O_TMPFILE, "O_TMPFILE"}, {unix.O_DIRECTORY, "O_DIRECTORY"},
	{unix.O_NOFOLLOW, "O_NOFOLLOW"}, {unix.O_PATH, "O_PATH"}, {unix.O_CLOEXEC, "O_CLOEXEC"},
}

// FormatFlags renders open flags as C would spell them.
func FormatFlags(flags int) string {
	names := []string{[...]string{"O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"}[flags&unix.O_ACCMODE]}
	rest := flags &^ unix.O_ACCMODE
	for _, f := range FlagNames {
		if rest&f.Flag == f.Flag {
			names = append(names, f.Name)
			rest &^= f.Flag
		}
	}
	if rest != 0 {
		names = append(names, fmt.Sprintf("%#x", rest))
	}
	return strings.Join(names, "|")
}

// Outcome is what an operation returned.
type Outcome struct {
	Ret     int64         // the handle, byte count, offset or entry count; -1 on error
	Errno   syscall.Errno // 0 on success
	Data    []byte        // OpRead, OpReadlink, OpGetcwd, OpGetxattr, OpListxattr
	Stat    Stat          // OpStat, OpFstatat
	Dirents []Dirent      // OpGetdents, sorted by name
}

// Fail is the outcome of an operation that failed with errno.
func Fail(errno syscall.Errno) Outcome { return Outcome{Ret: -1, Errno: errno} }

// Equal reports whether o and p are the same outcome.
func (o Outcome) Equal(p Outcome) bool {
	return o.Ret == p.Ret && o.Errno == p.Errno && string(o.Data) == string(p.Data) && o.Stat == p.Stat &&
		slices.Equal(o.Dirents, p.Dirents)
}

func (o Outcome) String() string {
	switch {
	case o.Errno != 0:
		return fmt.Sprintf("-1 %s (%v)", unix.ErrnoName(o.Errno), o.Errno)
	case o.Data != nil:
		return fmt.Sprintf("%d %q", o.Ret, o.Data)
	case o.Stat != Stat{}:
		return fmt.Sprintf("%d %v", o.Ret, o.Stat)
	case o.Dirents != nil:
		return fmt.Sprintf("%d %v", o.Ret, o.Dirents)
	}
	return fmt.Sprint(o.Ret)
}

// Dirent is one directory entry: its name and d_type (unix.DT_REG, ...).
type Dirent struct {
	Name string
	Type uint8
}

func (d Dirent) String() string {
	t := map[uint8]string{unix.DT_DIR: "/", unix.DT_LNK: "@", unix.DT_FIFO: "|", unix.DT_REG: ""}
	s, ok := t[d.Type]
	if !ok {
		s = fmt.Sprintf("?%d", d.Type)
	}
	return d.Name + s
}

// Stat holds the fstat fields the view promises. st_ino, st_dev and times
// change on copy-up and are not part of the contract. Size is 0 for
// directories, where it is file-system specific; their Nlink is 2 plus their
// subdirectories in the view, and 0 once removed.
type Stat struct {
	Mode     uint32 // file type and permission bits
	Size     int64
	Nlink    uint64
	Uid, Gid uint32
}

func (s Stat) String() string {
	types := map[uint32]string{unix.S_IFREG: "S_IFREG", unix.S_IFDIR: "S_IFDIR", unix.S_IFLNK: "S_IFLNK", unix.S_IFIFO: "S_IFIFO"}
	typ, ok := types[s.Mode&unix.S_IFMT]
	if !ok {
		typ = fmt.Sprintf("%#o", s.Mode&unix.S_IFMT)
	}
	return fmt.Sprintf("{%s|%#o size=%d nlink=%d uid=%d gid=%d}", typ, s.Mode&^uint32(unix.S_IFMT), s.Size, s.Nlink, s.Uid, s.Gid)
}

// FS is a copy-on-write view of one shared tree, with any number of live
// invocations. Calls for different invocations may not run concurrently.
type FS interface {
	// Begin starts invocation inv with an empty private layer and no open
	// handles. inv must not be live.
	Begin(inv Inv) error
	// Do runs op in inv's view. inv must be live.
	Do(inv Inv, op Op) Outcome
	// End closes inv's handles and discards its private layer. It returns an
	// error when something of inv is left behind.
	End(inv Inv) error
	// Shared reads back the shared tree.
	Shared() (Tree, error)
}

// CopyUpCounter is implemented by an FS that reports how many files a live
// invocation has copied into its private layer so far.
type CopyUpCounter interface {
	CopyUps(inv Inv) int
}

// Cred is who an invocation's ops run as: one user and group ID (real, effective, saved-set and
// file-system alike) and the supplementary groups. Uid 0 holds root's capabilities; any other
// holds none.
type Cred struct {
	Uid, Gid uint32
	Groups   []uint32
}

func (c Cred) String() string { return fmt.Sprintf("uid=%d gid=%d groups=%v", c.Uid, c.Gid, c.Groups) }

// CredSetter is implemented by an FS whose invocations can run as another user. SetCred makes
// inv's later ops run with c; an invocation starts with the credentials of the process.
type CredSetter interface {
	SetCred(inv Inv, c Cred) error
}
