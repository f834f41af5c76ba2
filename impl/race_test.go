package impl

// Races against the supervisor (issue 16): the command of a process-mode run is this test binary
// (TestMain runs runAttack when FSVIRT_TEST_ATTACK is set), which attacks from two threads at once:
// one makes a call, the other rewrites the call's path buffer or dup2()s another file onto its
// descriptor while the supervisor decides. Whatever the calls return, the shared tree must come
// out exactly as it went in: names, types, modes, owners, sizes, contents, times, xattrs and inode
// flags. The attacks are Go, not C, so that they run inside the kernel matrix's VMs too.

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/fsvirt/fsvirt/internal/attacktest"
	"github.com/fsvirt/fsvirt/internal/treetest"
	"golang.org/x/sys/unix"
)

// An attack runs in the view with: FSVIRT_TEST_TARGET, a shared file; FSVIRT_TEST_DECOY, a file
// outside the trees that the attacker may change; FSVIRT_TEST_DIR, a shared directory; and
// FSVIRT_TEST_UID, when set, the uid (and gid) to drop to first. Each decoy path mirrors its
// shared twin with the same length, and differs from it only in the tree's name (raceTree), so
// that a torn read of a buffer being rewritten names, at worst, a path in the test's directory.
type attack struct {
	name string
	run  func(a *attacker)
}

var attacks = []attack{
	{"path-flip", attackPathFlip},
	{"fd-swap", attackFdSwap},
	{"proc-fd-swap", attackProcFdSwap},
	{"ioctl-flags", attackIoctl},
	{"reach-supervisor", attackSupervisor},
	{"removed-dir-swap", attackRemovedDirSwap},
}

// attacker is the state of one attack in the command.
type attacker struct {
	target, decoy, dir string
	deadline           time.Time
	stop               atomic.Bool
	failures           []string // what the attacker could do that it must not
}

func (a *attacker) failf(format string, args ...any) {
	a.failures = append(a.failures, fmt.Sprintf(format, args...))
}

