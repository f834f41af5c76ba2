// Package notify is a thin layer over the kernel's seccomp user-notification interface: the structs
// that golang.org/x/sys/unix lacks, the listener ioctls, filter loading, and cached feature probes.
//
// It makes no policy: the engine in package impl decides what to answer. Every function is safe to
// call from any goroutine; none of them may run on a thread whose filter traps the syscalls they make
// (ioctl, seccomp, prctl are never trapped by fsvirt's filter).
package notify

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Data mirrors struct seccomp_data.
type Data struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

// Notif mirrors struct seccomp_notif.
type Notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  Data
}

// Resp mirrors struct seccomp_notif_resp.
type Resp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// Addfd mirrors struct seccomp_notif_addfd.
type Addfd struct {
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

// Sizes the kernel's structs have had since 5.0 (seccomp_notif, seccomp_notif_resp, seccomp_data)
// and 5.9 (seccomp_notif_addfd). CheckSizes compares them with what the running kernel reports.
const (
	sizeofNotif = 80
	sizeofResp  = 24
	sizeofData  = 64
	sizeofAddfd = 24
)

// Compile-time size checks: a negative array length fails the build if a struct drifts.
var (
	_ [sizeofNotif - unsafe.Sizeof(Notif{})]byte
	_ [unsafe.Sizeof(Notif{}) - sizeofNotif]byte
	_ [sizeofResp - unsafe.Sizeof(Resp{})]byte
	_ [unsafe.Sizeof(Resp{}) - sizeofResp]byte
	_ [sizeofData - unsafe.Sizeof(Data{})]byte
	_ [unsafe.Sizeof(Data{}) - sizeofData]byte
	_ [sizeofAddfd - unsafe.Sizeof(Addfd{})]byte
	_ [unsafe.Sizeof(Addfd{}) - sizeofAddfd]byte
)

// idValidOld is SECCOMP_IOCTL_NOTIF_ID_VALID as defined before 5.9 (_IOR instead of _IOW); kernels
// from 5.9 on (and 5.4.59) accept both numbers, older ones only this one.
const idValidOld = 0x80082102

// CheckSizes asks the kernel for the sizes of the notification structs and fails when they are
// smaller than ours (the kernel rejects a RECV buffer of the wrong size).
func CheckSizes() error {
	var sizes struct{ Notif, Resp, Data uint16 }
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&sizes))); errno != 0 {
		return fmt.Errorf("seccomp(GET_NOTIF_SIZES): %w", wrapUnsupported(errno))
	}
	if sizes.Notif != sizeofNotif || sizes.Resp != sizeofResp || sizes.Data != sizeofData {
		return fmt.Errorf("kernel notification sizes notif=%d resp=%d data=%d, fsvirt knows %d/%d/%d",
			sizes.Notif, sizes.Resp, sizes.Data, sizeofNotif, sizeofResp, sizeofData)
	}
	return nil
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// Recv receives one notification into n. ENOENT means the notification vanished (its task was
// interrupted by a signal, Go's SIGURG preemption included, or died): callers skip it.
func Recv(fd int, n *Notif) error {
	*n = Notif{} // the kernel rejects a non-zeroed buffer
	for {
		_, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(n))
		if err != unix.EINTR {
			return err
		}
	}
}

// RecvWait waits for a notification and receives it into n, like Recv, but returns EINTR when a
// signal interrupts the wait: a thread that waits here can be told to stop (see impl's supervisor).
func RecvWait(fd int, n *Notif) error {
	*n = Notif{}
	_, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(n))
	return err
}

// Send answers notification id with a return value or an errno (errno > 0 wins).
func Send(fd int, id uint64, val int64, errno unix.Errno) error {
	r := Resp{ID: id, Val: val}
	if errno != 0 {
		r.Val, r.Error = 0, -int32(errno)
	}
	_, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r))
	return err
}

// Continue lets the kernel execute the notified syscall itself. The kernel re-reads the syscall's
// arguments from the task's memory: never use it for a call that could write (docs/kernel.md, "CONTINUE re-reads memory").
func Continue(fd int, id uint64) error {
	r := Resp{ID: id, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	_, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r))
	return err
}

