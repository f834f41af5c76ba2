package sysexec_test

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/internal/sysexec"
)

var tree = fsvirt.MustParseTree("dir a", "file 0600 a/f hello", "symlink l -> a/f")

func TestBuildWalk(t *testing.T) {
	dir := t.TempDir()
	if err := sysexec.Build(dir, tree); err != nil {
		t.Fatal(err)
	}
	got, err := sysexec.Walk(dir)
	if err != nil || got.Hash() != tree.Hash() {
		t.Errorf("Walk = %v\n%s\nwant\n%s", err, got, tree)
	}
}

// TestRemote runs the same ops on an Exec and on a Remote serving from a
// locked goroutine, and checks that handles are the lowest free ones and that
// nothing leaks.
func TestRemote(t *testing.T) {
	dir := t.TempDir()
	if err := sysexec.Build(dir, tree); err != nil {
		t.Fatal(err)
	}
	before, err := sysexec.OpenFDs()
	if err != nil {
		t.Fatal(err)
	}
	ops := []fsvirt.Op{
		{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "/a", Flags: unix.O_PATH},
		{Kind: fsvirt.OpOpen, Dirfd: 0, Path: "f", Flags: unix.O_RDONLY},
		{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "l", Flags: unix.O_RDONLY},
		{Kind: fsvirt.OpClose, Fd: 1},
		{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "./a/../l", Flags: unix.O_RDONLY},
		{Kind: fsvirt.OpRead, Fd: 1, Size: 3},
		{Kind: fsvirt.OpStat, Fd: 2},
		{Kind: fsvirt.OpRead, Fd: 7, Size: 3},
	}
	want := []string{"0", "1", "2", "0", "1", `3 "hel"`, fmt.Sprintf("0 {S_IFREG|0600 size=5 nlink=1 uid=%d gid=%d}", os.Getuid(), os.Getgid()), "-1 EBADF (bad file descriptor)"}

	x := sysexec.New(dir)
	r := sysexec.NewRemote(dir, func(inv fsvirt.Inv, serve func() error) error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return serve()
	})
	if err := r.Begin(0); err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		local, remote := x.Do(op), r.Do(0, op)
		if fmt.Sprint(local) != want[i] || fmt.Sprint(remote) != want[i] {
			t.Errorf("%v = %v (local), %v (remote), want %s", op, local, remote, want[i])
		}
	}
	if err := x.Close(); err != nil {
		t.Error(err)
	}
	if err := r.End(0); err != nil {
		t.Error(err)
	}
	after, err := sysexec.OpenFDs()
	if err != nil {
		t.Fatal(err)
	}
	for fd, target := range after {
		if _, ok := before[fd]; !ok {
			t.Errorf("fd %d (%s) leaked", fd, target)
		}
	}
}

// TestCwdEmulation checks that the plain Exec's chdir, fchdir and getcwd,
// emulated with a directory fd, and its absolute symlink targets behave as
// the real working directory of a thread does.
func TestCwdEmulation(t *testing.T) {
	tree := fsvirt.MustParseTree("dir a", "dir a/b", "file a/f hello", "symlink a/b/up -> ..")
	ops := []fsvirt.Op{
		{Kind: fsvirt.OpChdir, Path: "a/b/up"},
		{Kind: fsvirt.OpGetcwd},
		{Kind: fsvirt.OpFstatat, Dirfd: fsvirt.AtCWD, Path: "f"},
		{Kind: fsvirt.OpTruncatePath, Dirfd: fsvirt.AtCWD, Path: "f", Size: 2},
		{Kind: fsvirt.OpSetxattr, Dirfd: fsvirt.AtCWD, Path: "f", Name: "user.a", Data: []byte("v")},
		{Kind: fsvirt.OpListxattr, Dirfd: fsvirt.AtCWD, Path: "../a/f", Size: 64},
		{Kind: fsvirt.OpSymlink, Dirfd: fsvirt.AtCWD, Path: "abs", Data: []byte("/a/f")},
		{Kind: fsvirt.OpReadlink, Dirfd: fsvirt.AtCWD, Path: "abs", Size: 64},
		{Kind: fsvirt.OpFstatat, Dirfd: fsvirt.AtCWD, Path: "abs", Flags: unix.AT_SYMLINK_NOFOLLOW},
		{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "abs", Flags: unix.O_RDONLY},
		{Kind: fsvirt.OpRead, Fd: 0, Size: 9},
		{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "b", Flags: unix.O_PATH},
		{Kind: fsvirt.OpFchdir, Fd: 1},
		{Kind: fsvirt.OpGetcwd},
		{Kind: fsvirt.OpFchdir, Fd: 0},
		{Kind: fsvirt.OpUnlink, Dirfd: fsvirt.AtCWD, Path: "../b", Flags: unix.AT_REMOVEDIR},
		{Kind: fsvirt.OpUnlink, Dirfd: fsvirt.AtCWD, Path: "up", Flags: 0},
		{Kind: fsvirt.OpUnlink, Dirfd: fsvirt.AtCWD, Path: "../b", Flags: unix.AT_REMOVEDIR},
		{Kind: fsvirt.OpGetcwd},
		{Kind: fsvirt.OpFstatat, Dirfd: fsvirt.AtCWD, Path: "", Flags: unix.AT_EMPTY_PATH},
		{Kind: fsvirt.OpChdir, Path: ".."},
		{Kind: fsvirt.OpGetcwd},
	}
	run := func(x *sysexec.Exec) []string {
		var out []string
		for _, op := range ops {
			out = append(out, fmt.Sprintf("%v = %v", op, x.Do(op)))
		}
		if err := x.Close(); err != nil {
			t.Error(err)
		}
		return out
	}
	emulated, real := t.TempDir(), t.TempDir()
	for _, dir := range []string{emulated, real} {
		if err := sysexec.Build(dir, tree); err != nil {
			t.Fatal(err)
		}
	}
	want := run(sysexec.New(emulated))
	got := make(chan []string)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread, with its own cwd, ends with the goroutine
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			t.Error(err)
			got <- nil
			return
		}
		x, err := sysexec.NewInCwd(real)
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		got <- run(x)
	}()
	for i, line := range <-got {
		if line != want[i] {
			t.Errorf("real cwd: %s\n  emulated: %s", line, want[i])
		}
	}
}