// runAttack runs the named attack in this process and returns its exit status: 0 when nothing it
// must not do succeeded (the shared tree is checked by the test itself), 1 otherwise.
func runAttack(name string) int {
	if uid := os.Getenv("FSVIRT_TEST_UID"); uid != "" {
		id, _ := strconv.Atoi(uid)
		if err := dropTo(id); err != nil {
			fmt.Fprintln(os.Stderr, "drop privileges:", err)
			return 2
		}
	}
	a := &attacker{
		target:   os.Getenv("FSVIRT_TEST_TARGET"),
		decoy:    os.Getenv("FSVIRT_TEST_DECOY"),
		dir:      os.Getenv("FSVIRT_TEST_DIR"),
		deadline: time.Now().Add(attackTime),
	}
	for _, at := range attacks {
		if at.name == name {
			at.run(a)
			for _, f := range a.failures {
				fmt.Println(f)
			}
			if len(a.failures) > 0 {
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(os.Stderr, "no attack %q\n", name)
	return 2
}

// attackTime bounds each attack's race loop.
const attackTime = 700 * time.Millisecond

func dropTo(id int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setresgid(id, id, id); err != nil {
		return err
	}
	return syscall.Setresuid(id, id, id)
}

// racing runs flip on a thread of its own until the attack ends.
func (a *attacker) racing(flip func()) (done func()) {
	finished := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer close(finished)
		for !a.stop.Load() {
			flip()
		}
	}()
	return func() {
		a.stop.Store(true)
		<-finished
		a.stop.Store(false)
	}
}

func (a *attacker) running() bool { return time.Now().Before(a.deadline) }

// pathBuf is a C string that another thread rewrites between two paths.
type pathBuf struct {
	buf       [512]byte
	one, two  []byte
	flipCount int
}

func newPathBuf(one, two string) *pathBuf {
	b := &pathBuf{one: append([]byte(one), 0), two: append([]byte(two), 0)}
	copy(b.buf[:], b.one)
	return b
}

func (b *pathBuf) flip() {
	copy(b.buf[:], b.two)
	copy(b.buf[:], b.one)
}

func (b *pathBuf) ptr() uintptr { return uintptr(unsafe.Pointer(&b.buf[0])) }

// attackPathFlip makes every path call that can change something on a buffer that another thread
// flips between the decoy, outside the trees, and the shared target.
func attackPathFlip(a *attacker) {
	runtime.LockOSThread()
	b := newPathBuf(a.decoy, a.target)
	other := newPathBuf(mirror(a.decoy, "moved"), mirror(a.target, "moved"))
	link := newPathBuf(mirror(a.decoy, "linkd"), mirror(a.target, "linkd"))
	name := []byte("user.fsvirt\x00")
	val := []byte("evil")
	done := a.racing(func() { b.flip(); other.flip(); link.flip() })
	defer done()
	sys := func(nr uintptr, args ...uintptr) {
		var x [6]uintptr
		copy(x[:], args)
		unix.Syscall6(nr, x[0], x[1], x[2], x[3], x[4], x[5])
	}
	for a.running() {
		sys(unix.SYS_TRUNCATE, b.ptr(), 0)
		sys(unix.SYS_CHMOD, b.ptr(), 0o777)
		sys(unix.SYS_CHOWN, b.ptr(), 65533, 65533)
		sys(unix.SYS_UTIMENSAT, atFDCWD, b.ptr(), 0, 0)
		sys(unix.SYS_SETXATTR, b.ptr(), uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&val[0])), uintptr(len(val)), 0)
		sys(unix.SYS_REMOVEXATTR, b.ptr(), uintptr(unsafe.Pointer(&name[0])))
		sys(unix.SYS_LINK, b.ptr(), link.ptr())
		sys(unix.SYS_RENAME, b.ptr(), other.ptr())
		sys(unix.SYS_RENAME, other.ptr(), b.ptr())
		sys(unix.SYS_UNLINK, link.ptr())
		sys(unix.SYS_MKDIR, link.ptr(), 0o755)
		sys(unix.SYS_RMDIR, link.ptr())
		sys(unix.SYS_MKNOD, link.ptr(), unix.S_IFIFO|0o644, 0)
		sys(unix.SYS_UNLINK, link.ptr())
		sys(unix.SYS_SYMLINKAT, b.ptr(), atFDCWD, link.ptr())
		sys(unix.SYS_UNLINK, link.ptr())
		// O_WRONLY opens are never continued, but their path is raced all the same.
		if fd, _, e := unix.Syscall6(unix.SYS_OPENAT, atFDCWD, b.ptr(), unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0, 0, 0); e == 0 {
			unix.Write(int(fd), []byte("evil"))
			unix.Close(int(fd))
		}
		// bind creates a socket file: its address is flipped between the decoy and the tree.
		a.bindFlip()
		if !restoreDecoy(a.decoy) {
			return
		}
	}
}

// bindFlip binds a UNIX socket to an address that another thread flips into the tree.
func (a *attacker) bindFlip() {
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(s)
	var sa unix.RawSockaddrUnix
	sa.Family = unix.AF_UNIX
	one, two := mirror(a.decoy, "sockt"), mirror(a.target, "sockt")
	if len(one) >= len(sa.Path) || len(two) >= len(sa.Path) {
		return
	}
	set := func(p string) { // one and two have one length: only their differing bytes change
		for i := range p {
			sa.Path[i] = int8(p[i])
		}
	}
	set(one)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				set(two)
				set(one)
			}
		}
	}()
	unix.Syscall(unix.SYS_BIND, uintptr(s), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	close(stop)
	unix.Unlink(one)
}

// mirror is the path of name beside p, of the same length when name is as long as p's base.
func mirror(p, name string) string { return filepath.Join(filepath.Dir(p), name) }

// restoreDecoy puts the decoy back as a plain file after the attack's calls moved or removed it.
func restoreDecoy(decoy string) bool {
	if _, err := os.Lstat(decoy); err == nil {
		return true
	}
	if err := os.Rename(mirror(decoy, "moved"), decoy); err == nil {
		return true
	}
	return os.WriteFile(decoy, []byte("decoy\n"), 0o644) == nil
}

