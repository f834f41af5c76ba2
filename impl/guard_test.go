package impl

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// smallStore mounts a tmpfs of size bytes to hold a store, for as long as the test runs.
func smallStore(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small file system for the store")
	}
	dir := t.TempDir()
	if err := unix.Mount("fsvirt-test", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// guardScript fills the store's file system through the view and reports each step: a write of
// 52 MiB (under the 64 MiB), then calls that would make the layer grow, then a write through a
// descriptor opened before, which only the watch can stop.
const guardScript = `exec 3>held
dd if=/dev/zero of=big bs=1M count=52 2>/dev/null; echo dd=$?
touch after 2>/dev/null; echo touch=$?
mkdir newdir 2>/dev/null; echo mkdir=$?
cat shared >/dev/null; echo read=$?
rm big; echo rm=$?
dd if=/dev/zero of=big2 bs=1M count=52 2>/dev/null; echo dd2=$?
cat /dev/zero >&3 2>/dev/null
sleep 5
echo not killed
`

// TestSpaceGuard: without limits, a run keeps free space on the store's file system (Limits.MinFree):
// under it, calls that would make the layer grow fail with ENOSPC, while reads and removals work;
// a write through a descriptor held from before is stopped by killing the command; nothing is
// left in the store, and the shared tree is unchanged.
func TestSpaceGuard(t *testing.T) {
	for _, c := range []struct {
		name    string
		minFree int64
	}{{"explicit", 16 << 20}, {"default", 0}} {
		t.Run(c.name, func(t *testing.T) {
			store := smallStore(t, "64m")
			shared := t.TempDir()
			treetest.Build(t, shared, "file shared s")
			before := treetest.Snap(t, shared)
			out, err := os.CreateTemp(t.TempDir(), "out")
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			res, err := Run(context.Background(), RunConfig{Trees: []string{shared}, Store: store,
				Limits: Limits{MinFree: c.minFree}, Path: "/bin/sh", Args: []string{"sh", "-c", guardScript},
				Dir: shared, Stdout: out})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(out.Name())
			// The default floor is 5% of 64 MiB: the second 52 MiB write passes it, the first
			// does not.
			want := "dd=0\ntouch=1\nmkdir=1\nread=0\nrm=0\ndd2=0\n"
			if c.minFree == 0 {
				want = "dd=0\ntouch=0\nmkdir=0\nread=0\nrm=0\ndd2=0\n"
			}
			if string(b) != want {
				t.Errorf("output %q, want %q", b, want)
			}
			if res.Signal != int(unix.SIGKILL) || !strings.Contains(res.Stopped, "was killed") {
				t.Errorf("signal %d, stopped %q: want the command killed by the guard", res.Signal, res.Stopped)
			}
			if left := storeEntries(t, store); len(left) != 0 {
				t.Errorf("store not empty after Run: %v", left)
			}
			if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}

// TestSpaceGuardRefusesHighFloor: a floor above what the store's file system has free is refused
// before the command runs, and a negative one means no guard: the store's file system itself
// then says ENOSPC, when full.
func TestSpaceGuardRefusesHighFloor(t *testing.T) {
	store := smallStore(t, "8m")
	shared := t.TempDir()
	_, err := Run(context.Background(), RunConfig{Trees: []string{shared}, Store: store,
		Limits: Limits{MinFree: 16 << 20}, Path: "/bin/true", Args: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), "free") {
		t.Errorf("error %v, want one about the free space", err)
	}
	res, err := Run(context.Background(), RunConfig{Trees: []string{shared}, Store: store,
		Limits: Limits{MinFree: -1}, Path: "/bin/sh", Args: []string{"sh", "-c", "dd if=/dev/zero of=big bs=1M count=7 2>/dev/null && touch after"},
		Dir: shared})
	if err != nil || res.ExitStatus != 0 || res.Stopped != "" {
		t.Errorf("without a guard: %v, exit %d, stopped %q", err, res.ExitStatus, res.Stopped)
	}
}

// TestSpaceGuardPool: thread mode keeps the floor too: once the store's file system is under it,
// a create and a shared file's copy-up fail with ENOSPC, while the view's own file still takes a
// chmod and new times (they failed too, before copyUpObj looked before it checked); removing the
// big file makes room again.
func TestSpaceGuardPool(t *testing.T) {
	store := smallStore(t, "64m")
	shared := t.TempDir()
	treetest.Build(t, shared, "file s shared")
	p, err := NewPool(Config{Workers: 1, Trees: []string{shared}, Store: store, Limits: Limits{MinFree: 16 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Invoke(context.Background(), func(*Invocation) error {
		if err := os.WriteFile(filepath.Join(shared, "big"), make([]byte, 52<<20), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(shared, "small"), []byte("x"), 0o644); !errors.Is(err, unix.ENOSPC) {
			t.Errorf("create under the floor: %v, want ENOSPC", err)
		}
		// The view's own file changes where it is: nothing grows.
		if err := os.Chmod(filepath.Join(shared, "big"), 0o600); err != nil {
			t.Errorf("chmod of the view's own file under the floor: %v", err)
		}
		if err := os.Chtimes(filepath.Join(shared, "big"), time.Unix(1, 0), time.Unix(1, 0)); err != nil {
			t.Errorf("utimes of the view's own file under the floor: %v", err)
		}
		// A shared one would be copied up.
		if err := os.Chmod(filepath.Join(shared, "s"), 0o600); !errors.Is(err, unix.ENOSPC) {
			t.Errorf("chmod of a shared file under the floor: %v, want ENOSPC", err)
		}
		if err := os.Remove(filepath.Join(shared, "big")); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(shared, "small"), []byte("x"), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
