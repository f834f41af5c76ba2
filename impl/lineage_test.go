package impl

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// forkExec starts argv from the calling thread with fork, not vfork (a function's own vfork is
// refused: see vfork.go), with its stdin, stdout and stderr dup'ed from the files given. It makes
// a child of a worker thread as C code in a function would, without Invocation.Start.
func forkExec(t *testing.T, argv []string, stdin, stdout, stderr *os.File) *os.Process {
	t.Helper()
	argv0, err := syscall.BytePtrFromString(argv[0])
	if err != nil {
		t.Fatal(err)
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		t.Fatal(err)
	}
	envp, err := syscall.SlicePtrFromStrings(os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	fds := [3]int{int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd())}
	syscall.ForkLock.Lock()
	pid, errno := rawForkExec(argv0, &argvp[0], &envp[0], &fds)
	syscall.ForkLock.Unlock()
	runtime.KeepAlive(argvp)
	runtime.KeepAlive(envp)
	if errno != 0 {
		t.Fatalf("fork: %v", errno)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	return proc
}

// rawForkExec is the part of forkExec that the child runs too: system calls only, no Go code
// that could grow the stack or take a lock.
//
//go:nosplit
//go:norace
func rawForkExec(argv0 *byte, argv, envv **byte, fds *[3]int) (int, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0)
	if errno != 0 || pid != 0 {
		return int(pid), errno
	}
	syscall.RawSyscall(syscall.SYS_DUP2, uintptr(fds[0]), 0, 0)
	syscall.RawSyscall(syscall.SYS_DUP2, uintptr(fds[1]), 1, 0)
	syscall.RawSyscall(syscall.SYS_DUP2, uintptr(fds[2]), 2, 0)
	syscall.RawSyscall(syscall.SYS_EXECVE, uintptr(unsafe.Pointer(argv0)), uintptr(unsafe.Pointer(argv)),
		uintptr(unsafe.Pointer(envv)))
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 127, 0, 0)
	return 0, 0
}

// TestSupervisorChildrenShareTheView: processes a function forks, and theirs, work in its view.
func TestSupervisorChildrenShareTheView(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared")
	p, _ := newTestPool(t, 1, shared)
	err := p.Invoke(context.Background(), func(*Invocation) error {
		if err := os.WriteFile(shared+"/f", []byte("mine"), 0o644); err != nil {
			return err
		}
		// From a directory that exists only in the view: the child inherits it as its working
		// directory, and its child from it.
		if err := os.Mkdir(shared+"/new", 0o755); err != nil {
			return err
		}
		if err := os.Chdir(shared + "/new"); err != nil {
			return err
		}
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer r.Close()
		proc := forkExec(t, []string{"/bin/sh", "-c", "cat ../f; /bin/sh -c 'echo child > ../g'"}, os.Stdin, w, w)
		w.Close()
		out, _ := io.ReadAll(r)
		if ps, err := proc.Wait(); err != nil || !ps.Success() {
			t.Errorf("child: %v %v: %s", ps, err, out)
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

// TestSupervisorLeftoverProcessFenced: a process that a function left running, and one it starts
// later, see nothing of the next invocation on the same worker, not even through the store, and
// change nothing in the tree (EROFS); outside the trees they work as before.
func TestSupervisorLeftoverProcessFenced(t *testing.T) {
	shared, outside := t.TempDir(), t.TempDir()
	treetest.Build(t, shared, "file f shared")
	p, storeRoot := newTestPool(t, 1, shared)
	f := shared + "/f"
	// What the leftover and its child read of f, directly and in the private layers of the store,
	// and whether their writes succeed.
	// It waits for its stdin to close, which the test does once the invocation has ended.
	script := `read x; cat ` + f + `; echo; if echo leftover > ` + f + `; then echo wrote; fi
		cat ` + storeRoot + `/*/*/inv-*/upper` + f + ` || echo hidden
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
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	var proc *os.Process
	err = p.Invoke(context.Background(), func(*Invocation) error {
		proc = forkExec(t, []string{"/bin/sh", "-c", script}, stdin, w, devNull)
		return nil
	})
	w.Close()
	stdin.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Wait()
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
