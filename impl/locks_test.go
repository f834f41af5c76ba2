package impl

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// TestProcessLocksOnSharedFiles pins down what README's limits say of file locks: a lock taken in
// a view on a shared file the view has not copied is the host's, on the shared file, so a lock
// held outside the view (by the host, or by another view) conflicts with it; a file the view
// has copied is its own, and its locks are the view's alone. On overlayfs each mount's file is
// an inode of its own, and neither conflicts.
func TestProcessLocksOnSharedFiles(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(policy.String(), func(t *testing.T) {
			tree := t.TempDir()
			treetest.Build(t, tree, "file shared a\n", "file copied a\n")
			before := treetest.Snap(t, tree)
			for _, name := range []string{"shared", "copied"} {
				f, err := os.Open(filepath.Join(tree, name))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
					t.Fatal(err)
				}
			}
			out, res := runPolicyCmd(t, tree, policy, []string{"FSVIRT_TEST_LOCKS=1"}, self, tree)
			if want := "shared held\ncopied free\n"; out != want || res.ExitStatus != 0 {
				t.Errorf("status %d, got\n%swant\n%s", res.ExitStatus, out, want)
			}
			if d := before.Diff(treetest.Snap(t, tree), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}

// tryLocks, the command of TestProcessLocksOnSharedFiles, appends to dir/copied (which copies it
// up) and then tries an exclusive flock on dir/shared and dir/copied, each opened for reading as
// flock(1) opens its file, and prints whether each was "free" or "held" elsewhere. (The kernel
// matrix's VMs have no flock(1).)
func tryLocks(dir string) int {
	f, err := os.OpenFile(filepath.Join(dir, "copied"), os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.WriteString("b\n")
		f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for _, name := range []string{"shared", "copied"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		switch err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err {
		case nil:
			fmt.Println(name, "free")
		case unix.EWOULDBLOCK:
			fmt.Println(name, "held")
		default:
			fmt.Fprintln(os.Stderr, "flock", name+":", err)
			return 2
		}
		f.Close()
	}
	return 0
}
