package impl

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// noGC turns the garbage collector off for the test, and gives the supervisor a P of its own: a
// function that starts a process can deadlock the whole program, because Go's vfork keeps the
// forking thread's P until the child has exec'd, and the child's execve waits for the supervisor.
// When no other P is free (GOMAXPROCS 1, as in the kernel matrix's VMs), or a collection stops the
// world in that window, the supervisor never runs. Measured: 6 of 10 runs of 200
// exec.Command("/bin/true").Run() in Invoke hung; none with GOGC=off; every run with GOMAXPROCS=1.
// These tests check which view the children get, not that; the hang is in README's limits.
func noGC(t *testing.T) {
	old := debug.SetGCPercent(-1)
	procs := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(max(procs, 2))
	t.Cleanup(func() {
		debug.SetGCPercent(old)
		runtime.GOMAXPROCS(procs)
	})
}

// TestChildrenShareTheView: processes a function starts, and theirs, work in its view.
func TestChildrenShareTheView(t *testing.T) {
	noGC(t)
	shared := t.TempDir()
	mkTree(t, shared, "file f shared")
	p, _ := newTestPool(t, 1, shared)
	err := p.Invoke(context.Background(), func(*Invocation) error {
		if err := os.WriteFile(shared+"/f", []byte("mine"), 0o644); err != nil {
			return err
		}
		out, err := exec.Command("/bin/sh", "-c", "cat "+shared+"/f; /bin/sh -c 'echo child > "+shared+"/g'").CombinedOutput()
		if err != nil {
			t.Errorf("child: %v: %s", err, out)
		}
		if string(out) != "mine" {
			t.Errorf("the child read %q, want the view's %q", out, "mine")
		}
		if b, err := os.ReadFile(shared + "/g"); string(b) != "child\n" {
			t.Errorf("the grandchild's file reads %q (%v) in the view", b, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(shared + "/f"); string(b) != "shared" {
		t.Errorf("shared f is %q", b)
	}
	if _, err := os.Stat(shared + "/g"); err == nil {
		t.Error("the grandchild's file reached the shared tree")
	}
}

// TestLeftoverProcessFenced: a process that a function left running, and one it starts later, see
// nothing of the next invocation on the same worker, not even through the store, and change
// nothing in the tree (EROFS); outside the trees they work as before.
func TestLeftoverProcessFenced(t *testing.T) {
	noGC(t)
	shared, outside := t.TempDir(), t.TempDir()
	mkTree(t, shared, "file f shared")
	p, storeRoot := newTestPool(t, 1, shared)
	f := shared + "/f"
	// What the leftover and its child read of f, directly and in the private layers of the store,
	// and whether their writes succeed.
	// It waits for its stdin to close, which the test does once the invocation has ended.
	script := `read x; cat ` + f + `; echo; if echo leftover > ` + f + `; then echo wrote; fi
		cat ` + storeRoot + `/*/inv-*/upper` + f + ` || echo hidden
		echo out > ` + outside + `/log
		/bin/sh -c 'cat ` + f + `; echo; if echo grandchild > ` + f + `; then echo wrote; fi' 2>&1`
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stdin, release, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer release.Close()
	var cmd *exec.Cmd
	err = p.Invoke(context.Background(), func(*Invocation) error {
		cmd = exec.Command("/bin/sh", "-c", script)
		cmd.Stdin, cmd.Stdout = stdin, w
		return cmd.Start()
	})
	w.Close()
	stdin.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	var got string
	err = p.Invoke(context.Background(), func(*Invocation) error {
		if err := os.WriteFile(f, []byte("second"), 0o644); err != nil {
			return err
		}
		release.Close() // the first invocation has ended: the leftover goes on
		select {
		case got = <-out:
		case <-time.After(30 * time.Second):
			t.Fatal("the leftover process did not finish")
		}
		if b, err := os.ReadFile(f); string(b) != "second" {
			t.Errorf("the second invocation reads %q (%v), want its own %q", b, err, "second")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The grandchild's refused write: dash says "/bin/sh: 1: cannot create F: Read-only file system".
	if !strings.HasPrefix(got, "shared\nhidden\nshared\n") || !strings.Contains(got, "Read-only file system") ||
		strings.Contains(got, "wrote") {
		t.Errorf("the leftover and its child printed\n%q\nwant the shared file, hidden, the shared file again and EROFS", got)
	}
	if b, _ := os.ReadFile(f); string(b) != "shared" {
		t.Errorf("shared f is %q", b)
	}
	if b, err := os.ReadFile(outside + "/log"); string(b) != "out\n" {
		t.Errorf("the leftover's file outside the trees reads %q (%v)", b, err)
	}
}

func TestProcStat(t *testing.T) {
	ppid, start, err := procStat(os.Getpid())
	if err != nil || ppid != os.Getppid() || start == 0 {
		t.Errorf("procStat(self) = %d, %d, %v; want ppid %d", ppid, start, err, os.Getppid())
	}
	// A command name with spaces and parentheses does not shift the fields.
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine, its name with it
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("x) y ) 9 z\x00")[0])), 0, 0, 0); err != nil {
			done <- err
			return
		}
		ppid, start, err := procStat(unix.Gettid())
		if err == nil && (ppid != os.Getppid() || start == 0) {
			err = fmt.Errorf("ppid %d, start %d; want ppid %d", ppid, start, os.Getppid())
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Errorf("procStat of a thread named %q: %v", "x) y ) 9 z", err)
	}
	if _, _, err := procStat(1 << 30); err == nil {
		t.Error("procStat of no process succeeded")
	}
}
