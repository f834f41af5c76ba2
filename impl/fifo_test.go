package impl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// fifoDeadline bounds what must never wait on a FIFO: the supervisor's answers. Generous, for a
// loaded two-core machine.
const fifoDeadline = 10 * time.Second

// fifoCase opens FIFOs in one invocation (a) while another invocation of the same pool, served by
// the same supervisor, makes ordinary calls. a calls ready just before the open that could block;
// peer, when set, runs outside any view once the other invocation was answered, and is what a
// waits for, if it waits at all. peerDone is closed after peer.
type fifoCase struct {
	name string
	a    func(root string, ready func(), peerDone <-chan struct{}) error
	peer func(root string) error
}

var fifoCases = []fifoCase{
	{name: "shared-reader-waits-for-writer", a: func(root string, ready func(), peerDone <-chan struct{}) error {
		// Fast: continued, the task waits in the kernel until peer opens for writing.
		// Strict: the supervisor opens without waiting for a writer.
		ready()
		fd, err := unix.Open(root+"/p", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open p O_RDONLY: %w", err)
		}
		defer unix.Close(fd)
		<-peerDone
		return expectRead(fd, "hi")
	}, peer: func(root string) error { return writeFIFO(root+"/p", "hi") }},

	{name: "private-reader-then-writer", a: func(root string, ready func(), _ <-chan struct{}) error {
		if err := unix.Mkfifo(root+"/q", 0o644); err != nil {
			return err
		}
		ready()
		r, err := unix.Open(root+"/q", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open q O_RDONLY: %w", err)
		}
		defer unix.Close(r)
		if err := expectBlocking(r); err != nil {
			return err
		}
		w, err := unix.Open(root+"/q", unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open q O_WRONLY with a reader: %w", err)
		}
		defer unix.Close(w)
		if err := expectBlocking(w); err != nil {
			return err
		}
		if _, err := unix.Write(w, []byte("x")); err != nil {
			return err
		}
		return expectRead(r, "x")
	}},

	{name: "private-writer-without-reader", a: func(root string, ready func(), _ <-chan struct{}) error {
		if err := unix.Mkfifo(root+"/q", 0o644); err != nil {
			return err
		}
		ready()
		return expectErrno(unix.Open(root+"/q", unix.O_WRONLY|unix.O_CLOEXEC, 0))(unix.ENXIO)
	}},

	{name: "shared-writer-without-reader", a: func(root string, ready func(), _ <-chan struct{}) error {
		ready()
		return expectErrno(unix.Open(root+"/p", unix.O_WRONLY|unix.O_CLOEXEC, 0))(unix.ENXIO)
	}},

	{name: "rdwr-and-nonblock", a: func(root string, ready func(), _ <-chan struct{}) error {
		ready()
		fd, err := unix.Open(root+"/p", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open p O_RDWR: %w", err)
		}
		// Closed once: in thread mode a second close would close whatever another invocation
		// opened under the number meanwhile.
		open := true
		defer func() {
			if open {
				unix.Close(fd)
			}
		}()
		if err := expectBlocking(fd); err != nil {
			return err
		}
		if _, err := unix.Write(fd, []byte("rw")); err != nil {
			return err
		}
		if err := expectRead(fd, "rw"); err != nil {
			return err
		}
		r, err := unix.Open(root+"/p", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open p O_RDONLY|O_NONBLOCK: %w", err)
		}
		if fl, _ := unix.FcntlInt(uintptr(r), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
			unix.Close(r)
			return fmt.Errorf("O_NONBLOCK asked for and lost")
		}
		unix.Close(r)
		unix.Close(fd)
		open = false
		// No reader is left: the kernel's answer to a writer that will not wait.
		return expectErrno(unix.Open(root+"/p", unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0))(unix.ENXIO)
	}},

	{name: "opath-of-private-fifo", a: func(root string, ready func(), _ <-chan struct{}) error {
		if err := unix.Mkfifo(root+"/q", 0o644); err != nil {
			return err
		}
		ready()
		fd, err := unix.Open(root+"/q", unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open q O_PATH: %w", err)
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
			return fmt.Errorf("fstat = %#o %v, want a FIFO", st.Mode, err)
		}
		return nil
	}},

	{name: "pipe-reopened-through-proc", a: func(root string, ready func(), peerDone <-chan struct{}) error {
		// A pipe whose write end is closed, reopened for reading through /proc: unlike a FIFO, the
		// kernel never waits here, and the reader reads what a writer opened later writes.
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return err
		}
		defer unix.Close(p[0])
		unix.Close(p[1])
		pipeReader = p[0]
		ready()
		fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(p[0]), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("reopen pipe O_RDONLY: %w", err)
		}
		defer unix.Close(fd)
		<-peerDone
		return expectRead(fd, "pp")
	}, peer: func(string) error { return writeFIFO("/proc/self/fd/"+strconv.Itoa(pipeReader), "pp") }},
}

