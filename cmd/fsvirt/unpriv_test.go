package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// unprivOwnersScript changes, as an unprivileged user, shared objects of root's that it may
// change (a 0666 file, a 0777 directory and a 0666 file in it), then tries what only their owner
// may do, and prints each outcome and the owners it sees ($1 is the tree).
const unprivOwnersScript = `cd "$1" || exit 1
echo y >> h; echo "append $?"
rm d/x; echo "rm $?"
stat -c '%U %a %n' h d
chmod 600 h 2>/dev/null; echo "chmod file $?"
chmod 700 d 2>/dev/null; echo "chmod dir $?"
touch -d 2001-01-01 h 2>/dev/null; echo "times file $?"
touch -d 2001-01-01 d 2>/dev/null; echo "times dir $?"
stat -c '%U %a %n' h d
`

// TestRunAsNobodyKeepsSharedOwners: fsvirt run by an unprivileged user (a supervisor that cannot
// chown) shows another user's shared objects that the command changed as that user's, and
// refuses what the kernel refuses their non-owner, as natively. Its copies used to be the
// supervisor's own on disk and in the view: stat showed nobody, and chmod and explicit times
// succeeded (impl's sharedOwner).
func TestRunAsNobodyKeepsSharedOwners(t *testing.T) {
	requireEngine(t)
	if os.Geteuid() != 0 {
		t.Skip("runs fsvirt as nobody, which only root can")
	}
	dir := attackBin(t) // a copy of fsvirt that nobody may run
	mk := func(name string) string {
		tree := filepath.Join(dir, name)
		for _, d := range []string{tree, filepath.Join(tree, "d")} {
			if err := os.Mkdir(d, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{"h", "d/x"} {
			if err := os.WriteFile(filepath.Join(tree, f), []byte("root\n"), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(tree, f), 0o666); err != nil {
				t.Fatal(err)
			}
		}
		return tree
	}
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	native := exec.Command("/bin/sh", "-c", unprivOwnersScript, "sh", mk("native"))
	native.SysProcAttr = nobody
	want, err := native.CombinedOutput()
	if err != nil {
		t.Fatalf("natively: %v:\n%s", err, want)
	}
	store := filepath.Join(dir, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(store, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	for _, policy := range []string{"fast", "strict"} {
		t.Run(policy, func(t *testing.T) {
			tree := mk("tree-" + policy)
			before := treetest.Snap(t, tree)
			cmd := exec.Command(filepath.Join(dir, "fsvirt"), "run", "--policy", policy, "--store", store, "--tree", tree,
				"--", "/bin/sh", "-c", unprivOwnersScript, "sh", tree)
			cmd.SysProcAttr = nobody
			got, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v:\n%s", err, got)
			}
			if string(got) != string(want) {
				t.Errorf("the view and the kernel differ:\nview:\n%skernel:\n%s", got, want)
			}
			if d := before.Diff(treetest.Snap(t, tree), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}
