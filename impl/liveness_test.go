package impl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// A call the supervisor cannot finish at once (a connect to a UNIX socket whose backlog is full,
// which the supervisor performs on its duplicate of the caller's socket) must not hold up other
// calls: not another invocation's (thread mode), not another thread's of the same view (process
// mode). The tests below keep one such call waiting, measure the latency of other calls
// meanwhile, and only then let the stuck one finish. A supervisor that answered one call at a
// time never answered the others: the helper's watchdog then frees the stuck call and the test
// fails with "stalled".

// livenessCalls is how many calls are timed while one call is stuck.
const livenessCalls = 300

// livenessBound is the largest delay allowed for one call while another is stuck: generous, for a
// loaded two-core machine under emulation; the measured figures are logged. livenessWatchdog frees
// the stuck call of a supervisor that stalled, so that the test ends and says so.
const (
	livenessBound    = 2 * time.Second
	livenessWatchdog = 30 * time.Second
)

// fullSocket binds a listening UNIX socket at sock with a backlog of 0 and fills its queue with
// one connection: the next connect to sock waits until the listener accepts.
func fullSocket(sock string) (listener, client int, err error) {
	ls, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, -1, err
	}
	if err := unix.Bind(ls, &unix.SockaddrUnix{Name: sock}); err != nil {
		unix.Close(ls)
		return -1, -1, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(ls, 0); err != nil {
		unix.Close(ls)
		return -1, -1, fmt.Errorf("listen: %w", err)
	}
	c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		unix.Close(ls)
		return -1, -1, err
	}
	if err := unix.Connect(c, &unix.SockaddrUnix{Name: sock}); err != nil {
		unix.Close(ls)
		unix.Close(c)
		return -1, -1, fmt.Errorf("first connect: %w", err)
	}
	return ls, c, nil
}

// connectAgain connects a new socket to sock, which waits while sock's queue is full.
func connectAgain(sock string) error {
	c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(c)
	return unix.Connect(c, &unix.SockaddrUnix{Name: sock})
}

// timeCalls stats path n times, one after another, and returns the slowest and the median, or an
// error when one call took longer than livenessBound (a stalled supervisor).
func timeCalls(path string, n int) (slowest, median time.Duration, err error) {
	lat := make([]time.Duration, 0, n)
	var st unix.Stat_t
	for range n {
		t0 := time.Now()
		if err := unix.Stat(path, &st); err != nil {
			return 0, 0, fmt.Errorf("stat: %w", err)
		}
		lat = append(lat, time.Since(t0))
		if d := lat[len(lat)-1]; d > livenessBound {
			return 0, 0, fmt.Errorf("stalled: call %d of %d took %v", len(lat), n, d)
		}
	}
	slices.Sort(lat)
	return lat[n-1], lat[n/2], nil
}

