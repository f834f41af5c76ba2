package notify

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FeatureSet says which optional kernel features the engine uses. Each field names the kernel
// version and upstream commit that brought the feature.
type FeatureSet struct {
	// UserNotif: SECCOMP_RET_USER_NOTIF and SECCOMP_FILTER_FLAG_NEW_LISTENER, 5.0 (6a21cc50f0c7;
	// docs/kernel.md, "Versions").
	UserNotif bool
	// Addfd: SECCOMP_IOCTL_NOTIF_ADDFD, 5.9 (7cf97b125455; docs/kernel.md, "Versions"). The floor:
	// fsvirt refuses to run without it.
	Addfd bool
	// AddfdSend: SECCOMP_ADDFD_FLAG_SEND, inject and answer in one ioctl, 5.14 (0ae71c7720e3;
	// docs/kernel.md, "Versions").
	AddfdSend bool
	// IDValidW: the corrected SECCOMP_IOCTL_NOTIF_ID_VALID number (_IOW), 5.9 (47e33c05f9f0;
	// backported to 5.4.59): docs/kernel.md, "Versions".
	IDValidW bool
	// WaitKillableRecv: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, 5.19 (c2aa2dfef243;
	// docs/kernel.md, "Versions"): once received, only fatal signals interrupt the notified
	// syscall.
	WaitKillableRecv bool
	// SyncWakeUp: SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 6.6 (48a1084a8b74;
	// docs/kernel.md, "Versions"): faster wake-ups.
	SyncWakeUp bool
	// PidfdGetfd: pidfd_getfd(2), 5.6 (8649c322f75c; docs/kernel.md, "Versions"): the supervisor
	// takes a task's open file itself. Without it (or where the kernel refuses it), the object is
	// opened through /proc/TID/fd/N with O_PATH: the same object, a new open file.
	PidfdGetfd bool
	// Landlock: the Landlock LSM, 5.13 (265885daf3e5; docs/kernel.md, "Versions"), when the kernel
	// was built with it and boots with it among its LSMs. The command's threads are restricted so
	// that the kernel itself refuses any change by path (docs/kernel.md, "Landlock underneath").
	Landlock bool
	// LandlockABI is the Landlock ABI version the kernel reports (0 without Landlock): 1 in
	// 5.13, 2 with LANDLOCK_ACCESS_FS_REFER (5.19, b91c3e4ea756), 3 with
	// LANDLOCK_ACCESS_FS_TRUNCATE (6.2, b9f5ce27c8f8): docs/kernel.md, "Versions".
	// FSVIRT_DISABLE=landlock turns Landlock off and leaves this as probed.
	LandlockABI int
}

// Names of the features as FSVIRT_DISABLE and the probe report spell them.
var featureNames = []string{"user-notif", "addfd", "addfd-send", "id-valid-w", "wait-killable", "sync-wakeup", "pidfd-getfd", "landlock"}

func (f *FeatureSet) fields() []*bool {
	return []*bool{&f.UserNotif, &f.Addfd, &f.AddfdSend, &f.IDValidW, &f.WaitKillableRecv, &f.SyncWakeUp, &f.PidfdGetfd, &f.Landlock}
}

// String lists the features as "name=on|off", in a fixed order.
func (f FeatureSet) String() string {
	var b strings.Builder
	for i, p := range f.fields() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", featureNames[i], map[bool]string{true: "on", false: "off"}[*p])
	}
	return b.String()
}

// Each returns the features as name/value pairs, in a fixed order.
func (f FeatureSet) Each(fn func(name string, on bool)) {
	for i, p := range f.fields() {
		fn(featureNames[i], *p)
	}
}

var (
	probeOnce sync.Once
	probed    FeatureSet
	probeErr  error
	override  *FeatureSet
	mu        sync.Mutex
)

// Features returns the cached probe results, less whatever FSVIRT_DISABLE turns off (a
// comma-separated list of feature names, so that tests can force every fallback path).
//
// It takes a mutex, since SetForTest may replace the set at any time: an engine calls it once, when
// it starts, and answers every notification with the set it got (FeatureSet's IDValid and AddFD),
// so that a test's SetForTest before it starts decides what it does until it stops.
func Features() FeatureSet {
	mu.Lock()
	defer mu.Unlock()
	if override != nil {
		return *override
	}
	probeOnce.Do(func() {
		probed, probeErr = probe()
		if err := applyDisable(&probed, os.Getenv("FSVIRT_DISABLE")); err != nil && probeErr == nil {
			probeErr = err
		}
	})
	return probed
}