// attackFdSwap makes the fd-based calls on a descriptor number that another thread dup2()s back
// and forth between the decoy, opened for writing, and the shared target, opened for reading.
func attackFdSwap(a *attacker) {
	runtime.LockOSThread()
	n, _, done := a.swapped(unix.O_RDWR)
	if n < 0 {
		return
	}
	defer done()
	stolen := filepath.Join(a.dir, "stolen")
	ts := []unix.Timespec{{Sec: 1}, {Sec: 1}}
	for a.running() {
		unix.Fchmod(n, 0o777)
		unix.Fchown(n, 65533, 65533)
		unix.Fsetxattr(n, "user.fsvirt", []byte("evil"), 0)
		unix.Fremovexattr(n, "user.x")
		unix.UtimesNanoAt(n, "", ts, unix.AT_EMPTY_PATH)
		unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(n), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		unix.Ftruncate(n, 0) // write access on the descriptor decides: the target's is read-only
		if unix.Linkat(n, "", unix.AT_FDCWD, stolen, unix.AT_EMPTY_PATH) == nil {
			// The new name must be the view's own file: writing it must not reach the target.
			if fd, err := unix.Open(stolen, unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0); err == nil {
				unix.Write(fd, []byte("evil"))
				unix.Close(fd)
			}
			unix.Unlink(stolen)
		}
		// A magic link to the descriptor, opened for writing, reaches whatever n is then.
		if fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(n), unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0); err == nil {
			unix.Write(fd, []byte("evil"))
			unix.Close(fd)
		}
	}
}

// attackProcFdSwap changes the object behind /proc/self/fd/N by path (chmod, chown, utimensat,
// truncate, the xattr calls, linkat with AT_SYMLINK_FOLLOW) while a second thread dup2()s a memfd
// (an object without a path in the view, which the view takes through the descriptor) and the
// shared target, opened read-only, onto N.
func attackProcFdSwap(a *attacker) {
	runtime.LockOSThread()
	memfd, err := unix.MemfdCreate("fsvirt-decoy", unix.MFD_CLOEXEC)
	if err != nil {
		a.failf("memfd_create: %v", err)
		return
	}
	shared, err := unix.Open(a.target, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		a.failf("open target: %v", err)
		return
	}
	const n = 101
	unix.Dup3(memfd, n, unix.O_CLOEXEC)
	done := a.racing(func() {
		unix.Dup3(shared, n, unix.O_CLOEXEC)
		unix.Dup3(memfd, n, unix.O_CLOEXEC)
	})
	defer done()
	link := "/proc/self/fd/" + strconv.Itoa(n)
	stolen := filepath.Join(a.dir, "stolen")
	ts := []unix.Timespec{{Sec: 1}, {Sec: 1}}
	for a.running() {
		unix.Chmod(link, 0o777)
		unix.Chown(link, 65533, 65533)
		unix.UtimesNanoAt(unix.AT_FDCWD, link, ts, 0)
		unix.Truncate(link, 0)
		unix.Setxattr(link, "user.fsvirt", []byte("evil"), 0)
		unix.Removexattr(link, "user.x")
		if unix.Linkat(unix.AT_FDCWD, link, unix.AT_FDCWD, stolen, unix.AT_SYMLINK_FOLLOW) == nil {
			// The new name must be the view's own file: writing it must not reach the target.
			if fd, err := unix.Open(stolen, unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0); err == nil {
				unix.Write(fd, []byte("evil"))
				unix.Close(fd)
			}
			unix.Unlink(stolen)
		}
	}
}

// swapped opens the decoy (with decoyFlags) and the shared target (read-only), and returns a
// descriptor number that a thread of its own dup2()s back and forth between them until done, and
// the target's own descriptor; -1 when either could not be opened.
func (a *attacker) swapped(decoyFlags int) (n, shared int, done func()) {
	decoy, err := unix.Open(a.decoy, decoyFlags|unix.O_CLOEXEC, 0)
	if err != nil {
		a.failf("open decoy: %v", err)
		return -1, -1, nil
	}
	if shared, err = unix.Open(a.target, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		a.failf("open target: %v", err)
		return -1, -1, nil
	}
	n = 100
	unix.Dup3(decoy, n, unix.O_CLOEXEC)
	return n, shared, a.racing(func() {
		unix.Dup3(shared, n, unix.O_CLOEXEC)
		unix.Dup3(decoy, n, unix.O_CLOEXEC)
	})
}

