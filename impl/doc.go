// Package impl is fsvirt's engine: a seccomp user-notification supervisor that gives each
// invocation a private copy-on-write view of the file system.
//
// A BPF filter, compiled from one syscall table ([Syscalls]), sends the open family (open, openat,
// openat2, creat) of a sandboxed thread or process to a supervisor thread. The supervisor reads
// the path from the caller's memory, resolves it component by component in the caller's view and
// answers:
//
//   - a read-only open of a file the view has not changed: CONTINUE, and the kernel opens the
//     shared file (the fast policy; the strict policy opens it itself and injects the fd);
//   - an open that can write an existing shared file (write access or O_TRUNC): the file is
//     copied into the private layer once (FICLONE, else copy_file_range), opened there with the
//     caller's flags, and the fd injected (SECCOMP_IOCTL_NOTIF_ADDFD);
//   - any open of a path the view has changed or created: the private copy;
//   - the store that holds private layers does not exist in any view (ENOENT).
//
// When the invocation ends its private layer is removed, after [Invocation.Changes] (or
// [Result.Changes]) reported it.
//
// # Two ways in
//
// Thread mode ([NewPool], [Pool.Invoke]): worker goroutines, each locked for life to an OS thread
// that unshared its working directory and umask (CLONE_FS) and loaded the filter once with its own
// listener. Invoke runs a function on a free worker in a fresh view; the thread is reused by later
// invocations, which see nothing of earlier ones.
//
// Only the function's own goroutine is virtualized. Goroutines it starts run on other threads,
// which carry no filter: they see, and can change, the shared tree. So do calls the Go runtime
// makes on other threads. A function that must stay in its view does its file-system work on its
// own goroutine.
//
// Process mode ([Run]): the command and every process it starts share one view; the filter is
// loaded in the child between fork and exec and is inherited by everything it starts.
//
// # Policies and what they guarantee
//
// [PolicyFast] answers read-only opens of unchanged, plainly resolved paths with CONTINUE. The
// kernel then reads the path from the caller's memory a second time. A caller that rewrites its
// own path buffer from another filtered thread between the supervisor's check and the kernel's
// read can make the kernel open another path than the one checked, read-only: it may read a
// shared file instead of its private copy, or a file in the store that it can reach with its own
// permissions. It can never write through a CONTINUE: the flags come from registers, which cannot
// change, and only opens without write access, O_CREAT, O_TRUNC or O_TMPFILE are continued. Use
// fast for code you trust not to attack its own sandbox.
//
// [PolicyStrict] reads the path once and performs every intercepted open itself, injecting the
// result: what the kernel opens is what the supervisor checked. The exception is O_PATH, which
// the kernel cannot inject; an O_PATH fd carries no access to data and every later use of it
// passes through the filter again.
//
// # Limits of this version
//
// Only the open family is virtualized. Path calls that would change the tree (rename, unlink,
// mkdir, chmod, utimensat, ...) and fd metadata calls (fchmod, fchown, fsetxattr) fail with EROFS:
// they fail closed rather than reach the shared tree. Read-only path calls (stat, access,
// readlink, getdents64, execve, ...) pass through and see the shared tree, not the private layer.
// A descriptor opened before its file was copied up keeps reading the shared file. A copied-up
// file has a new inode number. The supervisor creates and copies files with its own credentials,
// chowning new files to the caller's fsuid and fsgid; it does not re-check permissions for a
// caller that changed its credentials.
package impl
