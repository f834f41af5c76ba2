package impl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// requireMount skips a test of limits where this process cannot mount a tmpfs (not root).
func requireMount(t *testing.T) {
	t.Helper()
	if err := checkLimits(Limits{Bytes: 1 << 20}, t.TempDir()); err != nil {
		t.Skipf("limits cannot be enforced here: %v", err)
	}
}

// limitedPool is a one-worker pool on shared whose layers are bounded by l.
func limitedPool(t *testing.T, shared string, l Limits) (*Pool, string) {
	t.Helper()
	storeRoot := t.TempDir()
	p, err := NewPool(Config{Workers: 1, Trees: []string{shared}, Store: storeRoot, Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, storeRoot
}

// noMountsUnder fails the test if anything is still mounted in dir.
func noMountsUnder(t *testing.T, dir string) {
	t.Helper()
	mounts, err := mountPoints()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if within(m, dir) {
			t.Errorf("still mounted: %s", m)
		}
	}
}

func expectENOSPC(what string, err error) error {
	if !errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("%s: %v, want ENOSPC", what, err)
	}
	return nil
}

// TestLimitsBytes: the layer's data is bounded by allocated blocks, whoever writes it (the task
// through its descriptor, or the supervisor copying a file up), and the call that would pass the
// bound fails with ENOSPC with nothing half-done.
func TestLimitsBytes(t *testing.T) {
	requireMount(t)
	const limit = 256 << 10
	shared := t.TempDir()
	big := bytes.Repeat([]byte("s"), 2*limit) // a shared file the layer cannot hold
	if err := os.WriteFile(filepath.Join(shared, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	treetest.Build(t, shared, "file small shared")
	before := treetest.Snap(t, shared)
	p, storeRoot := limitedPool(t, shared, Limits{Bytes: limit})
	var used Usage
	err := p.Invoke(context.Background(), func(inv *Invocation) error {
		// Written through the task's own descriptor: the kernel stops it at the bound.
		fd, err := unix.Open(filepath.Join(shared, "new"), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		chunk := make([]byte, 64<<10)
		total := 0
		for {
			n, err := unix.Write(fd, chunk)
			total += max(n, 0)
			if err != nil {
				if err := expectENOSPC("write past the bound", err); err != nil {
					return err
				}
				break
			}
			if total > 2*limit {
				return fmt.Errorf("wrote %d bytes under a bound of %d", total, limit)
			}
		}
		if total > limit || total < limit/2 {
			return fmt.Errorf("wrote %d bytes under a bound of %d", total, limit)
		}
		// fallocate reserves blocks: refused too.
		if err := expectENOSPC("fallocate", unix.Fallocate(fd, 0, int64(total), limit)); err != nil {
			return err
		}
		// A hole costs nothing.
		if err := unix.Ftruncate(fd, 100*limit); err != nil {
			return fmt.Errorf("ftruncate to a sparse size: %v", err)
		}
		// A copy-up that does not fit fails whole: the file stays the shared one.
		err = expectENOSPC("copy-up of big", appendTo(filepath.Join(shared, "big"), "x"))
		if err != nil {
			return err
		}
		if b, err := os.ReadFile(filepath.Join(shared, "big")); err != nil || !bytes.Equal(b, big) {
			return fmt.Errorf("big after the failed copy-up: %d bytes, %v", len(b), err)
		}
		// Room is made by removing a file; then a small copy-up fits.
		unix.Close(fd)
		if err := os.Remove(filepath.Join(shared, "new")); err != nil {
			return err
		}
		if err := appendTo(filepath.Join(shared, "small"), " and mine"); err != nil {
			return fmt.Errorf("copy-up of small once there is room: %v", err)
		}
		used = inv.Usage()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if used.Bytes <= 0 || used.Bytes > limit {
		t.Errorf("usage %+v under a bound of %d bytes", used, limit)
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
	noMountsUnder(t, storeRoot)
}

// TestLimitsFiles: the layer's inodes are bounded; past the bound, creation fails with ENOSPC.
func TestLimitsFiles(t *testing.T) {
	requireMount(t)
	const limit = 8
	shared := t.TempDir()
	p, storeRoot := limitedPool(t, shared, Limits{Files: limit})
	var made int
	err := p.Invoke(context.Background(), func(inv *Invocation) error {
		for i := range 2 * limit {
			err := os.WriteFile(filepath.Join(shared, fmt.Sprint("f", i)), nil, 0o644)
			if err != nil {
				made = i
				return expectENOSPC("create past the bound", err)
			}
		}
		return fmt.Errorf("made %d files under a bound of %d", 2*limit, limit)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The directories that hold the tree's path in the layer count too.
	if made == 0 || made > limit {
		t.Errorf("made %d files under a bound of %d", made, limit)
	}
	noMountsUnder(t, storeRoot)
}

// TestLimitsRunReportsUsage: process mode, the same bound, and the usage in the result; the
// layer's mount is gone afterwards.
func TestLimitsRunReportsUsage(t *testing.T) {
	requireMount(t)
	tree := t.TempDir()
	storeRoot := t.TempDir()
	res, err := Run(context.Background(), RunConfig{
		Trees: []string{tree}, Store: storeRoot, Limits: Limits{Bytes: 128 << 10},
		Path: "/bin/sh", Args: []string{"sh", "-c", "head -c 100000 /dev/zero > a; head -c 100000 /dev/zero > b; echo $? > status"},
		Dir: tree, Stdout: devNull(t), Stderr: devNull(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Usage.Bytes <= 100000 || res.Usage.Bytes > 128<<10 || res.Usage.Files < 3 {
		t.Errorf("usage %+v", res.Usage)
	}
	var changed []string
	for _, c := range res.Changes {
		changed = append(changed, string(c.Kind)+" "+strings.TrimPrefix(c.Path, tree))
	}
	if strings.Join(changed, ",") != "A /a,A /b,A /status" {
		t.Errorf("changes %v", changed)
	}
	noMountsUnder(t, storeRoot)
}

// TestLimitsRefused: limits that cannot be enforced fail before anything runs.
func TestLimitsRefused(t *testing.T) {
	if _, err := NewPool(Config{Trees: []string{t.TempDir()}, Store: t.TempDir(), Limits: Limits{Bytes: -1}}); err == nil {
		t.Error("a negative limit was taken")
	}
}

func appendTo(p, s string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func devNull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