// attackRemovedDirSwap acts on "." of a directory the view made (in tree/own) and removed, which
// the attacker still holds as a descriptor and as its working directory, while a second thread
// dup2()s a descriptor of a shared directory it owns and the view has not changed (tree/mine)
// onto that descriptor, or changes its working directory back and forth between the two: the
// calls must act on the removed directory or on the view's copy of tree/mine, never on the
// shared one.
func attackRemovedDirSwap(a *attacker) {
	runtime.LockOSThread()
	gone := filepath.Join(filepath.Dir(a.dir), "own", "gone")
	mine := filepath.Join(filepath.Dir(a.dir), "mine")
	if err := unix.Mkdir(gone, 0o755); err != nil {
		a.failf("mkdir %s: %v", gone, err)
		return
	}
	removed, err := unix.Open(gone, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		a.failf("open %s: %v", gone, err)
		return
	}
	if err := unix.Rmdir(gone); err != nil {
		a.failf("rmdir %s: %v", gone, err)
		return
	}
	shared, err := unix.Open(mine, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		a.failf("open %s: %v", mine, err)
		return
	}
	const n = 102
	unix.Dup3(removed, n, unix.O_CLOEXEC)
	ts := []unix.Timespec{{Sec: 1}, {Sec: 1}}
	// Through the descriptor.
	done := a.racing(func() {
		unix.Dup3(shared, n, unix.O_CLOEXEC)
		unix.Dup3(removed, n, unix.O_CLOEXEC)
	})
	// The window is one lookup wide: longer than the other attacks.
	deadline := time.Now().Add(attackTime)
	for time.Now().Before(deadline) {
		unix.Fchmodat(n, ".", 0o700, 0)
		unix.Fchownat(n, ".", 65533, 65533, 0)
		unix.UtimesNanoAt(n, ".", ts, 0)
	}
	done()
	// Through the working directory (fchdir is notified, and continued: slower flips).
	unix.Fchdir(removed)
	done = a.racing(func() {
		unix.Fchdir(shared)
		unix.Fchdir(removed)
	})
	defer done()
	for deadline = time.Now().Add(attackTime); time.Now().Before(deadline); {
		unix.Chmod(".", 0o700)
		unix.Chown(".", 65533, 65533)
		unix.UtimesNanoAt(unix.AT_FDCWD, ".", ts, 0)
		unix.Setxattr(".", "user.fsvirt", []byte("evil"), 0)
		unix.Removexattr(".", "user.fsvirt")
	}
}

// FS_NODUMP_FL.
const fsNodumpFl = 0x40

// attackIoctl sets inode flags through a read-only descriptor of the shared target, also with
// the descriptor raced as above.
func attackIoctl(a *attacker) {
	runtime.LockOSThread()
	n, shared, done := a.swapped(unix.O_RDONLY)
	if n < 0 {
		return
	}
	defer done()
	// Immutable needs CAP_LINUX_IMMUTABLE, which an unprivileged attacker lacks: nodump alone is
	// what it can set on a file it owns.
	all, nodump := uint32(fsNodumpFl|fsImmutableFl), uint32(fsNodumpFl)
	setflags := func(fd int) {
		unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocSetflags, uintptr(unsafe.Pointer(&all)))
		unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocSetflags, uintptr(unsafe.Pointer(&nodump)))
	}
	setflags(shared)
	var fsx [fsxattrSize]byte
	unix.Syscall(unix.SYS_IOCTL, uintptr(shared), fsIocFssetxattr, uintptr(unsafe.Pointer(&fsx[0])))
	for a.running() {
		setflags(n)
	}
}

