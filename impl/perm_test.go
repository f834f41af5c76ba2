package impl

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// unprivScript runs, as nobody, what the kernel refuses or changes for an unprivileged caller,
// and prints each result: the view must answer as the kernel does on a copy.
const unprivScript = `cd "$1"
r() { "$@" 2>/dev/null; echo "$* -> $?"; }
r sh -c 'echo x >> rootfile'
r sh -c 'echo x >> nobodyfile'
r sh -c 'echo x >> groupfile'
r touch rootdir/new
r touch nobodydir/new
r rm rootdir/inner
r rm sticky/rootowned
r rm sticky/nobodyowned
r mkdir rootdir/sub
r chmod 777 rootfile
r chmod 2755 nobodyfile-rootgroup
r chmod 2755 nobodydir-rootgroup
r chown 65534 rootfile
r chown 0 nobodyfile
r chgrp 0 nobodyfile
r touch -d 2001-01-01 rootfile
r touch rootfile
r touch worldwritable
r truncate -s 0 rootfile
r truncate -s 1 worldwritable
r mv rootdir/inner nobodydir/
r mv nobodydir/x nobodydir/y
r ln -s x rootdir/link
r mkfifo rootdir/fifo
r touch nobodydir/acldir/a
r touch nobodydir/acldir/b
r sh -c 'echo x >> aclfile'
r sh -c 'echo y >> aclfile'
r cat aclfile
ls nobodydir/acldir | tr '\n' ' '
stat -c '%n %a %u:%g %s' rootfile nobodyfile nobodyfile-rootgroup nobodydir-rootgroup worldwritable 2>&1
ls rootdir nobodydir sticky | tr '\n' ' '
`

// TestProcessUnprivilegedMatchesKernel: a caller that is not root is refused, in the view, what
// the kernel refuses it, and gets what the kernel gives it (the set-group-ID bit dropped by a
// chmod from outside the file's group): the same script as nobody in the view and on a copy.
func TestProcessUnprivilegedMatchesKernel(t *testing.T) {
	compareCallerWithKernel(t, "FSVIRT_TEST_SH_AS_NOBODY", unprivScript, "as nobody")
}

// TestProcessRootWithoutCapabilitiesMatchesKernel: root that dropped every capability is refused,
// in the view, what the kernel refuses it (writes to others' files, chmod, chown, mknod of a
// device), though its fsuid is 0: the same script in the view and on a copy.
func TestProcessRootWithoutCapabilitiesMatchesKernel(t *testing.T) {
	compareCallerWithKernel(t, "FSVIRT_TEST_SH_AS_CAPLESS_ROOT", unprivScript+capScript, "as root without capabilities")
}

// capScript adds to unprivScript what only capabilities decide for root.
const capScript = `r mknod rootdir/null c 1 3
r sh -c 'echo x >> nobodydir/x'
r chmod 700 nobodydir
r ls nobodydir
`

