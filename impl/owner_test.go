package impl

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// ownerGroup is the group of the shared set-group-ID directory in TestNewObjectOwnership: neither
// root's group nor nobody's.
const ownerGroup = 4242

// newObjectCallers are the callers TestNewObjectOwnership makes objects as, for
// FSVIRT_TEST_NEW_OBJECTS: whether each is in ownerGroup or holds CAP_FSETID decides whether a
// new file in a set-group-ID directory keeps its S_ISGID.
var newObjectCallers = []string{"root", "capless-root", "nobody", "nobody-in-group"}

// TestNewObjectOwnership: a file (open with O_CREAT), a directory, a FIFO, a regular file made
// with mknod and a symlink made in the view get the owner, group and mode the kernel gives them
// natively, in a shared set-group-ID directory of another group, in a set-group-ID directory made
// in the view, and in plain directories, in the tree and outside it; as root, as root without capabilities, and as nobody
// outside and inside the directory's group. The kernel gives the directory's group, S_ISGID to a
// new directory, and strips S_ISGID from a new group-executable file whose creator is neither in
// that group nor holds CAP_FSETID; in a directory with a default ACL (shared, and made in the
// view), the ACL and not the umask masks the mode, and the new object takes the ACL
// (docs/kernel.md, "New objects' owner and mode").
func TestNewObjectOwnership(t *testing.T) {
	self, base := rootTestBase(t, "needs root to make objects as other users", "fsvirt-owner-test-")
	shared := filepath.Join(base, "tree")
	mkOwnerTree(t, shared)
	for _, who := range newObjectCallers {
		t.Run(who, func(t *testing.T) {
			// A directory outside the trees, where the calls act on the host, and its copy.
			outside, outsideRef := filepath.Join(base, "outside-"+who), filepath.Join(base, "outside-copy-"+who)
			mkOwnerTree(t, outside)
			mkOwnerTree(t, outsideRef)
			ref := filepath.Join(base, "copy-"+who)
			if out, err := exec.Command("cp", "-a", shared, ref).CombinedOutput(); err != nil {
				t.Fatalf("cp -a: %v: %s", err, out)
			}
			env := "FSVIRT_TEST_NEW_OBJECTS=" + who
			native := exec.Command(self, ref, outsideRef)
			native.Env = append(os.Environ(), env)
			want, err := native.CombinedOutput()
			if err != nil {
				t.Fatalf("on the copy: %v:\n%s", err, want)
			}
			before := treetest.Snap(t, shared)
			got, res := runCmd(t, shared, []string{env}, self, shared, outside)
			if res.ExitStatus != 0 {
				t.Fatalf("exit status %d:\n%s", res.ExitStatus, got)
			}
			if got != string(want) {
				t.Errorf("as %s, the view and the kernel differ:\n%s", who, lineDiff(got, string(want)))
			}
			if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}

// mkOwnerTree makes, at root, the directories TestNewObjectOwnership makes objects in: a
// set-group-ID directory of ownerGroup, a plain one, and where the file system keeps POSIX ACLs
// two with a default ACL: "acl" names a user and so has a mask, "aclmin" has the three entries
// of a mode only. Everyone may write to them and to root.
func mkOwnerTree(t *testing.T, root string) {
	t.Helper()
	os.Mkdir(root, 0o755)
	treetest.Build(t, root, "dir sgid", "dir plain", "dir acl", "dir aclmin")
	for name, mode := range map[string]uint32{".": 0o777, "sgid": 0o2777, "plain": 0o777, "acl": 0o777,
		"aclmin": 0o777} {
		if err := unix.Chmod(filepath.Join(root, name), mode); err != nil { // os.Chmod drops S_ISGID
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(root, "sgid"), 0, ownerGroup); err != nil {
		t.Fatal(err)
	}
	for name, acl := range map[string][]byte{"acl": ownerTestACL, "aclmin": ownerTestMinACL} {
		err := unix.Setxattr(filepath.Join(root, name), "system.posix_acl_default", acl, 0)
		if err == unix.EOPNOTSUPP {
			t.Logf("%s: no POSIX ACLs on this file system", root)
			os.Remove(filepath.Join(root, "acl"))
			os.Remove(filepath.Join(root, "aclmin"))
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// aclXattr is a POSIX ACL in its xattr form: a version, then tag, permissions and id per entry.
func aclXattr(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

const noACLID = 0xffffffff // the id of the entries that name no one

// ownerTestACL grants user 65533 and the owner everything, the owning group read and execute
// (and so does its mask), others nothing: a new object keeps of its mode only what it grants,
// whatever the umask. ownerTestMinACL has no mask: its group entry does the masking.
var (
	ownerTestACL = aclXattr([3]uint32{aclUserObj, 7, noACLID}, [3]uint32{0x02, 7, 65533},
		[3]uint32{aclGroupObj, 5, noACLID}, [3]uint32{aclMask, 5, noACLID}, [3]uint32{aclOther, 0, noACLID})
	ownerTestMinACL = aclXattr([3]uint32{aclUserObj, 6, noACLID}, [3]uint32{aclGroupObj, 7, noACLID},
		[3]uint32{aclOther, 1, noACLID})
)

// lineDiff lists the lines of view and kernel that differ, side by side.
func lineDiff(view, kernel string) string {
	v, k := strings.Split(view, "\n"), strings.Split(kernel, "\n")
	var b strings.Builder
	for i := range max(len(v), len(k)) {
		var vl, kl string
		if i < len(v) {
			vl = v[i]
		}
		if i < len(k) {
			kl = k[i]
		}
		if vl != kl {
			fmt.Fprintf(&b, "view:   %s\nkernel: %s\n", vl, kl)
		}
	}
	return b.String()
}

// makeNewObjects, for FSVIRT_TEST_NEW_OBJECTS, takes the credentials of caller who and, in each of
// dirs (the tree, a directory outside it), makes a set-group-ID directory, and in it and in the
// others new objects of every kind, each asking for every mode bit it may; it prints each one's
// mode, owner and group.
func makeNewObjects(who string, dirs []string) int {
	if err := becomeCaller(who); err != nil {
		fmt.Fprintln(os.Stderr, who+":", err)
		return 2
	}
	unix.Umask(0o022)
	for i, d := range dirs {
		if err := os.Chdir(d); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		makeNewObjectsHere([]string{"tree", "outside"}[i])
	}
	return 0
}

// makeNewObjectsHere is makeNewObjects in the working directory, whose lines start with where.
func makeNewObjectsHere(where string) {
	try := func(what string, err error) {
		if err != nil {
			fmt.Printf("%s %s: %v\n", where, what, err)
		}
	}
	try("mkdir viewsgid", unix.Mkdir("viewsgid", 0o777))
	try("chgrp viewsgid", unix.Chown("viewsgid", -1, ownerGroup))
	try("chmod viewsgid", unix.Chmod("viewsgid", 0o2777))
	names := []string{"viewsgid"}
	dirs := []string{"sgid", "viewsgid", "plain", "."}
	if _, err := os.Stat("acl"); err == nil { // the file system keeps ACLs
		try("mkdir viewacl", unix.Mkdir("viewacl", 0o777))
		try("setfacl viewacl", unix.Setxattr("viewacl", "system.posix_acl_default", ownerTestACL, 0))
		names = append(names, "viewacl")
		dirs = append(dirs, "acl", "aclmin", "viewacl")
	}
	for _, dir := range dirs {
		for _, c := range []struct {
			name string
			make func(p string) error
		}{
			{"file", func(p string) error { return creat(p, 0o6775) }},
			{"file-2745", func(p string) error { return creat(p, 0o2745) }},
			{"dir", func(p string) error { return unix.Mkdir(p, 0o7777) }},
			{"fifo", func(p string) error { return unix.Mknod(p, unix.S_IFIFO|0o6775, 0) }},
			{"reg", func(p string) error { return unix.Mknod(p, unix.S_IFREG|0o6775, 0) }},
			{"link", func(p string) error { return unix.Symlink("file", p) }},
		} {
			p := filepath.Join(dir, c.name)
			try(c.name+" "+p, c.make(p))
			names = append(names, p)
		}
	}
	for _, p := range names {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			fmt.Printf("%s %s: %v\n", where, p, err)
			continue
		}
		fmt.Printf("%s %s %07o %d:%d%s\n", where, p, st.Mode, st.Uid, st.Gid, aclsOf(p))
	}
}

// aclsOf prints the access and default ACLs of p, in hex, where it has them.
func aclsOf(p string) string {
	var s string
	for _, name := range []string{"access", "default"} {
		buf := make([]byte, 1024)
		if n, err := unix.Lgetxattr(p, "system.posix_acl_"+name, buf); err == nil {
			s += fmt.Sprintf(" %s=%x", name, buf[:n])
		}
	}
	return s
}

// creat makes a file with open(O_CREAT|O_EXCL).
func creat(p string, mode uint32) error {
	fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, mode)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// becomeCaller gives this process the credentials of caller who (newObjectCallers). Root without
// capabilities is reached by executing this program again with none.
func becomeCaller(who string) error {
	switch who {
	case "root":
		return nil
	case "capless-root":
		if os.Getenv("FSVIRT_TEST_CAPLESS") != "" {
			return nil
		}
		if err := dropCapabilities(); err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		return syscall.Exec(self, os.Args, append(os.Environ(), "FSVIRT_TEST_CAPLESS=1"))
	case "nobody":
		return dropTo(65534)
	case "nobody-in-group":
		if err := syscall.Setgroups([]int{ownerGroup}); err != nil {
			return err
		}
		if err := syscall.Setresgid(65534, 65534, 65534); err != nil {
			return err
		}
		return syscall.Setresuid(65534, 65534, 65534)
	}
	return fmt.Errorf("no caller %q", who)
}
