package impl

import (
	"context"
	"os"
	"testing"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// TestKnownDirsFollowViewChanges: a walk from "/" skips the lookups of shared directories it has
// walked before in the same invocation (knownDir). Once the view changes such a directory or one
// above it (renamed away, replaced by a symlink, removed), the walk must see the change, not the
// remembered directory.
func TestKnownDirsFollowViewChanges(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "dir a/b", "file a/b/f in-a", "dir c/b", "file c/b/f in-c")
	p, _ := newTestPool(t, 1, shared)
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	}
	err := p.Invoke(context.Background(), func(*Invocation) error {
		for i := 0; i < 2; i++ { // the second walk skips shared, a and a/b
			if got := read(shared + "/a/b/f"); got != "in-a" {
				t.Errorf("walk %d: a/b/f = %q, want in-a", i, got)
			}
		}
		if err := os.Rename(shared+"/a", shared+"/moved"); err != nil {
			return err
		}
		if err := os.Symlink("c", shared+"/a"); err != nil {
			return err
		}
		if got := read(shared + "/a/b/f"); got != "in-c" {
			t.Errorf("after a became a symlink to c: a/b/f = %q, want in-c", got)
		}
		if got := read(shared + "/moved/b/f"); got != "in-a" {
			t.Errorf("moved/b/f = %q, want in-a", got)
		}
		if err := os.RemoveAll(shared + "/c/b"); err != nil {
			return err
		}
		if got := read(shared + "/a/b/f"); got != "error: open "+shared+"/a/b/f: no such file or directory" {
			t.Errorf("after c/b was removed: a/b/f = %q, want ENOENT", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKnownDirsSeeHostReplacement: when the host (outside the view, while the invocation runs)
// replaces a directory above a remembered one by a symlink, the remembered path leads to another
// directory: one lstat tells them apart by inode. Here the symlink leads to a directory whose file
// the view changed, so only a fresh walk finds the view's copy; a walk that trusted the remembered
// directory would let the kernel open the shared file.
func TestKnownDirsSeeHostReplacement(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "dir a/b", "file a/b/f old", "dir c/b", "file c/b/f shared-c")
	p, _ := newTestPool(t, 1, shared)
	host := func(fn func() error) error { // on another thread: not in the view
		done := make(chan error)
		go func() { done <- fn() }()
		return <-done
	}
	err := p.Invoke(context.Background(), func(*Invocation) error {
		if b, err := os.ReadFile(shared + "/a/b/f"); err != nil || string(b) != "old" {
			t.Fatalf("a/b/f = %q, %v", b, err)
		}
		if err := os.WriteFile(shared+"/c/b/f", []byte("private-c"), 0o644); err != nil {
			return err
		}
		err := host(func() error {
			if err := os.Rename(shared+"/a", shared+"/old-a"); err != nil {
				return err
			}
			return os.Symlink("c", shared+"/a")
		})
		if err != nil {
			return err
		}
		if b, err := os.ReadFile(shared + "/a/b/f"); err != nil || string(b) != "private-c" {
			t.Errorf("after the host made a a symlink to c: a/b/f = %q, %v, want the view's private-c", b, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