// ProbeError reports what went wrong while probing, if anything (a bad FSVIRT_DISABLE, say).
func ProbeError() error {
	Features()
	return probeErr
}

// SetForTest replaces the probed features until the returned function is called.
func SetForTest(f FeatureSet) (restore func()) {
	Features()
	mu.Lock()
	defer mu.Unlock()
	prev := override
	override = &f
	return func() {
		mu.Lock()
		defer mu.Unlock()
		override = prev
	}
}

func applyDisable(f *FeatureSet, list string) error {
	if list == "" {
		return nil
	}
	fields := f.fields()
next:
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		for i, n := range featureNames {
			if n == name {
				*fields[i] = false
				continue next
			}
		}
		return fmt.Errorf("FSVIRT_DISABLE: unknown feature %q (known: %s)", name, strings.Join(featureNames, ", "))
	}
	return nil
}

// Require returns an error wrapping ErrNotSupported, naming the kernel, when the floor (ADDFD, 5.9)
// is missing from Features.
func Require() error { return Features().Require() }

// Require returns an error wrapping ErrNotSupported, naming the kernel, when the floor (ADDFD, 5.9)
// is missing from f: for an engine that captured its feature set once, and checks that set.
func (f FeatureSet) Require() error {
	if f.UserNotif && f.Addfd {
		return nil
	}
	missing := "SECCOMP_IOCTL_NOTIF_ADDFD (Linux 5.9)"
	if !f.UserNotif {
		missing = "SECCOMP_RET_USER_NOTIF (Linux 5.0)"
	}
	return fmt.Errorf("kernel %s lacks %s: %w", KernelRelease(), missing, ErrNotSupported)
}

// KernelRelease is uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "(unknown)"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func probe() (FeatureSet, error) {
	var f FeatureSet
	_, err := unix.PidfdGetfd(-1, 0, 0)
	f.PidfdGetfd = err == unix.EBADF // present: the pidfd is checked first
	f.LandlockABI, _ = LandlockVersion()
	f.Landlock = f.LandlockABI > 0
	// Flag probes: the kernel validates flags before it reads the filter, so a NULL filter yields
	// EFAULT for known flags and EINVAL for unknown ones, with no side effect.
	f.UserNotif = probeFlags(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER)
	if !f.UserNotif {
		return f, nil
	}
	f.WaitKillableRecv = probeFlags(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)

	// Ioctl probes need a listener: load an allow-all filter on a throwaway thread.
	lfd, err := throwawayListener()
	if err != nil {
		return f, err
	}
	defer unix.Close(lfd)
	addfd := func(flags uint32) bool {
		a := Addfd{ID: ^uint64(0), Flags: flags, Srcfd: uint32(lfd)}
		_, err := ioctl(lfd, unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a))
		return err == unix.ENOENT // supported, and no such notification
	}
	f.Addfd = addfd(0)
	f.AddfdSend = f.Addfd && addfd(unix.SECCOMP_ADDFD_FLAG_SEND)
	id := ^uint64(0)
	_, err = ioctl(lfd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id))
	f.IDValidW = err == unix.ENOENT
	f.SyncWakeUp = SetSyncWakeUp(lfd) == nil
	return f, nil
}

// LandlockVersion asks the kernel for its Landlock ABI version: ENOSYS when it was built without
// Landlock, EOPNOTSUPP when Landlock is not among the LSMs it booted with.
func LandlockVersion() (int, error) {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0, errno
	}
	return int(abi), nil
}

func probeFlags(flags uintptr) bool {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, 0)
	return errno == unix.EFAULT
}

// throwawayListener loads an allow-all filter with a listener on a new thread that then dies with
// its filter: the goroutine returns while still locked to the thread.
func throwawayListener() (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		allow := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			ch <- result{-1, err}
			return
		}
		fprog := unix.SockFprog{Len: 1, Filter: &allow[0]}
		fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
		if errno != 0 {
			ch <- result{-1, fmt.Errorf("probe listener: %w", errno)}
			return
		}
		ch <- result{int(fd), nil}
	}()
	r := <-ch
	return r.fd, r.err
}
