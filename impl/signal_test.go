package impl

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/internal/notify"
	"github.com/fsvirt/fsvirt/internal/sysexec"
	"github.com/fsvirt/fsvirt/internal/treetest"
	"golang.org/x/sys/unix"
)

// hammer sends SIGURG, Go's preemption signal, to the threads tids returns, as fast as it can, until
// the returned function is called. The runtime takes the spurious signals in its stride; the
// seccomp calls they interrupt are what the tests below are about.
func hammer(tids func() []int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pid := unix.Getpid()
		for {
			select {
			case <-done:
				return
			default:
			}
			for _, tid := range tids() {
				unix.Tgkill(pid, tid, unix.SIGURG)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// allThreads lists the process's threads.
func allThreads() []int {
	entries, _ := os.ReadDir("/proc/self/task")
	tids := make([]int, 0, len(entries))
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids
}

// rewriteAndReread runs rounds invocations on each of two goroutines, each writing the shared file f
// and reading it back five times: every write opens with O_TRUNC (copy-up, then an injected fd) and
// every read opens the private copy (an injected fd). It returns the failed invocations' errors.
func rewriteAndReread(t *testing.T, p *Pool, f string, rounds int) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				mine := fmt.Sprintf("worker %d round %d", g, i)
				errs <- p.Invoke(ctx, func(*Invocation) error {
					for k := 0; k < 5; k++ {
						if err := os.WriteFile(f, []byte(mine), 0o644); err != nil {
							return fmt.Errorf("write %d: %w", k, err)
						}
						got, err := os.ReadFile(f)
						if err != nil {
							return fmt.Errorf("read %d: %w", k, err)
						}
						if string(got) != mine {
							return fmt.Errorf("%s: read back %q after write %d", mine, got, k)
						}
					}
					return nil
				})
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	var failed []error
	for err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	return failed
}

func reportFailed(t *testing.T, failed []error) {
	t.Helper()
	for i, err := range failed {
		if i == 5 {
			t.Errorf("... %d failed invocations in all", len(failed))
			break
		}
		t.Error(err)
	}
}

func signalRounds() int {
	if testing.Short() {
		return 60
	}
	return 200
}

// TestSupervisorInjectionUnderSignals: the supervisor thread is a Go thread, so the runtime
// interrupts it with SIGURG (async preemption) at any moment, including while it waits in
// SECCOMP_IOCTL_NOTIF_ADDFD for the task to take the fd. Here the supervisor thread gets SIGURG as
// fast as a goroutine can send it while invocations write and re-read files through injected fds:
// every injected fd must be the file, never fd 0 or a descriptor the task did not ask for. Before
// the supervisor blocked signals, about 170 of 600 invocations failed here ("bad file descriptor",
// "is a directory").
func TestSupervisorInjectionUnderSignals(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared")
	p, err := NewPool(Config{Workers: 2, Trees: []string{shared}, Store: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sup := p.sups[0]
	for len(sup.threadIDs()) == 0 {
		time.Sleep(time.Millisecond)
	}
	stop := hammer(func() []int { return sup.threadIDs() })
	failed := rewriteAndReread(t, p, shared+"/f", signalRounds())
	stop()
	reportFailed(t, failed)
}

// TestNoLeakWithoutAddfdSend: before 5.14 an fd is injected, then the answer sent, in two ioctls
// (docs/kernel.md, "Signals withdraw notifications"). Every thread gets SIGURG here while
// invocations open files through injected fds; afterwards no descriptor may still point into the
// store or the shared tree.
//
// With WAIT_KILLABLE_RECV (5.19) no signal interrupts a received notification, and nothing may leak.
// Without it (5.10), a signal between the two ioctls withdraws the notification: the installed fd
// stays in the task's table, unknown to it, while the syscall restarts. In thread mode that table is
// the process's own, so the supervisor closes the orphan; before it did, 6811 of 6000 opens leaked
// one here. What remains is the kernel's own race before 5.19: a signal that ends the task's wait
// just before the SEND lands makes the task restart the syscall although the SEND succeeded, and
// nothing tells the supervisor (1 to 5 leaks in 6000 opens, measured on one machine; 0 to 6 in
// 1200, 2.5 on average, in 10 runs on another, and 8 in 1200 there while two VMs ran beside it;
// 8 to 28 in 4000 in 16 runs on a third, where one run of the kernel matrix, beside two VMs, saw
// 31 in 1200 and the next 1). The bound, 1 in 20, allows for that and stays far below the one
// leak per open of a supervisor that does not close orphans.
func TestNoLeakWithoutAddfdSend(t *testing.T) {
	for _, c := range []struct {
		name         string
		waitKillable bool
		bound        func(opens int) int
	}{
		{"wait-killable", true, func(int) int { return 0 }},
		{"no-wait-killable", false, func(opens int) int { return opens / 20 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := notify.Features()
			if c.waitKillable && !f.WaitKillableRecv {
				t.Skip("the kernel has no WAIT_KILLABLE_RECV (5.19)")
			}
			f.AddfdSend = false
			f.WaitKillableRecv = c.waitKillable
			defer notify.SetForTest(f)()
			shared, storeRoot := t.TempDir(), t.TempDir()
			treetest.Build(t, shared, "file f shared")
			p, err := NewPool(Config{Workers: 2, Trees: []string{shared}, Store: storeRoot})
			if err != nil {
				t.Fatal(err)
			}
			rounds := signalRounds()
			stop := hammer(allThreads)
			failed := rewriteAndReread(t, p, shared+"/f", rounds)
			stop()
			reportFailed(t, failed)
			if err := p.Close(); err != nil {
				t.Error(err)
			}
			fds, err := sysexec.OpenFDs()
			if err != nil {
				t.Fatal(err)
			}
			var leaked []string
			for fd, target := range fds {
				if strings.HasPrefix(target, storeRoot) || strings.HasPrefix(target, shared) {
					leaked = append(leaked, fmt.Sprintf("fd %d: %s", fd, target))
					unix.Close(fd)
				}
			}
			opens := rounds * 2 * 5 * 2
			if len(leaked) > c.bound(opens) {
				t.Errorf("%d of %d injected fds leaked (at most %d allowed), e.g. %s", len(leaked), opens, c.bound(opens), leaked[0])
			} else if len(leaked) > 0 {
				t.Logf("%d of %d injected fds leaked (the kernel's race before 5.19)", len(leaked), opens)
			}
		})
	}
}
