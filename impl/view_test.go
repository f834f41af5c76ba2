package impl

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// TestInTree: a passed-through directory carves its part out of a tree that contains it, never a
// tree inside it. (A tree under /dev/shm was passed through whole, and its "private" writes
// reached the shared files.)
func TestInTree(t *testing.T) {
	ns := &namespace{trees: []string{"/", "/dev/shm/t"}, passthrough: defaultPassthrough}
	for p, want := range map[string]bool{
		"/":             true,
		"/etc/passwd":   true,
		"/proc":         false,
		"/proc/self":    false,
		"/dev/null":     false,
		"/dev/shm":      true, // files programs write: private, like the rest of "/"
		"/dev/shm/x":    true,
		"/dev/shm/t":    true,
		"/dev/shm/t/f":  true,
		"/dev/shm/tt/f": true,
		"/devices":      true,
	} {
		if got := ns.inTree(p); got != want {
			t.Errorf("trees / and /dev/shm/t: inTree(%q) = %v, want %v", p, got, want)
		}
	}
	nonroot := &namespace{trees: []string{"/usr", "/dev/shm/t"}, passthrough: defaultPassthrough}
	if nonroot.inTree("/dev/shm/x") {
		t.Errorf("trees /usr and /dev/shm/t: inTree(/dev/shm/x) = true, want false")
	}
	only := &namespace{trees: []string{"/dev/shm/t"}, passthrough: defaultPassthrough}
	for p, want := range map[string]bool{"/dev/shm/t/f": true, "/dev/shm/x": false, "/etc": false} {
		if got := only.inTree(p); got != want {
			t.Errorf("tree /dev/shm/t: inTree(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestTreeUnderDevShm: the same on a real tmpfs under /dev: a write to a file of the tree goes to the
// private layer, and the shared file keeps its content.
func TestTreeUnderDevShm(t *testing.T) {
	base, err := os.MkdirTemp("/dev/shm", "fsvirt-test-")
	if err != nil {
		t.Skipf("no writable /dev/shm here: %v", err) // TestInTree covers the rule itself
	}
	defer os.RemoveAll(base)
	treetest.Build(t, base, "dir tree", "file tree/f shared")
	p, _ := newTestPool(t, 1, base+"/tree")
	err = p.Invoke(context.Background(), func(*Invocation) error {
		if err := os.WriteFile(base+"/tree/f", []byte("private"), 0o644); err != nil {
			return err
		}
		got, err := os.ReadFile(base + "/tree/f")
		if err == nil && string(got) != "private" {
			t.Errorf("the invocation reads back %q, want %q", got, "private")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(base + "/tree/f"); string(got) != "shared" {
		t.Errorf("the shared file under /dev/shm now holds %q, want %q", got, "shared")
	}
}

// TestDevShmPrivateUnderRoot: with the default tree "/", /dev is the host's, but /dev/shm, where
// programs create files (shm_open), is virtualized: two invocations cannot meet there, and the host's
// /dev/shm stays as it was.
func TestDevShmPrivateUnderRoot(t *testing.T) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skipf("no /dev/shm here: %v", err) // TestInTree covers the rule itself
	}
	p, _ := newTestPool(t, 1) // the default: "/"
	name := fmt.Sprintf("/dev/shm/fsvirt-test-%d", os.Getpid())
	defer os.Remove(name)
	err := p.Invoke(context.Background(), func(*Invocation) error {
		if err := os.WriteFile(name, []byte("private"), 0o644); err != nil {
			return err
		}
		got, err := os.ReadFile(name)
		if err == nil && string(got) != "private" {
			t.Errorf("the invocation reads back %q", got)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(name); !os.IsNotExist(err) {
		t.Errorf("%s reached the host's /dev/shm (lstat: %v)", name, err)
	}
	err = p.Invoke(context.Background(), func(*Invocation) error {
		if _, err := os.Stat(name); !os.IsNotExist(err) {
			t.Errorf("the next invocation sees %s (stat: %v)", name, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
