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
// fall back to ordinary syscalls); EROFS says the shared tree cannot be changed this way; EPERM says
// the call is refused by policy.
const (
	errnoBypass  = unix.ENOSYS
	errnoMutator = unix.EROFS
	errnoPolicy  = unix.EPERM
)

// table lists every syscall fsvirt treats specially on x86-64. Anything not listed is passed.
var table = []sysEntry{
	{nr: unix.SYS_OPEN, name: "open", handling: Virtualized, decode: decodeOpen},
	{nr: unix.SYS_OPENAT, name: "openat", handling: Virtualized, decode: decodeOpenat},
	{nr: unix.SYS_OPENAT2, name: "openat2", handling: Virtualized, decode: decodeOpenat2},
	{nr: unix.SYS_CREAT, name: "creat", handling: Virtualized, decode: decodeCreat},

	// Ways to reach files without a path the supervisor sees (KERNEL.md, trap 6).
	{nr: unix.SYS_IO_URING_SETUP, name: "io_uring_setup", handling: Denied, errno: errnoBypass, note: "io_uring opens files without passing the filter"},
	{nr: unix.SYS_IO_URING_ENTER, name: "io_uring_enter", handling: Denied, errno: errnoBypass, note: "io_uring opens files without passing the filter"},
	{nr: unix.SYS_IO_URING_REGISTER, name: "io_uring_register", handling: Denied, errno: errnoBypass, note: "io_uring opens files without passing the filter"},
	{nr: unix.SYS_OPEN_BY_HANDLE_AT, name: "open_by_handle_at", handling: Denied, errno: errnoBypass, note: "opens by inode handle, bypassing path resolution"},
	{nr: unix.SYS_NAME_TO_HANDLE_AT, name: "name_to_handle_at", handling: Denied, errno: errnoBypass, note: "produces handles for open_by_handle_at"},

	// Calls that change what paths mean for the caller, so the supervisor would resolve differently.
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

	// Path calls that would change the shared tree and are not virtualized yet: they fail closed.
	{nr: unix.SYS_MKDIR, name: "mkdir", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_MKDIRAT, name: "mkdirat", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_RMDIR, name: "rmdir", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_UNLINK, name: "unlink", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_UNLINKAT, name: "unlinkat", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_RENAME, name: "rename", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_RENAMEAT, name: "renameat", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_RENAMEAT2, name: "renameat2", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_LINK, name: "link", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_LINKAT, name: "linkat", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_SYMLINK, name: "symlink", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_SYMLINKAT, name: "symlinkat", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_CHMOD, name: "chmod", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_FCHMOD, name: "fchmod", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_FCHMODAT, name: "fchmodat", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_FCHMODAT2, name: "fchmodat2", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_CHOWN, name: "chown", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_FCHOWN, name: "fchown", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_LCHOWN, name: "lchown", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_FCHOWNAT, name: "fchownat", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_TRUNCATE, name: "truncate", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_UTIME, name: "utime", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_UTIMES, name: "utimes", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_UTIMENSAT, name: "utimensat", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_FUTIMESAT, name: "futimesat", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_MKNOD, name: "mknod", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_MKNODAT, name: "mknodat", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_SETXATTR, name: "setxattr", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_LSETXATTR, name: "lsetxattr", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_FSETXATTR, name: "fsetxattr", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_REMOVEXATTR, name: "removexattr", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_LREMOVEXATTR, name: "lremovexattr", handling: Denied, errno: errnoMutator, note: notYet},
	{nr: unix.SYS_FREMOVEXATTR, name: "fremovexattr", handling: Denied, errno: errnoMutator, note: notYet},

	// Read-only path calls, passed through to the shared tree: they do not see the private layer yet.
	{nr: unix.SYS_STAT, name: "stat", note: notYetRead},
	{nr: unix.SYS_LSTAT, name: "lstat", note: notYetRead},
	{nr: unix.SYS_NEWFSTATAT, name: "newfstatat", note: notYetRead},
	{nr: unix.SYS_STATX, name: "statx", note: notYetRead},
	{nr: unix.SYS_ACCESS, name: "access", note: notYetRead},
	{nr: unix.SYS_FACCESSAT, name: "faccessat", note: notYetRead},
	{nr: unix.SYS_FACCESSAT2, name: "faccessat2", note: notYetRead},
	{nr: unix.SYS_READLINK, name: "readlink", note: notYetRead},
	{nr: unix.SYS_READLINKAT, name: "readlinkat", note: notYetRead},
	{nr: unix.SYS_GETDENTS64, name: "getdents64", note: notYetRead},
	{nr: unix.SYS_CHDIR, name: "chdir", note: notYetRead},
	{nr: unix.SYS_FCHDIR, name: "fchdir", note: notYetRead},
	{nr: unix.SYS_EXECVE, name: "execve", note: notYetRead},
	{nr: unix.SYS_EXECVEAT, name: "execveat", note: notYetRead},
	{nr: unix.SYS_GETXATTR, name: "getxattr", note: notYetRead},
	{nr: unix.SYS_LGETXATTR, name: "lgetxattr", note: notYetRead},
	{nr: unix.SYS_LISTXATTR, name: "listxattr", note: notYetRead},
	{nr: unix.SYS_LLISTXATTR, name: "llistxattr", note: notYetRead},
	{nr: unix.SYS_STATFS, name: "statfs", note: notYetRead},
	{nr: unix.SYS_INOTIFY_ADD_WATCH, name: "inotify_add_watch", note: notYetRead},
}

const (
	notYet     = "would change the shared tree; not virtualized yet, so it fails closed"
	notYetRead = "read-only; sees the shared tree, not the private layer, until virtualized"
)

// Non-native architectures (32-bit int 0x80, x32) get this errno from the filter.
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
