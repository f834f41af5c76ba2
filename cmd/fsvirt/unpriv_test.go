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

// TestRunAsNobodyLeavesNoLayer: fsvirt run by an unprivileged user removes the private layer also
// when the command made directories in it that their owner may not write, read or search: the
// supervisor, which is not root, could not remove what they held, and left the store behind with
// an error (exit 125).
func TestRunAsNobodyLeavesNoLayer(t *testing.T) {
	requireEngine(t)
	if os.Geteuid() != 0 {
		t.Skip("runs fsvirt as nobody, which only root can")
	}
	dir := attackBin(t) // a copy of fsvirt that nobody may run
	tree, store := filepath.Join(dir, "tree"), filepath.Join(dir, "store")
	for _, d := range []string{tree, store} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(dir, "fsvirt"), "run", "--store", store, "--tree", tree, "--", "/bin/sh", "-c",
		`cd "$1" && mkdir -p ro rx/deep none && touch ro/f rx/deep/g none/h && chmod 555 ro && chmod 500 rx/deep rx && chmod 000 none && ls ro`,
		"sh", tree)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "f\n" {
		t.Errorf("%v: %q, want \"f\\n\"", err, out)
	}
	left, err := filepath.Glob(filepath.Join(store, "fsvirt-*", "*"))
	if err != nil || len(left) != 0 {
		t.Errorf("the store holds %v after the run (%v)", left, err)
	}
}
