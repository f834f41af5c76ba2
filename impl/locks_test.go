package impl

import (
	"os"
	"os/exec"
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
	if _, err := exec.LookPath("flock"); err != nil {
		t.Fatal("flock (util-linux) is needed:", err)
	}
	// What the command reports for each file: "held" when the lock is taken elsewhere.
	const script = `for f in shared copied; do
	if flock -n "$1/$f" true; then echo "$f free"; else echo "$f held"; fi
done`
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
			out, res := runPolicyCmd(t, tree, policy, nil, "/bin/sh", "-c",
				`echo b >> "$1/copied"; `+script, "sh", tree)
			if want := "shared held\ncopied free\n"; out != want || res.ExitStatus != 0 {
				t.Errorf("status %d, got\n%swant\n%s", res.ExitStatus, out, want)
			}
			if d := before.Diff(treetest.Snap(t, tree), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}