// dropCapabilities empties the calling thread's capability sets and bounding set, so that
// what it executes runs without any, even as root. It locks the goroutine to its thread, which
// is to execute next.
func dropCapabilities() error {
	runtime.LockOSThread()
	for c := 0; c <= 63; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err == unix.EINVAL {
			break
		} else if err != nil {
			return err
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	return unix.Capset(&hdr, &data[0])
}

// compareCallerWithKernel runs script, through this test binary with env set (which switches the
// shell's credentials), in the view and on a copy of a tree of two owners, and wants the same
// output from both.
func compareCallerWithKernel(t *testing.T, env, script, who string) {
	self, base := rootTestBase(t, "needs root to build a tree of two owners", "fsvirt-unpriv-test-")
	shared := filepath.Join(base, "tree")
	os.Mkdir(shared, 0o755)
	treetest.Build(t, shared, "file rootfile r", "file nobodyfile n", "file groupfile g", "file nobodyfile-rootgroup n",
		"file worldwritable w", "dir rootdir", "file rootdir/inner i", "dir nobodydir", "file nobodydir/x x",
		"dir nobodydir-rootgroup", "dir sticky", "file sticky/rootowned r", "file sticky/nobodyowned n")
	for name, own := range map[string][2]int{"nobodyfile": {65534, 65534}, "nobodyfile-rootgroup": {65534, 0},
		"nobodydir": {65534, 65534}, "nobodydir-rootgroup": {65534, 0}, "sticky/nobodyowned": {65534, 65534}} {
		if err := os.Chown(filepath.Join(shared, name), own[0], own[1]); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(shared, "groupfile"), 0o664)
	os.Chmod(filepath.Join(shared, "worldwritable"), 0o666)
	unix.Chmod(filepath.Join(shared, "sticky"), 0o1777) // os.Chmod would drop the sticky bit
	// Root's directory and file that an ACL entry opens to nobody. The directory is in one the
	// script adds to first, which gives it a placeholder: ACLs were not copied to that when it
	// became the view's, and the second file made in it was refused.
	treetest.Build(t, shared, "file aclfile a")
	if err := os.Mkdir(filepath.Join(shared, "nobodydir/acldir"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(shared, "aclfile"), 0o600)
	for name, perm := range map[string]uint32{"nobodydir/acldir": 7, "aclfile": 6} {
		acl := aclXattr([3]uint32{aclUserObj, 7, noACLID}, [3]uint32{0x02, perm, 65534},
			[3]uint32{aclGroupObj, 5, noACLID}, [3]uint32{aclMask, 7, noACLID}, [3]uint32{aclOther, 5, noACLID})
		unix.Setxattr(filepath.Join(shared, name), "system.posix_acl_access", acl, 0) // else refused alike
	}
	ref := filepath.Join(base, "copy")
	treetest.Copy(t, shared, ref)
	native := exec.Command(self, ref)
	native.Env = append(os.Environ(), env+"="+script)
	want, _ := native.Output()
	before := treetest.Snap(t, shared)
	got, res := runCmd(t, shared, []string{env + "=" + script}, self, shared)
	if res.ExitStatus != 0 {
		t.Fatalf("exit status %d", res.ExitStatus)
	}
	if !strings.Contains(string(want), "nobodydir: ") { // the listing at the script's end
		t.Fatalf("the script did not run to its end on the copy:\n%s", want)
	}
	if got != string(want) {
		t.Errorf("%s, the view and the kernel differ:\nview:\n%s\nkernel:\n%s", who, got, want)
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}

// rootThenNobodyScript changes the tree as root, then runs $NOBODY_SCRIPT as nobody (through this
// test binary, "$SELF"): what root made or changed in the view must refuse nobody what the kernel
// refuses it, in walks (chdir, a relative path through it), exec and opens.
const rootThenNobodyScript = `cd "$1"
mkdir -m 700 rootonly && echo secret > rootonly/f && mkdir rootonly/n
mkdir -m 700 private && mv private moved
cp /bin/true prog-0700 && chmod 700 prog-0700
cp /bin/true prog-0744 && chmod 744 prog-0744
cp /bin/true prog-0711 && chmod 711 prog-0711
chmod 700 rootdir
FSVIRT_TEST_SH_AS_NOBODY="$NOBODY_SCRIPT" "$SELF" "$1" 2>&1
`

const nobodyAfterRootScript = `cd "$1"
r() { "$@" >/dev/null 2>&1; echo "$* -> $?"; }
r sh -c 'cd rootonly'
r sh -c 'cd moved'
r sh -c 'cd rootdir'
r cat rootonly/f
r ls rootonly/n
r ./prog-0700
r ./prog-0744
r ./prog-0711
(cd moved 2>/dev/null && pwd) || echo "cd moved refused"
./prog-0700 2>&1 | sed 's/^[^:]*: //'
`

// TestProcessUnprivilegedAfterRootChanges: directories and programs root made or changed in the view
// refuse an unprivileged process what the kernel refuses it (the supervisor checked search and
// execute permission with access(2), as itself, until rapid found chdir into a 0700 directory
// renamed in the view succeeding as nobody): the same scripts in the view and on a copy.
func TestProcessUnprivilegedAfterRootChanges(t *testing.T) {
	self, base := rootTestBase(t, "needs root to change the tree as root and then drop to nobody", "fsvirt-unpriv-test-")
	shared := filepath.Join(base, "tree")
	os.Mkdir(shared, 0o755)
	treetest.Build(t, shared, "dir rootdir", "file rootdir/inner i")
	ref := filepath.Join(base, "copy")
	treetest.Copy(t, shared, ref)
	env := []string{"SELF=" + self, "NOBODY_SCRIPT=" + nobodyAfterRootScript}
	native := exec.Command("/bin/sh", "-c", rootThenNobodyScript, "sh", ref)
	native.Env = append(os.Environ(), env...)
	want, _ := native.Output()
	if !strings.Contains(string(want), "./prog-0711 -> 0") {
		t.Fatalf("the script did not run to its end on the copy:\n%s", want)
	}
	before := treetest.Snap(t, shared)
	got, res := runCmd(t, shared, env, "/bin/sh", "-c", rootThenNobodyScript, "sh", shared)
	if res.ExitStatus != 0 {
		t.Fatalf("exit status %d", res.ExitStatus)
	}
	want = []byte(strings.ReplaceAll(string(want), ref, shared))
	if got != string(want) {
		t.Errorf("as nobody after root's changes, the view and the kernel differ:\nview:\n%s\nkernel:\n%s", got, want)
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}
