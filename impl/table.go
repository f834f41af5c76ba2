package impl

import (
	"sort"

	"golang.org/x/sys/unix"
)

// Handling is what the filter and the supervisor do with a syscall.
type Handling uint8

const (
	// Passed syscalls run untouched: the filter allows them without notifying.
	Passed Handling = iota
	// Virtualized syscalls notify the supervisor, which answers them in the invocation's view.
	Virtualized
	// Denied syscalls fail with the entry's errno without reaching the supervisor.
	Denied
)

func (h Handling) String() string {
	switch h {
	case Virtualized:
		return "virtualized"
	case Denied:
		return "denied"
	}
	return "passed"
}

// sysEntry is one row of the syscall table: the single source of truth from which the BPF filter,
// `fsvirt syscalls` and the coverage table in the README are produced.
type sysEntry struct {
	nr       int
	name     string
	handling Handling
	errno    unix.Errno // Denied: what the caller gets
	decode   decoder    // Virtualized: registers and tracee memory in, an op out
	note     string
}

// Errnos for denied calls. ENOSYS tells programs the facility does not exist here (io_uring users
// fall back to ordinary syscalls); EPERM says the call is refused by policy.
const (
	errnoBypass = unix.ENOSYS
	errnoPolicy = unix.EPERM
)