// IDValid reports whether notification id is still pending, i.e. its task has neither died nor
// been interrupted. Call it after reading the task's memory and before acting on what was read: the
// TID may belong to another task by then. f says which number of the ioctl the kernel takes.
func (f FeatureSet) IDValid(fd int, id uint64) error {
	req := uintptr(unix.SECCOMP_IOCTL_NOTIF_ID_VALID)
	if !f.IDValidW {
		req = idValidOld
	}
	_, err := ioctl(fd, req, unsafe.Pointer(&id))
	return err
}

// AddFD installs srcfd in the notified task and completes the syscall with the new fd number. With
// cloexec the new descriptor gets FD_CLOEXEC. Where f has no SECCOMP_ADDFD_FLAG_SEND (kernels
// before 5.14) it installs the fd, then sends its number as the return value: two ioctls. When the second
// fails (a signal withdrew the notification in between, and the syscall will restart), AddFD returns
// the installed number with the error: that descriptor is in the task's table, unknown to it, and
// only the caller can decide whether it can be closed. Otherwise an error comes with -1.
//
// The calling thread must block signals: with SECCOMP_ADDFD_FLAG_SEND a signal that interrupts the
// ioctl's wait leaves the task's syscall answered with 0 and no fd (see the supervisor loop).
func (f FeatureSet) AddFD(fd int, id uint64, srcfd int, cloexec bool) (int, error) {
	a := Addfd{ID: id, Srcfd: uint32(srcfd)}
	if cloexec {
		a.NewfdFlags = unix.O_CLOEXEC
	}
	send := f.AddfdSend
	if send {
		a.Flags = unix.SECCOMP_ADDFD_FLAG_SEND
	}
	r, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a))
	if err != nil {
		return -1, err
	}
	if !send {
		if err := Send(fd, id, int64(r), 0); err != nil {
			return int(r), err
		}
	}
	return int(r), nil
}

// ReplaceFD puts srcfd in the notified task at descriptor number target, closing what was there, as
// dup2 would (SECCOMP_ADDFD_FLAG_SETFD, 5.9), without answering the notification. With cloexec the
// descriptor gets FD_CLOEXEC.
func ReplaceFD(fd int, id uint64, srcfd, target int, cloexec bool) error {
	a := Addfd{ID: id, Srcfd: uint32(srcfd), Newfd: uint32(target), Flags: unix.SECCOMP_ADDFD_FLAG_SETFD}
	if cloexec {
		a.NewfdFlags = unix.O_CLOEXEC
	}
	_, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a))
	return err
}

// SetSyncWakeUp asks the kernel to wake the notified task on the CPU that answers it (6.6+).
func SetSyncWakeUp(fd int) error {
	// SET_FLAGS takes the flags by value, not through a pointer.
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS, unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	if errno != 0 {
		return errno
	}
	return nil
}

// LoadFilter installs prog on the calling thread with a new listener and returns the listener fd,
// with SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV when waitKillable is set (see Features). It sets
// no_new_privs first (per thread). The caller must be locked to its OS thread and keep it locked
// for the thread's life: the filter cannot be removed.
func LoadFilter(prog []unix.SockFilter, waitKillable bool) (int, error) {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER)
	if waitKillable {
		flags |= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return -1, fmt.Errorf("seccomp(SET_MODE_FILTER, NEW_LISTENER): %w", errno)
	}
	return int(fd), nil
}

// ErrNotSupported is wrapped by every error that reports a missing kernel feature.
var ErrNotSupported = errors.New("not supported by this kernel")

func wrapUnsupported(errno unix.Errno) error {
	if errno == unix.EINVAL || errno == unix.ENOSYS {
		return fmt.Errorf("%w (%v)", ErrNotSupported, errno)
	}
	return errno
}

// InstallFD installs srcfd in the notified task without completing the syscall, and returns its
// number there: the caller answers the notification afterwards (with Continue, say).
func InstallFD(fd int, id uint64, srcfd int, cloexec bool) (int, error) {
	a := Addfd{ID: id, Srcfd: uint32(srcfd)}
	if cloexec {
		a.NewfdFlags = unix.O_CLOEXEC
	}
	r, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a))
	return int(r), err
}