// runLiveness is the command of TestSupervisorStuckCallDelaysNoOtherProcess's run: one thread
// connects and waits, the main one makes its calls. It prints "slowest median" and exits 0, or
// prints why not.
func runLiveness(root string) int {
	sock := filepath.Join(root, "s")
	ls, c1, err := fullSocket(sock)
	if err != nil {
		fmt.Println("setup:", err)
		return 1
	}
	defer unix.Close(c1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // a thread of its own; every thread of the command is in the view
		done <- connectAgain(sock)
	}()
	time.Sleep(100 * time.Millisecond) // let the second connect reach the supervisor
	select {
	case err := <-done:
		fmt.Println("the second connect did not wait:", err)
		return 1
	default:
	}
	// A watchdog: a supervisor that waits in the connect answers nothing else; free it, so the
	// run ends and says so.
	watchdog := time.AfterFunc(livenessWatchdog, func() { unix.Accept(ls) })
	slowest, median, err := timeCalls(filepath.Join(root, "f"), livenessCalls)
	if !watchdog.Stop() && err == nil {
		err = fmt.Errorf("stalled: the calls finished only after the stuck connect was freed")
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	select {
	case err := <-done:
		fmt.Println("the stuck connect ended early:", err)
		return 1
	default:
	}
	if _, _, err := unix.Accept(ls); err != nil {
		fmt.Println("accept:", err)
		return 1
	}
	select {
	case err := <-done:
		if err != nil {
			fmt.Println("the stuck connect failed once accepted:", err)
			return 1
		}
	case <-time.After(10 * time.Second):
		fmt.Println("the stuck connect did not end once accepted")
		return 1
	}
	fmt.Println(slowest, median)
	return 0
}

// TestSupervisorStuckCallDelaysNoOtherProcess: process mode, one view; a thread of the command
// waits in a connect the supervisor performs while another thread of it makes its calls.
func TestSupervisorStuckCallDelaysNoOtherProcess(t *testing.T) {
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(policy.String(), func(t *testing.T) {
			shared := t.TempDir()
			treetest.Build(t, shared, "file f x")
			before := treetest.Snap(t, shared)
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			out, res := runPolicyCmd(t, shared, policy, []string{"FSVIRT_TEST_LIVENESS=" + shared}, exe)
			if res.ExitStatus != 0 {
				t.Fatalf("exit %d: %s", res.ExitStatus, out)
			}
			checkLiveness(t, strings.TrimSpace(out))
			if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}

// checkLiveness parses "slowest median" and holds the slowest to livenessBound.
func checkLiveness(t *testing.T, out string) {
	t.Helper()
	var slowest, median time.Duration
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Fatalf("output %q", out)
	}
	var err error
	if slowest, err = time.ParseDuration(f[0]); err == nil {
		median, err = time.ParseDuration(f[1])
	}
	if err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	t.Logf("%d calls while one was stuck: slowest %v, median %v", livenessCalls, slowest, median)
	if slowest > livenessBound {
		t.Errorf("a call waited %v while another was stuck", slowest)
	}
}

// TestSupervisorStuckCallDelaysNoOtherInvocation: thread mode; one invocation waits in a connect
// the supervisor performs, another of the same pool makes its calls meanwhile.
func TestSupervisorStuckCallDelaysNoOtherInvocation(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f x")
	before := treetest.Snap(t, shared)
	p, _ := newTestPool(t, 2, shared)
	stuck := make(chan int, 1) // the stuck invocation's listener
	aDone := make(chan error, 1)
	go func() {
		aDone <- p.Invoke(context.Background(), func(*Invocation) error {
			// On the worker thread, the only one in the view: the second connect waits there.
			sock := filepath.Join(shared, "s")
			ls, c1, err := fullSocket(sock)
			if err != nil {
				return err
			}
			defer unix.Close(ls)
			defer unix.Close(c1)
			stuck <- ls
			return connectAgain(sock)
		})
	}()
	var ls int
	select {
	case ls = <-stuck:
	case err := <-aDone:
		t.Fatalf("the stuck invocation ended: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // let the second connect reach the supervisor
	select {
	case err := <-aDone:
		t.Fatalf("the second connect did not wait: %v", err)
	default:
	}
	var slowest, median time.Duration
	// The watchdog frees a stalled supervisor, from outside any view: the listener is in the
	// pool's own descriptor table.
	watchdog := time.AfterFunc(livenessWatchdog, func() { unix.Accept(ls) })
	err := p.Invoke(context.Background(), func(*Invocation) error {
		var err error
		slowest, median, err = timeCalls(filepath.Join(shared, "f"), livenessCalls)
		return err
	})
	if !watchdog.Stop() && err == nil {
		err = fmt.Errorf("stalled: the calls finished only after the stuck connect was freed")
	}
	if err != nil {
		t.Error(err)
	} else {
		checkLiveness(t, fmt.Sprint(slowest, " ", median))
		if _, _, err := unix.Accept(ls); err != nil {
			t.Errorf("accept: %v", err)
		}
	}
	select {
	case err := <-aDone:
		if err != nil {
			t.Errorf("the stuck invocation: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck connect did not end once accepted")
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}

// TestUserfaultfdRefused: no task in a view can make a page whose faults it handles (see
// supervisor; docs/kernel.md, "The supervisor must not wait"): the syscall is denied and
// /dev/userfaultfd's ioctl refused.
func TestUserfaultfdRefused(t *testing.T) {
	shared := t.TempDir()
	p, _ := newTestPool(t, 1, shared)
	err := p.Invoke(context.Background(), func(*Invocation) error {
		if _, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0); errno != unix.EPERM {
			return fmt.Errorf("userfaultfd: errno %v, want EPERM", errno)
		}
		fd, err := unix.Open("/dev/userfaultfd", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil // no such device on this kernel (before 6.1), or no right to it
		}
		defer unix.Close(fd)
		const userfaultfdIocNew = 0xaa00 // _IO(0xAA, 0x00)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), userfaultfdIocNew, unix.O_CLOEXEC); errno != unix.EPERM {
			return fmt.Errorf("USERFAULTFD_IOC_NEW: errno %v, want EPERM", errno)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestPanicAnsweredEIO: every notification gets an answer. A panic while answering one is a
// supervisor fault: that call fails with EIO, and the view's next calls are answered (the turn
// was given back).
func TestPanicAnsweredEIO(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f x")
	p, _ := newTestPool(t, 1, shared)
	bad := filepath.Join(shared, "f")
	panicOnPathForTest.Store(&bad)
	defer panicOnPathForTest.Store(nil)
	err := p.Invoke(context.Background(), func(*Invocation) error {
		var st unix.Stat_t
		for range 2 {
			if err := unix.Fstatat(unix.AT_FDCWD, bad, &st, 0); err != unix.EIO {
				return fmt.Errorf("stat of the planted path: %v, want EIO", err)
			}
		}
		if err := os.WriteFile(filepath.Join(shared, "g"), []byte("y"), 0o644); err != nil {
			return fmt.Errorf("the next call: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// runStuckLookup is the command of TestStuckLookupDelaysNoOtherCall's run: one thread makes a call
// ("stat:", "statx:" or "creat:" and the path) on a path on a file system whose server is stopped,
// the main one makes its calls on root. It
// prints "slowest median" and exits 0 (the stuck thread dies with the process), or prints why not.
func runStuckLookup(stuck, root string) int {
	kind, stuck, _ := strings.Cut(stuck, ":")
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // a thread of its own; every thread of the command is in the view
		switch kind {
		case "stat":
			var st unix.Stat_t
			done <- unix.Stat(stuck, &st)
		case "statx":
			var stx unix.Statx_t
			done <- unix.Statx(unix.AT_FDCWD, stuck, 0, unix.STATX_BASIC_STATS, &stx)
		case "creat":
			fd, err := unix.Open(stuck, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
			if err == nil {
				unix.Close(fd)
			}
			done <- err
		default:
			done <- fmt.Errorf("unknown call %q", kind)
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the stat reach the supervisor, and wait there
	select {
	case err := <-done:
		fmt.Println("the stat of the stopped file system did not wait:", err)
		return 1
	default:
	}
	// Calls that change the view too, not only lookups.
	if err := os.WriteFile(filepath.Join(root, "new"), []byte("x"), 0o644); err != nil {
		fmt.Println("write:", err)
		return 1
	}
	slowest, median, err := timeCalls(filepath.Join(root, "f"), livenessCalls)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println(slowest, median)
	return 0
}

// TestStuckLookupDelaysNoOtherCall: process mode, one view; a thread of the command looks up a path
// on a FUSE file system under the tree whose server is stopped (fuse-overlayfs, SIGSTOP), while
// another thread of it makes its calls on the tree. The supervisor looks such paths up outside the
// view's turn (slowfs.go); before, the stuck lookup held the turn and every call of the view
// waited for the server.
func TestStuckLookupDelaysNoOtherCall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a FUSE file system")
	}
	fuse, err := exec.LookPath("fuse-overlayfs")
	if err != nil {
		t.Skip("needs fuse-overlayfs (Debian: fuse-overlayfs), which scripts/test.sh installs")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
	for _, c := range []struct {
		call   string
		policy Policy
	}{{"stat", PolicyFast}, {"creat", PolicyStrict}} { // each run ends after receiverGrace: ~5 s
		policy := c.policy
		t.Run(c.call+"/"+policy.String(), func(t *testing.T) {
			shared, aside := t.TempDir(), t.TempDir()
			treetest.Build(t, shared, "file f x", "dir mnt")
			treetest.Build(t, aside, "dir lower", "file lower/y y", "dir upper", "dir work")
			mnt := filepath.Join(shared, "mnt")
			cmd := exec.Command(fuse, "-f", "-o", "lowerdir="+aside+"/lower,upperdir="+aside+"/upper,workdir="+aside+"/work", mnt)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cmd.Process.Signal(unix.SIGCONT)
				unix.Unmount(mnt, unix.MNT_DETACH)
				cmd.Process.Kill()
				cmd.Wait()
			})
			mounted := false
			for range 100 {
				var st unix.Statfs_t
				if unix.Statfs(mnt, &st) == nil && st.Type == unix.FUSE_SUPER_MAGIC {
					mounted = true
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !mounted {
				t.Fatal("fuse-overlayfs did not mount")
			}
			before := treetest.Snap(t, aside)
			if err := cmd.Process.Signal(unix.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			// A watchdog: a supervisor that waits in the stuck lookup answers nothing else; let
			// the server go on, so that the run ends and says so.
			watchdog := time.AfterFunc(livenessWatchdog, func() { cmd.Process.Signal(unix.SIGCONT) })
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			out, res := runPolicyCmd(t, shared, policy,
				[]string{"FSVIRT_TEST_STUCK_LOOKUP=" + c.call + ":" + mnt + "/nothere", "FSVIRT_TEST_ROOT=" + shared}, exe)
			if !watchdog.Stop() {
				t.Fatalf("stalled: the run ended only after the FUSE server was let go on: %s", out)
			}
			if res.ExitStatus != 0 {
				t.Fatalf("exit %d: %s", res.ExitStatus, out)
			}
			checkLiveness(t, strings.TrimSpace(out))
			cmd.Process.Signal(unix.SIGCONT)
			if d := before.Diff(treetest.Snap(t, aside), treetest.Exact); d != nil {
				t.Errorf("the FUSE file system's layers changed: %q", d)
			}
		})
	}
}