// table lists every syscall fsvirt treats specially on x86-64. Anything not listed is passed.
// Each row stays on one line, however long, so that the table reads as one: a syscall a line,
// found by its name with grep, its columns in the same order on every line.
var table = []sysEntry{
	{nr: unix.SYS_OPEN, name: "open", handling: Virtualized, decode: decodeOpen},
	{nr: unix.SYS_OPENAT, name: "openat", handling: Virtualized, decode: decodeOpenat},
	{nr: unix.SYS_OPENAT2, name: "openat2", handling: Virtualized, decode: decodeOpenat2},
	{nr: unix.SYS_CREAT, name: "creat", handling: Virtualized, decode: decodeCreat},

	// Ways to reach files without a path the supervisor sees
	// (docs/kernel.md, "Paths the filter never sees").
	{nr: unix.SYS_IO_URING_SETUP, name: "io_uring_setup", handling: Denied, errno: errnoBypass, note: "io_uring opens files without passing the filter"},
	{nr: unix.SYS_IO_URING_ENTER, name: "io_uring_enter", handling: Denied, errno: errnoBypass, note: "io_uring opens files without passing the filter"},
	{nr: unix.SYS_IO_URING_REGISTER, name: "io_uring_register", handling: Denied, errno: errnoBypass, note: "io_uring opens files without passing the filter"},
	{nr: unix.SYS_OPEN_BY_HANDLE_AT, name: "open_by_handle_at", handling: Denied, errno: errnoBypass, note: "opens by inode handle, bypassing path resolution"},
	{nr: unix.SYS_NAME_TO_HANDLE_AT, name: "name_to_handle_at", handling: Denied, errno: errnoBypass, note: "produces handles for open_by_handle_at"},

	// A page whose faults the task handles would stall the supervisor's reads of the task's memory
	// (see supervisor; docs/kernel.md, "The supervisor must not wait"). /dev/userfaultfd's ioctl is
	// refused as well (ioctlFSTypes).
	{nr: unix.SYS_USERFAULTFD, name: "userfaultfd", handling: Denied, errno: errnoPolicy, note: "its pages would stall the supervisor's reads of the task's memory"},

	// Calls that change what paths mean for the caller, so the supervisor would resolve
	// differently.
	{nr: unix.SYS_CHROOT, name: "chroot", handling: Denied, errno: errnoPolicy, note: "changes the caller's root"},
	{nr: unix.SYS_PIVOT_ROOT, name: "pivot_root", handling: Denied, errno: errnoPolicy, note: "changes the caller's root"},
	{nr: unix.SYS_MOUNT, name: "mount", handling: Denied, errno: errnoPolicy, note: "mount family"},
	{nr: unix.SYS_UMOUNT2, name: "umount2", handling: Denied, errno: errnoPolicy, note: "mount family"},
	{nr: unix.SYS_OPEN_TREE, name: "open_tree", handling: Denied, errno: errnoPolicy, note: "mount family"},
	{nr: unix.SYS_MOVE_MOUNT, name: "move_mount", handling: Denied, errno: errnoPolicy, note: "mount family"},
	{nr: unix.SYS_FSOPEN, name: "fsopen", handling: Denied, errno: errnoPolicy, note: "mount family"},
	{nr: unix.SYS_FSCONFIG, name: "fsconfig", handling: Denied, errno: errnoPolicy, note: "mount family"},
	{nr: unix.SYS_FSMOUNT, name: "fsmount", handling: Denied, errno: errnoPolicy, note: "mount family"},
	{nr: unix.SYS_FSPICK, name: "fspick", handling: Denied, errno: errnoPolicy, note: "mount family"},
	{nr: unix.SYS_MOUNT_SETATTR, name: "mount_setattr", handling: Denied, errno: errnoPolicy, note: "mount family"},
	{nr: unix.SYS_FANOTIFY_INIT, name: "fanotify_init", handling: Denied, errno: errnoPolicy, note: "opens files by event, bypassing the filter"},
	{nr: unix.SYS_OPEN_TREE_ATTR, name: "open_tree_attr", handling: Denied, errno: errnoPolicy, note: "mount family"},

	// Path-taking calls without a virtualized form: denied, never passed through.
	{nr: unix.SYS_FANOTIFY_MARK, name: "fanotify_mark", handling: Denied, errno: errnoBypass, note: noPath},
	{nr: unix.SYS_ACCT, name: "acct", handling: Denied, errno: errnoBypass, note: noPath},
	{nr: unix.SYS_SWAPON, name: "swapon", handling: Denied, errno: errnoBypass, note: noPath},
	{nr: unix.SYS_SWAPOFF, name: "swapoff", handling: Denied, errno: errnoBypass, note: noPath},
	{nr: unix.SYS_QUOTACTL, name: "quotactl", handling: Denied, errno: errnoBypass, note: noPath},
	{nr: unix.SYS_USELIB, name: "uselib", handling: Denied, errno: errnoBypass, note: noPath},
	{nr: unix.SYS_SETXATTRAT, name: "setxattrat", handling: Denied, errno: errnoBypass, note: noPath + " (Linux 6.13)"},
	{nr: unix.SYS_GETXATTRAT, name: "getxattrat", handling: Denied, errno: errnoBypass, note: noPath + " (Linux 6.13)"},
	{nr: unix.SYS_LISTXATTRAT, name: "listxattrat", handling: Denied, errno: errnoBypass, note: noPath + " (Linux 6.13)"},
	{nr: unix.SYS_REMOVEXATTRAT, name: "removexattrat", handling: Denied, errno: errnoBypass, note: noPath + " (Linux 6.13)"},
	{nr: unix.SYS_FILE_GETATTR, name: "file_getattr", handling: Denied, errno: errnoBypass, note: noPath + " (Linux 6.17)"},
	{nr: unix.SYS_FILE_SETATTR, name: "file_setattr", handling: Denied, errno: errnoBypass, note: noPath + " (Linux 6.17)"},

	// Other path calls: answered in the view (impl/pathops.go dispatches, to one file per family).
	// Legacy and *at forms decode into one form each.
	{nr: unix.SYS_MKDIR, name: "mkdir", handling: Virtualized, decode: decodeMkdir},
	{nr: unix.SYS_MKDIRAT, name: "mkdirat", handling: Virtualized, decode: decodeMkdirat},
	{nr: unix.SYS_RMDIR, name: "rmdir", handling: Virtualized, decode: decodeRmdir},
	{nr: unix.SYS_UNLINK, name: "unlink", handling: Virtualized, decode: decodeUnlink},
	{nr: unix.SYS_UNLINKAT, name: "unlinkat", handling: Virtualized, decode: decodeUnlinkat},
	{nr: unix.SYS_RENAME, name: "rename", handling: Virtualized, decode: decodeRename},
	{nr: unix.SYS_RENAMEAT, name: "renameat", handling: Virtualized, decode: decodeRenameat},
	{nr: unix.SYS_RENAMEAT2, name: "renameat2", handling: Virtualized, decode: decodeRenameat2},
	{nr: unix.SYS_LINK, name: "link", handling: Virtualized, decode: decodeLink},
	{nr: unix.SYS_LINKAT, name: "linkat", handling: Virtualized, decode: decodeLinkat},
	{nr: unix.SYS_SYMLINK, name: "symlink", handling: Virtualized, decode: decodeSymlink},
	{nr: unix.SYS_SYMLINKAT, name: "symlinkat", handling: Virtualized, decode: decodeSymlinkat},
	{nr: unix.SYS_CHMOD, name: "chmod", handling: Virtualized, decode: decodeChmod},
	{nr: unix.SYS_FCHMOD, name: "fchmod", handling: Virtualized, decode: decodeFchmod},
	{nr: unix.SYS_FCHMODAT, name: "fchmodat", handling: Virtualized, decode: decodeFchmodat},
	{nr: unix.SYS_FCHMODAT2, name: "fchmodat2", handling: Virtualized, decode: decodeFchmodat2},
	{nr: unix.SYS_CHOWN, name: "chown", handling: Virtualized, decode: decodeChown},
	{nr: unix.SYS_FCHOWN, name: "fchown", handling: Virtualized, decode: decodeFchown},
	{nr: unix.SYS_LCHOWN, name: "lchown", handling: Virtualized, decode: decodeLchown},
	{nr: unix.SYS_FCHOWNAT, name: "fchownat", handling: Virtualized, decode: decodeFchownat},
	{nr: unix.SYS_TRUNCATE, name: "truncate", handling: Virtualized, decode: decodeTruncate},
	{nr: unix.SYS_UTIME, name: "utime", handling: Virtualized, decode: decodeUtime},
	{nr: unix.SYS_UTIMES, name: "utimes", handling: Virtualized, decode: decodeUtimes},
	{nr: unix.SYS_UTIMENSAT, name: "utimensat", handling: Virtualized, decode: decodeUtimensat},
	{nr: unix.SYS_FUTIMESAT, name: "futimesat", handling: Virtualized, decode: decodeFutimesat},
	{nr: unix.SYS_MKNOD, name: "mknod", handling: Virtualized, decode: decodeMknod},
	{nr: unix.SYS_MKNODAT, name: "mknodat", handling: Virtualized, decode: decodeMknodat},
	{nr: unix.SYS_SETXATTR, name: "setxattr", handling: Virtualized, decode: setxattrDecoder(false, false)},
	{nr: unix.SYS_LSETXATTR, name: "lsetxattr", handling: Virtualized, decode: setxattrDecoder(true, false)},
	{nr: unix.SYS_FSETXATTR, name: "fsetxattr", handling: Virtualized, decode: setxattrDecoder(false, true)},
	{nr: unix.SYS_REMOVEXATTR, name: "removexattr", handling: Virtualized, decode: removexattrDecoder(false, false)},
	{nr: unix.SYS_LREMOVEXATTR, name: "lremovexattr", handling: Virtualized, decode: removexattrDecoder(true, false)},
	{nr: unix.SYS_FREMOVEXATTR, name: "fremovexattr", handling: Virtualized, decode: removexattrDecoder(false, true)},

	// Read-only path calls: left to the kernel (CONTINUE) when the path leads where it does on the
	// host, else answered by the supervisor from the view.
	{nr: unix.SYS_STAT, name: "stat", handling: Virtualized, decode: decodeStat},
	{nr: unix.SYS_LSTAT, name: "lstat", handling: Virtualized, decode: decodeLstat},
	{nr: unix.SYS_NEWFSTATAT, name: "newfstatat", handling: Virtualized, decode: decodeNewfstatat},
	{nr: unix.SYS_STATX, name: "statx", handling: Virtualized, decode: decodeStatx},
	{nr: unix.SYS_ACCESS, name: "access", handling: Virtualized, decode: decodeAccess},
	{nr: unix.SYS_FACCESSAT, name: "faccessat", handling: Virtualized, decode: decodeFaccessat},
	{nr: unix.SYS_FACCESSAT2, name: "faccessat2", handling: Virtualized, decode: decodeFaccessat2},
	{nr: unix.SYS_READLINK, name: "readlink", handling: Virtualized, decode: decodeReadlink},
	{nr: unix.SYS_READLINKAT, name: "readlinkat", handling: Virtualized, decode: decodeReadlinkat},
	{nr: unix.SYS_BIND, name: "bind", handling: Virtualized, decode: sockaddrDecoder(false), note: "a UNIX socket path is created in the private layer"},
	{nr: unix.SYS_CONNECT, name: "connect", handling: Virtualized, decode: sockaddrDecoder(true), note: "a UNIX socket path is resolved in the view"},
	{nr: unix.SYS_GETDENTS64, name: "getdents64", note: "fd-based: a directory the view changed is opened from its complete private copy"},
	{nr: unix.SYS_GETCWD, name: "getcwd", handling: Virtualized, decode: decodeGetcwd, note: "the view path of the working directory"},
	{nr: unix.SYS_CHDIR, name: "chdir", handling: Virtualized, decode: decodeChdir},
	{nr: unix.SYS_FCHDIR, name: "fchdir", handling: Virtualized, decode: decodeFchdir},
	{nr: unix.SYS_EXECVE, name: "execve", handling: Virtualized, decode: decodeExecve},
	{nr: unix.SYS_EXECVEAT, name: "execveat", handling: Virtualized, decode: decodeExecveat},
	{nr: unix.SYS_GETXATTR, name: "getxattr", handling: Virtualized, decode: getxattrDecoder(false)},
	{nr: unix.SYS_LGETXATTR, name: "lgetxattr", handling: Virtualized, decode: getxattrDecoder(true)},
	{nr: unix.SYS_LISTXATTR, name: "listxattr", handling: Virtualized, decode: listxattrDecoder(false)},
	{nr: unix.SYS_LLISTXATTR, name: "llistxattr", handling: Virtualized, decode: listxattrDecoder(true)},
	{nr: unix.SYS_STATFS, name: "statfs", handling: Virtualized, decode: decodeStatfs},
	{nr: unix.SYS_IOCTL, name: "ioctl", handling: Virtualized, decode: decodeIoctl, note: "only file-system commands that can change a file notify (impl/ioctl.go); the rest pass"},

	// Ways to reach the supervisor itself: its memory, its descriptors (the listener among them).
	{nr: unix.SYS_PTRACE, name: "ptrace", handling: Denied, errno: errnoPolicy, note: "could take over the supervisor or another task of the view"},
	{nr: unix.SYS_PROCESS_VM_READV, name: "process_vm_readv", handling: Denied, errno: errnoPolicy, note: "reads another process's memory, the supervisor's included"},
	{nr: unix.SYS_PROCESS_VM_WRITEV, name: "process_vm_writev", handling: Denied, errno: errnoPolicy, note: "writes another process's memory, the supervisor's included"},
	{nr: unix.SYS_PIDFD_GETFD, name: "pidfd_getfd", handling: Denied, errno: errnoPolicy, note: "takes another process's descriptors, the supervisor's listener included"},
	{nr: unix.SYS_INOTIFY_ADD_WATCH, name: "inotify_add_watch", handling: Virtualized, decode: decodeInotifyAddWatch},
}

