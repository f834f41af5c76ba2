package fsvirt

import (
	"fmt"
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

// AtCWD as the dirfd of an open resolves a relative path from the tree root,
// which is the invocation's working directory.
const AtCWD Handle = unix.AT_FDCWD

// OpKind is the system call an [Op] stands for.
type OpKind uint8

// The operations. Unless a comment says otherwise, each returns EBADF when Fd
// is not an open handle.
const (
	// OpOpen is openat(Dirfd, Path, Flags, Mode). It returns the new handle.
	// Dirfd is ignored when Path is absolute. Flags are Linux open flags;
	// O_PATH drops all but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC, as open(2)
	// does. Errors:
	//   - EBADF: Path is relative and Dirfd is neither AtCWD nor open;
	//   - ENOTDIR: Dirfd is not a directory; a non-final component, the final
	//     one with O_DIRECTORY or a trailing slash, or the target of
	//     O_TMPFILE is not a directory;
	//   - ENOENT: a component is missing and is not the final one of an
	//     O_CREAT open; a symlink dangles;
	//   - ELOOP: more than 40 symlinks; the final component is a symlink and
	//     O_NOFOLLOW is set without O_PATH;
	//   - EEXIST: O_CREAT|O_EXCL and the final component exists (symlinks
	//     are not followed);
	//   - EISDIR: O_CREAT on a directory, on ".", ".." or a path with a
	//     trailing slash; a directory opened with O_WRONLY, O_RDWR or O_TRUNC;
	//   - EINVAL: O_CREAT with O_DIRECTORY (so also with O_TMPFILE);
	//     O_TMPFILE without write access.
	// Precondition: Path is not empty.
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
)

var kindNames = [...]string{
	OpOpen: "open", OpRead: "read", OpWrite: "write", OpPwrite: "pwrite",
	OpSeek: "lseek", OpTruncate: "ftruncate", OpStat: "fstat", OpClose: "close",
}

func (k OpKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", k)
}

// Op is one decoded file-system operation. Fields a kind does not use are zero.
type Op struct {
	Kind   OpKind
	Fd     Handle // every kind but OpOpen
	Dirfd  Handle // OpOpen
	Path   string // OpOpen
	Flags  int    // OpOpen
	Mode   uint32 // OpOpen, permission bits
	Data   []byte // OpWrite, OpPwrite
	Offset int64  // OpPwrite, OpSeek
	Whence int    // OpSeek
	Size   int64  // OpRead, OpTruncate
}

func (op Op) String() string {
	switch op.Kind {
	case OpOpen:
		dirfd := fmt.Sprint(op.Dirfd)
		if op.Dirfd == AtCWD {
			dirfd = "AT_FDCWD"
		}
		return fmt.Sprintf("open(%s, %q, %s, %#o)", dirfd, op.Path, FormatFlags(op.Flags), op.Mode)
	case OpRead, OpTruncate:
		return fmt.Sprintf("%v(%d, %d)", op.Kind, op.Fd, op.Size)
	case OpWrite:
		return fmt.Sprintf("write(%d, %q)", op.Fd, op.Data)
	case OpPwrite:
		return fmt.Sprintf("pwrite(%d, %q, %d)", op.Fd, op.Data, op.Offset)
	case OpSeek:
		return fmt.Sprintf("lseek(%d, %d, %s)", op.Fd, op.Offset, whenceNames[op.Whence])
	default:
		return fmt.Sprintf("%v(%d)", op.Kind, op.Fd)
	}
}

var whenceNames = map[int]string{unix.SEEK_SET: "SEEK_SET", unix.SEEK_CUR: "SEEK_CUR", unix.SEEK_END: "SEEK_END"}

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
	Ret   int64         // the handle, byte count or offset; -1 on error
	Errno syscall.Errno // 0 on success
	Data  []byte        // OpRead
	Stat  Stat          // OpStat
}

// Fail is the outcome of an operation that failed with errno.
func Fail(errno syscall.Errno) Outcome { return Outcome{Ret: -1, Errno: errno} }

// Equal reports whether o and p are the same outcome.
func (o Outcome) Equal(p Outcome) bool {
	return o.Ret == p.Ret && o.Errno == p.Errno && string(o.Data) == string(p.Data) && o.Stat == p.Stat
}

func (o Outcome) String() string {
	switch {
	case o.Errno != 0:
		return fmt.Sprintf("-1 %s (%v)", unix.ErrnoName(o.Errno), o.Errno)
	case o.Data != nil:
		return fmt.Sprintf("%d %q", o.Ret, o.Data)
	case o.Stat != Stat{}:
		return fmt.Sprintf("%d %v", o.Ret, o.Stat)
	}
	return fmt.Sprint(o.Ret)
}

// Stat holds the fstat fields the view promises. st_ino, st_dev and times
// change on copy-up and are not part of the contract. Size and Nlink are 0 for
// directories: they are file-system specific (overlayfs, for one, reports one
// link for a merged directory).
type Stat struct {
	Mode  uint32 // file type and permission bits
	Size  int64
	Nlink uint64
}

func (s Stat) String() string {
	types := map[uint32]string{unix.S_IFREG: "S_IFREG", unix.S_IFDIR: "S_IFDIR", unix.S_IFLNK: "S_IFLNK"}
	typ, ok := types[s.Mode&unix.S_IFMT]
	if !ok {
		typ = fmt.Sprintf("%#o", s.Mode&unix.S_IFMT)
	}
	return fmt.Sprintf("{%s|%#o size=%d nlink=%d}", typ, s.Mode&^uint32(unix.S_IFMT), s.Size, s.Nlink)
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
