package impl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fdTargets maps each descriptor of this process to what /proc/self/fd says it names.
func fdTargets(t *testing.T) map[int]string {
	t.Helper()
	names, err := readDirNames("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, name := range names {
		fd, _ := strconv.Atoi(name)
		if target, err := os.Readlink("/proc/self/fd/" + name); err == nil {
			out[fd] = target
		}
	}
	return out
}

// TestLeakedDescriptorRevoked: descriptors of private files that an invocation leaves open, a raw
// fd and an *os.File, of a file it kept and of one it removed, read nothing of them in the next
// invocation on the same worker, which tries every descriptor number; each keeps its number and
// its close-on-exec flag. Once the pool has closed, no descriptor names anything in the store.
func TestLeakedDescriptorRevoked(t *testing.T) {
	shared, storeDir := t.TempDir(), t.TempDir()
	p, err := NewPool(Config{Workers: 1, Trees: []string{shared}, Store: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const secret = "secret-c41d"
	var raw, removed int
	var file *os.File
	ctx := context.Background()
	err = p.Invoke(ctx, func(*Invocation) error {
		for _, name := range []string{"/kept", "/removed"} {
			if err := os.WriteFile(shared+name, []byte(secret), 0o600); err != nil {
				return err
			}
		}
		var err error
		if raw, err = unix.Open(shared+"/kept", unix.O_RDONLY, 0); err != nil {
			return err
		}
		if file, err = os.Open(shared + "/kept"); err != nil {
			return err
		}
		if removed, err = unix.Open(shared+"/removed", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
		return os.Remove(shared + "/removed")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(raw)
	defer file.Close()
	defer unix.Close(removed)
	highest := 0
	for fd := range fdTargets(t) {
		highest = max(highest, fd)
	}
	err = p.Invoke(ctx, func(*Invocation) error {
		buf := make([]byte, 64)
		for fd := 0; fd <= highest+64; fd++ {
			n, err := unix.Pread(fd, buf, 0)
			if err == nil && bytes.Contains(buf[:n], []byte(secret)) {
				return fmt.Errorf("fd %d reads %q: the last invocation's file", fd, buf[:n])
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	targets := fdTargets(t)
	for _, c := range []struct {
		name    string
		fd      int
		cloexec bool
	}{{"raw", raw, false}, {"*os.File", int(file.Fd()), true}, {"removed", removed, true}} {
		if want := "/memfd:" + revokedName + " (deleted)"; targets[c.fd] != want {
			t.Errorf("%s fd %d names %q, want %q", c.name, c.fd, targets[c.fd], want)
		}
		fl, err := unix.FcntlInt(uintptr(c.fd), unix.F_GETFD, 0)
		if err != nil || fl&unix.FD_CLOEXEC != 0 != c.cloexec {
			t.Errorf("%s fd %d: flags %#x (%v), want FD_CLOEXEC %v", c.name, c.fd, fl, err, c.cloexec)
		}
	}
	if _, err := unix.Write(removed, []byte("x")); err != unix.EPERM {
		t.Errorf("write to a revoked fd: %v, want EPERM", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for fd, target := range fdTargets(t) {
		if strings.HasPrefix(target, storeDir) {
			t.Errorf("fd %d names %s after the pool closed", fd, target)
		}
	}
}

// BenchmarkRevokeScan measures revokeFDs when the process has many descriptors open and none of
// them is in the directory: what the end of an invocation that changed something costs on top.
// Sockets (as a server holds) are told apart by a statx; files outside the directory need a
// readlink each.
func BenchmarkRevokeScan(b *testing.B) {
	revoked, err := newRevoked()
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(revoked)
	dir, file := b.TempDir(), b.TempDir()+"/file"
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	kinds := map[string]func() (int, error){
		"sockets": func() (int, error) { return unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0) },
		"files":   func() (int, error) { return unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0) },
	}
	for _, kind := range []string{"sockets", "files"} {
		for _, open := range []int{16, 256, 4096} {
			b.Run(fmt.Sprintf("%d-%s", open, kind), func(b *testing.B) {
				var fds []int
				defer func() {
					for _, fd := range fds {
						unix.Close(fd)
					}
				}()
				for n := len(fdTargetsB(b)); n < open; n++ {
					fd, err := kinds[kind]()
					if err != nil {
						b.Fatal(err)
					}
					fds = append(fds, fd)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if n, err := revokeFDs(dir, revoked); err != nil || n != 0 {
						b.Fatal(n, err)
					}
				}
			})
		}
	}
}

func fdTargetsB(b *testing.B) []string {
	names, err := readDirNames("/proc/self/fd")
	if err != nil {
		b.Fatal(err)
	}
	return names
}