// attackSupervisor tries every way to the supervisor (its process is the command's parent) that
// would let the command answer its own notifications.
func attackSupervisor(a *attacker) {
	sup := os.Getppid()
	if pidfd, err := unix.PidfdOpen(sup, 0); err == nil {
		for fd := range 256 {
			if got, err := unix.PidfdGetfd(pidfd, fd, 0); err == nil {
				a.failf("pidfd_getfd(supervisor, %d) gave descriptor %d", fd, got)
				unix.Close(got)
			}
		}
		unix.Close(pidfd)
	}
	if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(sup), 0, 0, 0, 0); e == 0 {
		a.failf("ptrace(PTRACE_SEIZE, supervisor) succeeded")
	}
	var b [8]byte
	local := []unix.Iovec{{Base: &b[0], Len: 8}}
	remote := []unix.RemoteIovec{{Base: uintptr(0x400000), Len: 8}}
	if _, err := unix.ProcessVMReadv(sup, local, remote, 0); err == nil || err == unix.EFAULT {
		a.failf("process_vm_readv(supervisor) was allowed (%v)", err)
	}
	for _, p := range []string{"mem", "fd", "fdinfo", "environ", "root/", "cwd/", "map_files"} {
		name := "/proc/" + strconv.Itoa(sup) + "/" + p
		if fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			a.failf("open %s succeeded", name)
			unix.Close(fd)
		}
	}
}

// raceTree makes the shared tree the attacks aim at, readable by everyone, on a file system with
// inode flags and user xattrs where there is one (the store root's), and the decoy: a mirror of
// the target outside it (base/deco/dir/NAME for base/tree/dir/NAME) that uid may change. The
// tree's directories own and mine belong to uid.
func raceTree(t *testing.T, uid int) (tree, target, decoy string) {
	t.Helper()
	base, err := os.MkdirTemp(defaultStoreRoot(), "fsvirt-race-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// An attack that set the immutable flag would make the tree undeletable: clear it first.
		clearFlags(base)
		os.RemoveAll(base)
	})
	os.Chmod(base, 0o755)
	tree = filepath.Join(base, "tree")
	decoyDir := filepath.Join(base, "deco", "dir")
	for _, d := range []string{tree, filepath.Join(tree, "dir"), filepath.Dir(decoyDir), decoyDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	name := "target"
	if uid != 0 {
		// The unprivileged attacker owns a shared file: changing its own file in the view must
		// not reach the shared tree either.
		name = "ownfil"
	}
	target = filepath.Join(tree, "dir", name)
	if err := os.WriteFile(target, []byte("shared\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unix.Setxattr(target, "user.x", []byte("shared"), 0) // where the file system has them
	decoy = filepath.Join(decoyDir, name)
	if err := os.WriteFile(decoy, []byte("decoy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// own, mine: shared directories the attacker owns; it makes directories in own in the view.
	own, mine := filepath.Join(tree, "own"), filepath.Join(tree, "mine")
	for _, d := range []string{own, mine} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{target, decoyDir, decoy, own, mine} {
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	if uid == 0 {
		os.Chown(target, 0, 0)
	}
	return tree, target, decoy
}

// TestRaceAttacks runs every attack in process mode, both policies, as root and as nobody, and
// checks the shared tree afterwards.
func TestRaceAttacks(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range attacks {
		for _, policy := range []Policy{PolicyFast, PolicyStrict} {
			for _, uid := range []int{0, 65534} {
				who := map[bool]string{true: "root", false: "nobody"}[uid == 0]
				t.Run(at.name+"/"+policy.String()+"/"+who, func(t *testing.T) {
					if os.Geteuid() != 0 {
						t.Skip("needs root to build trees for both users")
					}
					tree, target, decoy := raceTree(t, uid)
					fx := attacktest.Fixture{Parent: filepath.Dir(tree), Dir: tree}
					before := fx.Take(t)
					env := []string{"FSVIRT_TEST_ATTACK=" + at.name, "FSVIRT_TEST_TARGET=" + target,
						"FSVIRT_TEST_DECOY=" + decoy, "FSVIRT_TEST_DIR=" + filepath.Dir(target)}
					if uid != 0 {
						env = append(env, "FSVIRT_TEST_UID="+strconv.Itoa(uid))
					}
					out, res := runPolicyCmd(t, tree, policy, env, self)
					if res.ExitStatus != 0 {
						t.Errorf("the attack did what it must not (exit %d):\n%s", res.ExitStatus, out)
					}
					for _, d := range before.Diff(fx.Take(t), treetest.Exact) {
						t.Errorf("the shared tree changed: %s", d)
					}
				})
			}
		}
	}
}
