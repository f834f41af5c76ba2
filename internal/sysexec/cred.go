package sysexec

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// SetCred gives the calling OS thread credentials c: real, effective and file-system IDs, and
// supplementary groups, as a process of that user has them (so access(2), which checks the real
// IDs, agrees with open(2)). The saved-set user ID stays 0, the way back: a later SetCred, root's
// included, first takes effective uid 0 again, which restores the capabilities. Linux keeps
// credentials per thread, and the calls are raw syscalls, not Go's wrappers, which apply them to
// every thread (docs/kernel.md, "Credentials are per thread").
//
// Preconditions: the caller is locked to its OS thread; the thread's saved-set user ID is 0 (the
// process runs as root).
func SetCred(c fsvirt.Cred) error {
	if err := rawErr(unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0))); err != nil {
		return err
	}
	groups := make([]uint32, len(c.Groups)+1) // never a nil pointer to setgroups(2)
	copy(groups, c.Groups)
	if err := rawErr(unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(c.Groups)), uintptr(unsafe.Pointer(&groups[0])), 0)); err != nil {
		return err
	}
	if err := rawErr(unix.RawSyscall(unix.SYS_SETRESGID, uintptr(c.Gid), uintptr(c.Gid), uintptr(c.Gid))); err != nil {
		return err
	}
	return rawErr(unix.RawSyscall(unix.SYS_SETRESUID, uintptr(c.Uid), uintptr(c.Uid), 0))
}

func rawErr(_, _ uintptr, errno unix.Errno) error {
	if errno != 0 {
		return errno
	}
	return nil
}

// ThreadCred returns the calling thread's credentials: its effective IDs and groups.
func ThreadCred() (fsvirt.Cred, error) {
	groups, err := unix.Getgroups() // getgroups(2) reads the calling thread's
	if err != nil {
		return fsvirt.Cred{}, err
	}
	c := fsvirt.Cred{Uid: uint32(unix.Geteuid()), Gid: uint32(unix.Getegid())}
	for _, g := range groups {
		c.Groups = append(c.Groups, uint32(g))
	}
	return c, nil
}

// Thread runs functions on one OS thread of its own, whose credentials and working directory
// may be changed without touching the rest of the process: the thread is never handed back to
// the Go scheduler, and exits with Close.
type Thread struct {
	fns chan func()
}

// NewThread starts a thread with a working directory of its own (unshare(CLONE_FS)).
func NewThread() (*Thread, error) {
	t := &Thread{fns: make(chan func())}
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		errc <- unix.Unshare(unix.CLONE_FS)
		for fn := range t.fns {
			fn()
		}
	}()
	if err := <-errc; err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// Run runs fn on the thread and returns when it has.
func (t *Thread) Run(fn func()) {
	done := make(chan struct{})
	t.fns <- func() { fn(); close(done) }
	<-done
}

// Close ends the thread.
func (t *Thread) Close() { close(t.fns) }
