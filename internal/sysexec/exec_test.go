package sysexec_test

import (
	"fmt"
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
	want := []string{"0", "1", "2", "0", "1", `3 "hel"`, "0 {S_IFREG|0600 size=5 nlink=1}", "-1 EBADF (bad file descriptor)"}

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
