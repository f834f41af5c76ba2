// Package impl is fsvirt's engine: a seccomp user-notification supervisor that gives each
// invocation a private copy-on-write view of the file system.
//
// A BPF filter, compiled from one syscall table ([Syscalls]), sends every path syscall of a
// sandboxed thread or process (the open family, the stat, access, readlink and xattr families,
// mkdir, unlink, rename, link, symlink, chmod, chown, utimensat, truncate, mknod, chdir, getcwd,
// execve, ...) to a supervisor. The supervisor reads the path from the caller's memory,
// resolves it component by component in the caller's view and answers:
//
//   - a read-only call on a path that leads where it does on the host (a read-only open, a stat of
//     a file the view has not changed): CONTINUE, and the kernel does it (the fast policy; the
//     strict policy performs opens itself and injects the fd);
//   - an open that can write an existing shared file (write access or O_TRUNC), or a change to its
//     metadata: the file is copied into the private layer once (FICLONE, else copy_file_range),
//     and the call is made there; opened files are injected (SECCOMP_IOCTL_NOTIF_ADDFD);
//   - a change to a directory's entries (create, unlink, rename, link, mkdir, ...): the call is
//     made in the directory's copy in the private layer. A directory that only gains names holds
//     just those there (and mirrors of its shared subdirectories); one that loses a shared name,
//     or that a task opens (and so may list), is materialized: placeholders for all its shared
//     children. A shared file or directory is renamed without copying its data;
//   - any call on a path the view has changed or created: the private copy;
//   - the user's store root, which holds the private layers of all their runs and pools, does not
//     exist in any view (ENOENT), nor in a listing of its directory (see store.go).
//
// When the invocation ends its private layer is removed, after [Invocation.Changes] (or
// [Result.Changes]) reported it.
//
// # Two ways in
//
// Thread mode ([NewPool], [Pool.Invoke]): worker goroutines, each locked for life to an OS thread
// that unshared its working directory and umask (CLONE_FS) and loaded the filter once with its own
// listener. Invoke runs a function on a free worker in a fresh view; the thread is reused by later
// invocations, which see nothing of earlier ones: descriptors of private files that a function
// left open are revoked when it returns (see revoke.go).
//
// Only the function's own goroutine is virtualized. Goroutines it starts run on other threads,
// which carry no filter: they see, and can change, the shared tree. So do calls the Go runtime
// makes on other threads. A function that must stay in its view does its file-system work on its
// own goroutine. It starts processes with [Invocation.Start], which runs them, and theirs, in its
// view; os/exec on its goroutine fails with ENOTSUP, because a vfork there could deadlock the
// program (see vfork.go). A process that outlives the invocation is fenced into a read-only view
// of the shared tree (see lineage.go).
//
// Process mode ([Run]): the command and every process it starts share one view; this program,
// re-executed as fsvirt-init (reexec.go), loads the filter and then executes the command, which
// passes it on to everything it starts.
//
// Warm workers ([NewWarm], [Warm.Start], [WarmWorker.BeginRequest], [WarmWorker.EndRequest]): a
// process started as in process mode and kept running, whose listener answers in a fresh view per
// request and, between requests, in a read-only view of the shared tree; at a request's end the
// processes it started are fenced as in thread mode, and a worker still holding something of the
// request's private layer is reported, to be replaced (see warm.go). fsvirt serve is built on it.
//
// # Policies and what they guarantee
//
// [PolicyFast] answers read-only opens of unchanged, plainly resolved paths with CONTINUE. The
// kernel then reads the path from the caller's memory a second time
// (docs/kernel.md, "CONTINUE re-reads memory"). A caller that rewrites its own path buffer from
// another filtered thread between the supervisor's check and the kernel's read can make the kernel
// open another path than the one checked, read-only: it may read a shared file instead of its
// private copy, or a file in the store that it can reach with its own permissions. It can never
// write through a CONTINUE: the flags come from registers, which cannot change, and only opens
// without write access, O_CREAT, O_TRUNC or O_TMPFILE are continued. Use fast for code you trust
// not to attack its own sandbox.
//
// [PolicyStrict] reads the path once and performs every intercepted open itself, injecting the
// result: what the kernel opens is what the supervisor checked. The exception is O_PATH, which
// the kernel cannot inject; an O_PATH fd carries no access to data and every later use of it
// passes through the filter again.
//
// # Limits of this version
//
// In thread mode a descriptor opened before its file was copied up keeps reading the shared file,
// and a directory descriptor opened before the directory's entries changed keeps listing the shared
// directory; in process mode they follow (follow.go), with the exceptions it lists. A copied-up file has a new inode number. O_PATH descriptors of private objects, and of shared
// objects that the caller's path reaches only through the private layer, are ordinary read-only
// descriptors (a memfd for a symlink). A FIFO open the supervisor makes itself does not wait for
// the other end (see openFD). chdir into a directory that exists only in the private layer sets a
// virtual working directory; execve of a private program goes through /dev/fd/N. The supervisor
// creates and copies files with its own credentials, chowning new files to the caller's fsuid and
// fsgid; it does not re-check permissions for a caller that changed its credentials. The README
// lists these in full.
package impl
