// Package sysexec executes [fsvirt.Op]s with real system calls inside a tree,
// and reads and writes whole trees on disk.
//
// An [Exec] resolves an op's absolute paths, and relative paths with
// [fsvirt.AtCWD], against its root directory by prefixing the root's path: it
// never changes the process's working directory, which all threads share. An
// Exec made by [NewInCwd], for a thread with a working directory of its own,
// changes that directory to the root instead and passes relative paths as they
// are, so that the kernel (or the engine) resolves them against the cwd.
// The plain Exec emulates chdir and fchdir with a directory fd of its own,
// which relative paths then start from (through /proc/self/fd for the
// syscalls without a dirfd), and getcwd by reading that fd's path back.
// Absolute symlink targets are stored with the root in front and read back
// without it, st_size included. Handles map to the fds the kernel returned.
// '..' at the root would leave the tree; callers must not issue such ops.
//
// An Exec is not safe for concurrent use. The seccomp engine virtualizes only
// the thread it was installed on, so an Exec driving the engine must be used
// from that thread's goroutine alone.
package sysexec
