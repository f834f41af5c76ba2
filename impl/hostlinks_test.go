package impl

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// hostLinksScript changes a shared file with three names on the host (f1, hl, sub/hl2) through
// each of them in turn, with a descriptor opened on one of them before, and prints what every
// name shows: content, link count, inode sameness.
const hostLinksScript = `cd "$1"
exec 3< hl
echo b >> f1; cat <&3; cat hl; stat -c '%h %n' f1 hl sub/hl2; cat sub/hl2
echo c >> sub/hl2; cat f1 | tr '\n' ' '; echo; stat -c '%h %n' f1 hl sub/hl2
ln f1 mine; stat -c '%h' f1
rm f1; cat hl | tr '\n' ' '; echo; stat -c '%h %n' hl sub/hl2 mine
mv hl h3; echo d >> h3; cat sub/hl2 | tr '\n' ' '; echo
[ "$(stat -c %i h3)" = "$(stat -c %i sub/hl2)" ] && echo same-inode
mkdir d2; mv sub d2/; truncate -s 2 d2/sub/hl2; cat mine; wc -c < h3
`

// TestProcessHostHardLinks: a shared file with several names on the host, written through one,
// shows the change through all of them, as natively, also through a descriptor opened on another
// name before; link counts and inode numbers agree too, as root and as nobody, both policies
// (hostlinks.go). The shared tree does not change.
func TestProcessHostHardLinks(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	mk := func(dir string) {
		treetest.Build(t, dir, "file f1 a\n", "dir sub")
		for _, n := range []string{"hl", "sub/hl2"} {
			if err := os.Link(filepath.Join(dir, "f1"), filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(filepath.Join(dir, "f1"), 0o666); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{".", "sub"} {
			if err := os.Chmod(filepath.Join(dir, d), 0o777); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, who := range []string{"root", "nobody"} {
		if who == "nobody" && !root {
			continue
		}
		base := t.TempDir()
		if root { // one nobody may walk to
			_, base = rootTestBase(t, "", "fsvirt-hostlinks-")
		}
		ref := filepath.Join(base, "copy")
		os.Mkdir(ref, 0o755)
		mk(ref)
		argv, env := []string{"/bin/sh", "-c", hostLinksScript, "sh"}, []string(nil)
		if who == "nobody" {
			argv, env = []string{self}, []string{"FSVIRT_TEST_SH_AS_NOBODY=" + hostLinksScript}
		}
		native := exec.Command(argv[0], append(argv[1:], ref)...)
		native.Env = append(os.Environ(), env...)
		want, err := native.CombinedOutput()
		if err != nil {
			t.Fatalf("natively: %v:\n%s", err, want)
		}
		for _, policy := range []Policy{PolicyFast, PolicyStrict} {
			t.Run(who+"/"+policy.String(), func(t *testing.T) {
				shared := filepath.Join(base, "tree-"+policy.String())
				os.Mkdir(shared, 0o755)
				mk(shared)
				before := treetest.Snap(t, shared)
				out, res := runPolicyCmd(t, shared, policy, env, append(argv, shared)...)
				if out != string(want) || res.ExitStatus != 0 {
					t.Errorf("status %d; the view and the kernel differ:\n%s", res.ExitStatus, lineDiff(out, string(want)))
				}
				if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
					t.Errorf("the shared tree changed: %q", d)
				}
			})
		}
	}
}
