package impl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// TestProcessCopyUpKeepsXattrs: a file copied up, a directory whose entries or mode the view
// changed, and the subdirectories of such a directory keep their extended attributes, as on a
// copy (and as overlayfs copies them up).
func TestProcessCopyUpKeepsXattrs(t *testing.T) {
	if !hasProgram("getfattr") {
		t.Skip("getfattr is not installed (scripts/test.sh installs attr)")
	}
	shared := t.TempDir()
	subs := []string{"d/keep", "d/s1", "d/s2", "d/s3", "d/s4", "d/s5"}
	treetest.Build(t, shared, append([]string{"file f shared\n", "dir d", "file d/g g\n"},
		append(dirs(subs), "dir d/s5/c")...)...)
	for _, p := range append([]string{"f", "d", "d/g"}, subs...) {
		if err := unix.Setxattr(filepath.Join(shared, p), "user.k", []byte("v-"+p), 0); err != nil {
			t.Skipf("no user xattrs here: %v", err)
		}
	}
	before := treetest.Snap(t, shared)
	// Listing d makes placeholders of its subdirectories, which then change each as it may: they
	// keep their own attributes too.
	script := "cd " + shared + " && echo x >> f && ls d >/dev/null && touch d/new && chmod 700 d && " +
		"echo y >> d/g && chmod 700 d/s1 && touch d/s2/new && setfattr -n user.z -v z d/s3 && " +
		"touch -d 2001-01-01 d/s4 && rmdir d/s5/c && getfattr --only-values -n user.k f d d/g " +
		strings.Join(subs, " ")
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(policy.String(), func(t *testing.T) {
			out, res := runPolicyCmd(t, shared, policy, nil, "/bin/sh", "-c", script)
			if want := "v-fv-dv-d/g" + strings.Join(values(subs), ""); out != want || res.ExitStatus != 0 {
				t.Errorf("stdout %q, status %d; want %q", out, res.ExitStatus, want)
			}
			if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}

// dirs is treetest notation for directories at paths ps.
func dirs(ps []string) []string {
	var out []string
	for _, p := range ps {
		out = append(out, "dir "+p)
	}
	return out
}

// values is the user.k value TestProcessCopyUpKeepsXattrs gives each of paths ps.
func values(ps []string) []string {
	var out []string
	for _, p := range ps {
		out = append(out, "v-"+p)
	}
	return out
}

// TestProcessCopyUpKeepsHoles: a sparse shared file copied up takes the blocks it takes natively
// (only its data is copied; its holes stay holes) and reads the same, both policies.
func TestProcessCopyUpKeepsHoles(t *testing.T) {
	mk := func(dir string) {
		treetest.Build(t, dir, "file sp x")
		f, err := os.OpenFile(filepath.Join(dir, "sp"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for off, b := range map[int64]string{1 << 20: "data", 40 << 20: "more"} {
			if _, err := f.WriteAt([]byte(b), off); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Truncate(64 << 20); err != nil {
			t.Fatal(err)
		}
	}
	shared, ref := t.TempDir(), t.TempDir()
	mk(shared)
	mk(ref)
	script := "cd %s && echo y >> sp && stat -c '%%b %%s' sp && md5sum < sp"
	want, err := exec.Command("/bin/sh", "-c", fmt.Sprintf(script, ref)).CombinedOutput()
	if err != nil {
		t.Fatalf("natively: %v: %s", err, want)
	}
	before := treetest.Snap(t, shared)
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(policy.String(), func(t *testing.T) {
			out, res := runPolicyCmd(t, shared, policy, nil, "/bin/sh", "-c", fmt.Sprintf(script, shared))
			if out != string(want) || res.ExitStatus != 0 {
				t.Errorf("blocks, size and checksum in the view %q (status %d); natively %q", out, res.ExitStatus, want)
			}
			if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
	// Under a bound of 8 MiB, on a tmpfs layer that copy_file_range cannot reach from most file
	// systems (read and write then): the file's 64 MiB would not fit, its data does.
	t.Run("max-bytes", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("limits need root")
		}
		out, err := os.CreateTemp(t.TempDir(), "stdout")
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		res, err := Run(context.Background(), RunConfig{Trees: []string{shared}, Store: t.TempDir(),
			Limits: Limits{Bytes: 8 << 20}, Path: "/bin/sh",
			Args: []string{"sh", "-c", "(" + fmt.Sprintf(script, shared) + ") | sed 1d"}, Stdout: out})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(out.Name())
		if _, sum, _ := strings.Cut(string(want), "\n"); string(got) != sum || res.ExitStatus != 0 {
			t.Errorf("checksum in the view %q (status %d); natively %q", got, res.ExitStatus, sum)
		}
	})
}

// TestProcessCopyUpTakesNoInheritedACL: a copy is made in an upper directory that has its shared
// directory's default ACL, which the kernel gives whatever is made there; a shared file or
// directory without an ACL of its own (made before its directory got the default ACL) keeps none
// in the view, while what the view makes there takes it, as natively.
func TestProcessCopyUpTakesNoInheritedACL(t *testing.T) {
	if !hasProgram("getfattr") {
		t.Skip("getfattr is not installed (scripts/test.sh installs attr)")
	}
	mk := func(dir string) {
		treetest.Build(t, dir, "dir d", "file d/f x\n", "dir d/sub", "file d/sub/g y\n")
		acl := aclXattr([3]uint32{aclUserObj, 7, noACLID}, [3]uint32{0x02, 7, 5},
			[3]uint32{aclGroupObj, 5, noACLID}, [3]uint32{aclMask, 7, noACLID}, [3]uint32{aclOther, 5, noACLID})
		if err := unix.Setxattr(filepath.Join(dir, "d"), "system.posix_acl_default", acl, 0); err != nil {
			t.Skipf("no POSIX ACLs here: %v", err)
		}
	}
	shared, ref := t.TempDir(), t.TempDir()
	mk(shared)
	mk(ref)
	script := `cd %s && echo z >> d/f && echo z >> d/sub/g && touch d/sub/new d/new && mkdir d/nd &&
for p in d/f d/sub d/sub/g d/sub/new d/new d/nd; do echo "$p"; getfattr -h -d -m '^system.posix_acl' -e hex "$p" 2>&1 | grep -v '^#'; done`
	want, err := exec.Command("/bin/sh", "-c", fmt.Sprintf(script, ref)).CombinedOutput()
	if err != nil {
		t.Fatalf("natively: %v: %s", err, want)
	}
	before := treetest.Snap(t, shared)
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		out, res := runPolicyCmd(t, shared, policy, nil, "/bin/sh", "-c", fmt.Sprintf(script, shared))
		if out != string(want) || res.ExitStatus != 0 {
			t.Errorf("%v: status %d; the view and the kernel differ:\n%s", policy, res.ExitStatus, lineDiff(out, string(want)))
		}
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}
