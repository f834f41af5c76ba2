package impl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// gcPressure runs collections back to back until the test ends, with GOMAXPROCS 1: the conditions
// in which a function's own vfork deadlocked the program (see vfork.go).
func gcPressure(t *testing.T) {
	procs := runtime.GOMAXPROCS(1)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			runtime.GC()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	t.Cleanup(func() {
		stop.Store(true)
		<-done
		runtime.GOMAXPROCS(procs)
	})
}

// TestSupervisorStartInTheView: processes started with Start, and theirs, read and write the
// invocation's view, relative paths from the function's working directory, even when the directory
// and the program exist only in the view; ExtraFiles keep their numbers. Under GC pressure,
// GOMAXPROCS 1.
func TestSupervisorStartInTheView(t *testing.T) {
	gcPressure(t)
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared")
	p, _ := newTestPool(t, 1, shared)
	for i := range 10 {
		err := p.Invoke(context.Background(), func(inv *Invocation) error {
			if err := os.WriteFile(shared+"/f", []byte("mine"), 0o644); err != nil {
				return err
			}
			if err := os.Mkdir(shared+"/new", 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(shared+"/new/prog", []byte("#!/bin/sh\necho prog \"$@\"\n"), 0o755); err != nil {
				return err
			}
			if err := os.Chdir(shared + "/new"); err != nil { // the worker's own cwd
				return err
			}
			r, w, err := os.Pipe()
			if err != nil {
				return err
			}
			defer r.Close()
			cmd := exec.Command("/bin/sh", "-c", `cat ../f; echo; pwd; echo child > g; /bin/sh -c 'echo grandchild >> g'; ./prog x; echo extra >&3`)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = &out, &out, []*os.File{w}
			err = inv.Start(cmd)
			w.Close()
			if err != nil {
				return err
			}
			extra, _ := io.ReadAll(r)
			if err := cmd.Wait(); err != nil {
				t.Errorf("child: %v: %s", err, out.String())
			}
			if want := "mine\n" + shared + "/new\nprog x\n"; out.String() != want {
				t.Errorf("the child printed %q, want %q", out.String(), want)
			}
			if string(extra) != "extra\n" {
				t.Errorf("fd 3 of the child got %q", extra)
			}
			if cmd.Path != "/bin/sh" || cmd.Args[0] != "/bin/sh" || len(cmd.ExtraFiles) != 1 {
				t.Errorf("cmd not restored: %q %q %d extra files", cmd.Path, cmd.Args, len(cmd.ExtraFiles))
			}
			if b, err := os.ReadFile("g"); string(b) != "child\ngrandchild\n" {
				t.Errorf("the children's file reads %q (%v) in the view", b, err)
			}
			// From a goroutine of the function, on another thread: still the function's directory,
			// the view's own or a shared one.
			pwdFromGoroutine := func(want string) {
				t.Helper()
				pwd := make(chan string, 1)
				go func() {
					b, err := startOutput(inv, exec.Command("/bin/pwd"))
					pwd <- fmt.Sprint(string(b), err)
				}()
				if got := <-pwd; got != want+"\n<nil>" {
					t.Errorf("/bin/pwd started from a goroutine printed %q, want %q", got, want)
				}
			}
			pwdFromGoroutine(shared + "/new")
			if err := os.Chdir(shared); err != nil {
				return err
			}
			pwdFromGoroutine(shared)
			if err := os.Chdir("new"); err != nil {
				return err
			}
			direct := exec.Command("./prog", "direct")
			if b, err := startOutput(inv, direct); string(b) != "prog direct\n" {
				t.Errorf("./prog, only in the view, printed %q (%v)", b, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(i, err)
		}
	}
	if b, _ := os.ReadFile(shared + "/f"); string(b) != "shared" {
		t.Errorf("shared f is %q", b)
	}
	if _, err := os.Stat(shared + "/new"); err == nil {
		t.Error("the view's directory reached the shared tree")
	}
}

// startOutput is cmd.Output with Start.
func startOutput(inv *Invocation, cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := inv.Start(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return out.Bytes(), err
}

// TestSupervisorStartErrors: what cmd.Start would report comes back from Start, as the same errors,
// and nothing is left running.
func TestSupervisorStartErrors(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "dir d", "file d/data 0644 x")
	p, _ := newTestPool(t, 1, shared)
	var kept *Invocation
	err := p.Invoke(context.Background(), func(inv *Invocation) error {
		kept = inv
		if err := os.Remove(shared + "/d/data"); err != nil {
			return err
		}
		if err := os.Remove(shared + "/d"); err != nil {
			return err
		}
		if err := os.WriteFile(shared+"/noexec", []byte("#!/bin/sh\n"), 0o644); err != nil {
			return err
		}
		check := func(cmd *exec.Cmd, op string, want error) {
			t.Helper()
			err := inv.Start(cmd)
			var pe *fs.PathError
			if !errors.Is(err, want) || !errors.As(err, &pe) || pe.Op != op {
				t.Errorf("Start(%s in %q) = %v, want %s ... %v", cmd.Path, cmd.Dir, err, op, want)
			}
		}
		check(exec.Command(shared+"/d/data"), "fork/exec", unix.ENOENT) // removed in the view
		check(exec.Command(shared+"/noexec"), "fork/exec", unix.EACCES)
		cmd := exec.Command("/bin/true")
		cmd.Dir = shared + "/d"
		check(cmd, "chdir", unix.ENOENT)
		if err := inv.Start(exec.Command("fsvirt-no-such-command")); !errors.Is(err, exec.ErrNotFound) {
			t.Errorf("Start of a command not in PATH: %v", err)
		}
		cmd = exec.Command("/bin/true")
		if err := inv.Start(cmd); err != nil {
			return err
		}
		if err := inv.Start(cmd); err == nil || !strings.Contains(err.Error(), "already started") {
			t.Errorf("second Start: %v", err)
		}
		return cmd.Wait()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := kept.Start(exec.Command("/bin/true")); err == nil || !strings.Contains(err.Error(), "ended") {
		t.Errorf("Start after the invocation: %v", err)
	}
	if _, err := os.Stat(shared + "/d/data"); err != nil {
		t.Errorf("shared d/data: %v", err)
	}
}

// TestSupervisorStartedProcessFenced: a process started with Start that outlives its invocation
// gets the fence view: the shared file, not the next invocation's copy, and EROFS on writes.
func TestSupervisorStartedProcessFenced(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared")
	p, _ := newTestPool(t, 1, shared)
	f := shared + "/f"
	stdin, release, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer release.Close()
	var out bytes.Buffer
	cmd := exec.Command("/bin/sh", "-c", `read x; cat `+f+`; echo; if echo late > `+f+`; then echo wrote; fi`)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &out
	err = p.Invoke(context.Background(), func(inv *Invocation) error {
		if err := os.WriteFile(f, []byte("first"), 0o644); err != nil {
			return err
		}
		return inv.Start(cmd)
	})
	stdin.Close()
	if err != nil {
		t.Fatal(err)
	}
	err = p.Invoke(context.Background(), func(*Invocation) error {
		if err := os.WriteFile(f, []byte("second"), 0o644); err != nil {
			return err
		}
		release.Close()
		cmd.Wait()
		if b, err := os.ReadFile(f); string(b) != "second" {
			t.Errorf("the second invocation reads %q (%v)", b, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "shared\n") || !strings.Contains(got, "Read-only file system") ||
		strings.Contains(got, "wrote") {
		t.Errorf("the process left running printed %q, want the shared file and EROFS", got)
	}
	if b, _ := os.ReadFile(f); string(b) != "shared" {
		t.Errorf("shared f is %q", b)
	}
}