// pipeReader passes the pipe of pipe-reopened-through-proc from the invocation to its peer.
var pipeReader int

// TestFIFOOpensDoNotStallSupervisor: a task that opens a FIFO never makes the supervisor wait for
// the FIFO's other end. Another invocation served by the same supervisor goes on being answered,
// also while the task itself waits in the kernel (a continued open of a shared FIFO).
func TestFIFOOpensDoNotStallSupervisor(t *testing.T) {
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(pol.String(), func(t *testing.T) {
			for _, c := range fifoCases {
				t.Run(c.name, func(t *testing.T) { runFIFOCase(t, c, pol) })
			}
		})
	}
}

func runFIFOCase(t *testing.T, c fifoCase, pol Policy) {
	shared, storeRoot := t.TempDir(), t.TempDir()
	treetest.Build(t, shared, "dir a", "file a/f hello")
	if err := unix.Mkfifo(shared+"/p", 0o644); err != nil {
		t.Fatal(err)
	}
	before := treetest.Snap(t, shared)
	p, err := NewPool(Config{Workers: 2, Trees: []string{shared}, Store: storeRoot, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}()
	// unstick opens every FIFO there is for reading and writing at once, which never waits and
	// wakes whatever open waits for the other end: a stuck supervisor, on a test that failed.
	unstick := func() {
		for _, root := range []string{shared, storeRoot} {
			filepath.WalkDir(root, func(q string, d fs.DirEntry, err error) error {
				if err == nil && d.Type()&fs.ModeNamedPipe != 0 {
					if fd, err := unix.Open(q, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
						time.AfterFunc(time.Second, func() { unix.Close(fd) })
					}
				}
				return nil
			})
		}
	}
	wait := func(what string, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(fifoDeadline):
			t.Errorf("%s: not answered within %v: the supervisor waits on a FIFO", what, fifoDeadline)
			for {
				unstick()
				select {
				case <-done:
					return
				case <-time.After(2 * time.Second):
				}
			}
		}
	}

	ready, peerDone := make(chan struct{}), make(chan struct{})
	aDone := make(chan error, 1)
	go func() {
		aDone <- p.Invoke(context.Background(), func(*Invocation) error {
			return c.a(shared, func() { close(ready) }, peerDone)
		})
	}()
	select {
	case <-ready:
	case err := <-aDone:
		t.Fatalf("the FIFO invocation ended before its open: %v", err)
	}
	time.Sleep(20 * time.Millisecond) // let a reach its open
	other := make(chan error, 1)
	go func() {
		other <- p.Invoke(context.Background(), func(*Invocation) error {
			for i := 0; i < 20; i++ {
				if b, err := os.ReadFile(shared + "/a/f"); err != nil || string(b) != "hello" {
					return fmt.Errorf("read a/f = %q, %v", b, err)
				}
				if err := os.WriteFile(shared+"/a/w", []byte("mine"), 0o644); err != nil {
					return err
				}
			}
			return nil
		})
	}()
	wait("another invocation", other)
	if c.peer != nil {
		if err := c.peer(shared); err != nil {
			t.Errorf("peer: %v", err)
		}
	}
	close(peerDone)
	wait("the FIFO invocation", aDone)
	// The view uses the shared FIFO itself: its times change with what passes through it.
	d := slices.DeleteFunc(before.Diff(treetest.Snap(t, shared), treetest.Exact), func(d string) bool {
		return strings.HasPrefix(d, "p: mtime ") || strings.HasPrefix(d, "p: ctime ")
	})
	if len(d) > 0 {
		t.Errorf("the shared tree changed: %q", d)
	}
}

// writeFIFO opens p for writing without waiting, as soon as it has a reader, and writes s.
func writeFIFO(p, s string) error {
	deadline := time.Now().Add(fifoDeadline)
	for {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == unix.ENXIO && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // no reader yet
			continue
		}
		if err != nil {
			return fmt.Errorf("open %s for writing: %w", p, err)
		}
		defer unix.Close(fd)
		_, err = unix.Write(fd, []byte(s))
		return err
	}
}

func expectRead(fd int, want string) error {
	buf := make([]byte, 16)
	n, err := unix.Read(fd, buf)
	if err != nil || string(buf[:n]) != want {
		return fmt.Errorf("read = %q, %v; want %q", buf[:max(n, 0)], err, want)
	}
	return nil
}

// expectBlocking checks that fd was not left non-blocking: the task did not ask for O_NONBLOCK.
func expectBlocking(fd int) error {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK != 0 {
		return fmt.Errorf("F_GETFL = %#o, %v: O_NONBLOCK set, not asked for", fl, err)
	}
	return nil
}

func expectErrno(fd int, err error) func(unix.Errno) error {
	return func(want unix.Errno) error {
		if err == nil {
			unix.Close(fd)
		}
		if !errors.Is(err, want) {
			return fmt.Errorf("open = %v, want %v", err, want)
		}
		return nil
	}
}
