package impl

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// TestProcessCopyUpKeepsXattrs: a file copied up, and a directory whose entries or mode the view
// changed, keep their extended attributes, as on a copy (and as overlayfs copies them up).
func TestProcessCopyUpKeepsXattrs(t *testing.T) {
	if !hasProgram("getfattr") {
		t.Skip("getfattr is not installed (scripts/test.sh installs attr)")
	}
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared\n", "dir d", "file d/g g\n")
	for _, p := range []string{"f", "d", "d/g"} {
		if err := unix.Setxattr(filepath.Join(shared, p), "user.k", []byte("v-"+p), 0); err != nil {
			t.Skipf("no user xattrs here: %v", err)
		}
	}
	before := treetest.Snap(t, shared)
	script := "cd " + shared + " && echo x >> f && touch d/new && chmod 700 d && echo y >> d/g && getfattr --only-values -n user.k f d d/g"
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(policy.String(), func(t *testing.T) {
			out, res := runPolicyCmd(t, shared, policy, nil, "/bin/sh", "-c", script)
			if want := "v-fv-dv-d/g"; out != want || res.ExitStatus != 0 {
				t.Errorf("stdout %q, status %d; want %q", out, res.ExitStatus, want)
			}
			if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}
