package impl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/fsvirt/fsvirt/internal/notify"
	"github.com/fsvirt/fsvirt/internal/treetest"
	"golang.org/x/sys/unix"
)

func newTestPool(t *testing.T, workers int, trees ...string) (*Pool, string) {
	t.Helper()
	storeRoot := t.TempDir()
	p, err := NewPool(Config{Workers: workers, Trees: trees, Store: storeRoot})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
		if left := storeEntries(t, storeRoot); len(left) != 0 {
			t.Errorf("store not empty after Close: %v", left)
		}
	})
	return p, storeRoot
}

// TestSupervisorConcurrentInvocationsIsolated: invocations on different threads write different
// contents to one path at the same time; each reads back its own, and the shared file never
// changes.
func TestSupervisorConcurrentInvocationsIsolated(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared")
	const workers, rounds = 4, 25
	p, _ := newTestPool(t, workers, shared)
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for i := 0; i < workers*rounds; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			mine := fmt.Sprintf("invocation %d", i)
			errs <- p.Invoke(context.Background(), func(*Invocation) error {
				if err := os.WriteFile(shared+"/f", []byte(mine), 0o644); err != nil {
					return err
				}
				runtime.Gosched() // let the others write in between
				got, err := os.ReadFile(shared + "/f")
				if err != nil {
					return err
				}
				if string(got) != mine {
					return fmt.Errorf("read back %q, want %q", got, mine)
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if b, _ := os.ReadFile(shared + "/f"); string(b) != "shared" {
		t.Errorf("shared file changed to %q", b)
	}
}

// TestSupervisorConsecutiveInvocationsLeakNothing: 1,000 invocations on one thread see nothing of
// each other and leave no fds, threads or store directories behind.
func TestSupervisorConsecutiveInvocationsLeakNothing(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	shared := t.TempDir()
	treetest.Build(t, shared, "file f 0")
	p, storeRoot := newTestPool(t, 1, shared)
	run := func(i int) error {
		return p.Invoke(context.Background(), func(inv *Invocation) error {
			b, err := os.ReadFile(shared + "/f")
			if err != nil {
				return err
			}
			if string(b) != "0" {
				return fmt.Errorf("invocation %d sees %q: a previous invocation leaked", i, b)
			}
			if _, err := os.Stat(shared + "/new"); err == nil {
				return fmt.Errorf("invocation %d sees a file created by an earlier one", i)
			}
			if err := os.WriteFile(shared+"/f", []byte(fmt.Sprint(i+1)), 0o644); err != nil {
				return err
			}
			f, err := os.Create(shared + "/new")
			if err != nil {
				return err
			}
			return f.Close()
		})
	}
	if err := run(-1); err != nil { // warm up: the runtime may start threads once
		t.Fatal(err)
	}
	fds, threads := fdCount(t), threadCount(t)
	for i := 0; i < n; i++ {
		if err := run(i); err != nil {
			t.Fatal(err)
		}
	}
	// Fewer is not a leak: a finalizer or an earlier test's cleanup may close an fd meanwhile.
	if got := fdCount(t); got > fds {
		t.Errorf("fds: %d before, %d after %d invocations", fds, got, n)
	}
	if got := threadCount(t); got > threads+2 { // the Go runtime may add a thread or two of its own
		t.Errorf("threads: %d before, %d after %d invocations", threads, got, n)
	}
	left, _ := os.ReadDir(p.store.dir)
	for _, e := range left {
		if e.Name() != "lock" {
			t.Errorf("store holds %s after %d invocations", e.Name(), n)
		}
	}
	if got := storeEntries(t, storeRoot); len(got) != 1 {
		t.Errorf("store root holds %v, want only this pool's store", got)
	}
}

func TestSupervisorPanicRecoveredAndViewRemoved(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f x")
	p, _ := newTestPool(t, 1, shared)
	var dir string
	err := p.Invoke(context.Background(), func(inv *Invocation) error {
		dir = inv.view.dir
		os.WriteFile(shared+"/f", []byte("private"), 0o644)
		panic("boom")
	})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Invoke = %v, want the panic as an error", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("private layer %s still there after a panic: %v", dir, err)
	}
	// The worker is reused and sees a fresh view.
	err = p.Invoke(context.Background(), func(*Invocation) error {
		b, err := os.ReadFile(shared + "/f")
		if err == nil && string(b) != "x" {
			err = fmt.Errorf("read %q after the panicking invocation", b)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSupervisorGoexitReplacesWorker(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f x")
	p, _ := newTestPool(t, 1, shared)
	err := p.Invoke(context.Background(), func(*Invocation) error { runtime.Goexit(); return nil })
	if err == nil || !strings.Contains(err.Error(), "Goexit") {
		t.Fatalf("Invoke = %v, want an error naming Goexit", err)
	}
	err = p.Invoke(context.Background(), func(*Invocation) error {
		return os.WriteFile(shared+"/f", []byte("y"), 0o644)
	})
	if err != nil {
		t.Fatalf("the replacement worker failed: %v", err)
	}
	if b, _ := os.ReadFile(shared + "/f"); string(b) != "x" {
		t.Errorf("the replacement worker is not virtualized: shared file is %q", b)
	}
}

// TestSupervisorContextCancellation documents what cancellation does: before a worker is free, fn
// does not run; while fn runs, its file-system calls fail with ECANCELED from then on.
func TestSupervisorContextCancellation(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f x")
	p, _ := newTestPool(t, 1, shared)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := p.Invoke(ctx, func(*Invocation) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("Invoke with a done context = %v (ran=%v), want context.Canceled without running", err, ran)
	}

	ctx, cancel = context.WithCancel(context.Background())
	var before, after error
	err := p.Invoke(ctx, func(inv *Invocation) error {
		_, before = os.ReadFile(shared + "/f")
		cancel()
		<-inv.Context().Done()
		for i := 0; i < 1000; i++ { // Invoke marks the view cancelled right after ctx is done
			if _, after = os.OpenFile(shared+"/f", os.O_RDONLY, 0); after != nil {
				break
			}
			runtime.Gosched()
		}
		return nil
	})
	if before != nil {
		t.Errorf("open before cancel: %v", before)
	}
	if !errors.Is(after, unix.ECANCELED) {
		t.Errorf("open after cancel: %v, want ECANCELED", after)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Invoke = %v, want context.Canceled", err)
	}
}

// TestGoroutinesAreNotVirtualized shows the limit of thread mode: a goroutine started by the
// function runs on another thread and writes the shared tree.
func TestGoroutinesAreNotVirtualized(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file own x", "file other x")
	p, _ := newTestPool(t, 1, shared)
	err := p.Invoke(context.Background(), func(*Invocation) error {
		if err := os.WriteFile(shared+"/own", []byte("private"), 0o644); err != nil {
			return err
		}
		done := make(chan error)
		go func() { done <- os.WriteFile(shared+"/other", []byte("leaked"), 0o644) }()
		return <-done
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(shared + "/own"); string(b) != "x" {
		t.Errorf("the function's own write reached the shared tree: %q", b)
	}
	if b, _ := os.ReadFile(shared + "/other"); string(b) != "leaked" {
		t.Errorf("the goroutine's write did not reach the shared tree (%q): is thread mode now virtualizing goroutines? update the docs", b)
	}
}

func TestRefusesKernelWithoutAddfd(t *testing.T) {
	defer notify.SetForTest(notify.FeatureSet{UserNotif: true})()
	_, err := NewPool(Config{Store: t.TempDir()})
	if !errors.Is(err, notify.ErrNotSupported) || !strings.Contains(err.Error(), "5.9") {
		t.Fatalf("NewPool on a kernel without ADDFD = %v, want an error naming the missing feature", err)
	}
	_, err = Run(context.Background(), RunConfig{Path: "/bin/true", Args: []string{"true"}, Store: t.TempDir()})
	if !errors.Is(err, notify.ErrNotSupported) {
		t.Fatalf("Run on a kernel without ADDFD = %v", err)
	}
}

func TestPoolErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"store-missing", Config{Store: "/nonexistent/store"}, "/nonexistent/store"},
		{"store-is-file", Config{Store: "/etc/hostname"}, "not a directory"},
		{"tree-missing", Config{Trees: []string{"/nonexistent/tree"}, Store: os.TempDir()}, "/nonexistent/tree"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := NewPool(c.cfg)
			if err == nil {
				p.Close()
				t.Fatal("NewPool succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name %q", err, c.want)
			}
		})
	}
}

func TestInvokeAfterClose(t *testing.T) {
	p, err := NewPool(Config{Store: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Invoke(context.Background(), func(*Invocation) error { return nil }); err != errPoolClosed {
		t.Fatalf("Invoke after Close = %v", err)
	}
}

// TestSupervisorWorkingDirectoryResetBetweenInvocations: whichever way an invocation moves its
// thread's working directory (chdir into the shared tree, fchdir, chdir into a directory only its
// view has), the next invocation on that worker starts in the pool's directory. The worker skips
// the reset after invocations that did not change directory; invocations that did not must keep
// that start too.
func TestSupervisorWorkingDirectoryResetBetweenInvocations(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "dir d", "file d/f in-d")
	start, err := unix.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newTestPool(t, 1, shared)
	ctx := context.Background()
	moves := map[string]func() error{
		"chdir shared": func() error { return unix.Chdir(shared + "/d") },
		"fchdir shared": func() error {
			fd, err := unix.Open(shared+"/d", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Fchdir(fd)
		},
		"chdir private": func() error {
			if err := unix.Mkdir(shared+"/new", 0o755); err != nil {
				return err
			}
			return unix.Chdir(shared + "/new")
		},
		"stay": func() error { return nil },
	}
	for _, name := range []string{"chdir shared", "stay", "fchdir shared", "chdir private", "stay", "stay"} {
		err := p.Invoke(ctx, func(*Invocation) error {
			if err := moves[name](); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if wd, err := unix.Getwd(); err != nil || (name != "stay") == (wd == start) {
				return fmt.Errorf("%s: getcwd = %q, %v", name, wd, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = p.Invoke(ctx, func(*Invocation) error {
			if wd, err := unix.Getwd(); err != nil || wd != start {
				return fmt.Errorf("after %s: the next invocation starts in %q (%v), want %q", name, wd, err, start)
			}
			// The kernel's own cwd too, not only the view's answer to getcwd.
			var st unix.Stat_t
			if err := unix.Stat("pool_test.go", &st); err != nil {
				return fmt.Errorf("after %s: stat of a file in the pool's directory: %w", name, err)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
}

// TestSupervisorReplacedWorkerStartsInPoolDirectory: a worker started after the process changed
// directory (one that replaces a worker lost to runtime.Goexit) still starts its invocations where
// the pool started, like the others.
func TestSupervisorReplacedWorkerStartsInPoolDirectory(t *testing.T) {
	start, err := unix.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newTestPool(t, 1, t.TempDir())
	elsewhere := t.TempDir()
	if err := os.Chdir(elsewhere); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(start)
	ctx := context.Background()
	if err := p.Invoke(ctx, func(*Invocation) error { runtime.Goexit(); return nil }); err == nil {
		t.Fatal("Invoke of a function that called runtime.Goexit returned no error")
	}
	err = p.Invoke(ctx, func(*Invocation) error {
		if wd, err := unix.Getwd(); err != nil || wd != start {
			return fmt.Errorf("the replacement worker starts in %q (%v), want the pool's %q", wd, err, start)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