const noPath = "takes a path the view does not virtualize"

// Non-native architectures (32-bit int 0x80, x32) get this errno from the filter
// (docs/kernel.md, "Paths the filter never sees").
const errnoBadArch = unix.ENOSYS

var byNr = func() map[int]*sysEntry {
	m := make(map[int]*sysEntry, len(table))
	for i := range table {
		e := &table[i]
		if m[e.nr] != nil {
			panic("[bug] syscall table lists " + e.name + " twice")
		}
		if (e.handling == Virtualized) != (e.decode != nil) {
			panic("[bug] syscall table: " + e.name + " needs a decoder exactly when virtualized")
		}
		m[e.nr] = e
	}
	return m
}()

// SyscallInfo describes one row of the syscall table.
type SyscallInfo struct {
	Name     string `json:"name"`
	Nr       int    `json:"nr"`
	Handling string `json:"handling"`
	Errno    string `json:"errno,omitempty"`
	Note     string `json:"note,omitempty"`
}

// Syscalls returns the syscall table sorted by number. Syscalls not listed are passed untouched;
// syscalls of a non-native architecture (i386, x32) fail with ENOSYS.
func Syscalls() []SyscallInfo {
	out := make([]SyscallInfo, 0, len(table))
	for _, e := range table {
		si := SyscallInfo{Name: e.name, Nr: e.nr, Handling: e.handling.String(), Note: e.note}
		if e.handling == Denied {
			si.Errno = unix.ErrnoName(e.errno)
		}
		out = append(out, si)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Nr < out[j].Nr })
	return out
}
