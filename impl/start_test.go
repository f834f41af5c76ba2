package impl

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// seccompCall encodes struct seccomp_data with an instruction pointer and a first argument, for
// x/net/bpf's interpreter (each 32-bit word big-endian: see seccompData).
func seccompCall(nr int, arch uint32, ip, arg0 uint64) []byte {
	b := seccompData(nr, arch)
	binary.BigEndian.PutUint32(b[dataIPLow:], uint32(ip))
	binary.BigEndian.PutUint32(b[dataIPHigh:], uint32(ip>>32))
	binary.BigEndian.PutUint32(b[dataArg0Low:], uint32(arg0))
	binary.BigEndian.PutUint32(b[dataArg0Low+4:], uint32(arg0>>32))
	return b
}

// TestRefuseOwnVforkFilter runs the worker's filter, prefix included, in an interpreter: only a
// vfork (or any clone3) from the program's text is refused, and everything else is decided as the
// table says.
func TestRefuseOwnVforkFilter(t *testing.T) {
	base, err := compiledFilter()
	if err != nil {
		t.Fatal(err)
	}
	const lo, hi = 0x5555_5555_4000, 0x5555_5600_0000
	prog, err := refuseOwnVfork(base, lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	vm := bpfVM(t, prog)
	const (
		vfork   = unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD)
		thread  = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD
		refused = unix.SECCOMP_RET_ERRNO | uint32(errVforkRefused)
		// Anything else goes on to the table's filter, which passes clone and clone3.
		passed = unix.SECCOMP_RET_ALLOW
	)
	for _, c := range []struct {
		name string
		nr   int
		arch uint32
		ip   uint64
		arg0 uint64
		want uint32
	}{
		{"vfork in text", unix.SYS_CLONE, auditArchX8664, lo + 0x100, vfork, refused},
		{"vfork at text start", unix.SYS_CLONE, auditArchX8664, lo, vfork, refused},
		{"vfork at text end", unix.SYS_CLONE, auditArchX8664, hi - 1, vfork, refused},
		{"vfork with pidfd", unix.SYS_CLONE, auditArchX8664, lo + 8, vfork | unix.CLONE_PIDFD, refused},
		{"vfork before text", unix.SYS_CLONE, auditArchX8664, lo - 1, vfork, passed},
		{"vfork after text", unix.SYS_CLONE, auditArchX8664, hi, vfork, passed},
		{"vfork, other high word", unix.SYS_CLONE, auditArchX8664, lo + 0x100 + 1<<32, vfork, passed},
		{"vfork, other low word", unix.SYS_CLONE, auditArchX8664, lo&^0xffff_ffff + 0x100, vfork, passed},
		{"thread in text", unix.SYS_CLONE, auditArchX8664, lo + 0x100, thread, unix.SECCOMP_RET_ALLOW},
		{"fork in text", unix.SYS_CLONE, auditArchX8664, lo + 0x100, uint64(unix.SIGCHLD), unix.SECCOMP_RET_ALLOW},
		{"clone3 in text", unix.SYS_CLONE3, auditArchX8664, lo + 0x100, 0, refused},
		{"clone3 elsewhere", unix.SYS_CLONE3, auditArchX8664, hi + 0x100, 0, passed},
		{"openat in text", unix.SYS_OPENAT, auditArchX8664, lo + 0x100, vfork, unix.SECCOMP_RET_USER_NOTIF},
		{"read in text", unix.SYS_READ, auditArchX8664, lo + 0x100, vfork, unix.SECCOMP_RET_ALLOW},
		{"i386 clone", 120, auditArchI386, lo + 0x100, vfork, retErrno(errnoBadArch)},
	} {
		got, err := vm.Run(seccompCall(c.nr, c.arch, c.ip, c.arg0))
		if err != nil {
			t.Fatal(err)
		}
		if uint32(got) != c.want {
			t.Errorf("%s: filter returns %#x, want %#x", c.name, got, c.want)
		}
	}
	if _, err := refuseOwnVfork(base, 0xffff_f000, 0x1_0000_1000); err == nil {
		t.Error("a text range across a 4 GiB boundary was accepted")
	}
}

// TestTextRange: the range found holds this program's Go code.
func TestTextRange(t *testing.T) {
	lo, hi, err := textRange()
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range []uintptr{funcPC(TestTextRange), funcPC(exec.Command), funcPC(unix.Exec)} {
		if uint64(pc) < lo || uint64(pc) >= hi {
			t.Errorf("code at %#x outside the text range %#x-%#x", pc, lo, hi)
		}
	}
}

func funcPC(f any) uintptr { return reflect.ValueOf(f).Pointer() }

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

// TestSupervisorExecFromFunctionRefused: os/exec on a worker thread fails at once with ENOTSUP, under the
// conditions in which it used to hang the whole program; from another goroutine it still works.
func TestSupervisorExecFromFunctionRefused(t *testing.T) {
	gcPressure(t)
	p, _ := newTestPool(t, 1, t.TempDir())
	for i := range 20 {
		err := p.Invoke(context.Background(), func(*Invocation) error {
			err := exec.Command("/bin/true").Run()
			if !errors.Is(err, unix.ENOTSUP) {
				t.Errorf("exec.Command on the worker: %v, want ENOTSUP", err)
			}
			_, err = os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
			if !errors.Is(err, unix.ENOTSUP) {
				t.Errorf("os.StartProcess on the worker: %v, want ENOTSUP", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(i, err)
		}
	}
	if err := exec.Command("/bin/true").Run(); err != nil {
		t.Errorf("exec.Command outside the pool: %v", err)
	}
}

// TestSupervisorStartInTheView: processes started with Start, and theirs, read and write the invocation's
// view, relative paths from the function's working directory, even when the directory and the
// program exist only in the view; ExtraFiles keep their numbers. Under GC pressure, GOMAXPROCS 1.
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

// TestSupervisorStartErrors: what cmd.Start would report comes back from Start, as the same errors, and
// nothing is left running.
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

// TestSupervisorStartedProcessFenced: a process started with Start that outlives its invocation gets the
// fence view: the shared file, not the next invocation's copy, and EROFS on writes.
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
