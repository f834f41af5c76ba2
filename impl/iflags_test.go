package impl

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/attacktest"
	"github.com/fsvirt/fsvirt/internal/treetest"
)

// TestInodeFlagsLikeKernel: immutable and append-only files and directories of the shared tree
// refuse in the view what the kernel refuses (writes but appends, truncation, chmod, chown,
// times, xattrs, links, removal, renames, names added to an immutable directory or removed from
// an append-only one), to root as to nobody, and allow the rest (an append, times set to now,
// a name added to an append-only directory); a shared file appended to in the view keeps its
// flags, and its other host name shows the append. Compared with the kernel on a copy with the same flags, in both policies
// (docs/kernel.md, "Immutable and append-only objects").
func TestInodeFlagsLikeKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to set inode flags")
	}
	base := attacktest.FlagsBase()
	if !attacktest.HaveInodeFlags(base) {
		t.Skip("no inode flags on the file system of " + base)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		for _, who := range []string{"root", "nobody"} {
			t.Run(policy.String()+"/"+who, func(t *testing.T) {
				dir, err := os.MkdirTemp(base, "fsvirt-iflags-")
				if err != nil {
					t.Fatal(err)
				}
				os.Chmod(dir, 0o755)
				shared, ref := filepath.Join(dir, "tree"), filepath.Join(dir, "copy")
				t.Cleanup(func() {
					for _, d := range []string{shared, ref} {
						for _, p := range []string{"f", "g", "r", "idir", "adir", "g3", "idir/f", "d", "ddir"} {
							setIFlags(filepath.Join(d, p), 0)
						}
					}
					os.RemoveAll(dir)
				})
				mkFlagsTree(t, shared)
				mkFlagsTree(t, ref)
				env := "FSVIRT_TEST_IFLAGS=" + who
				native := exec.Command(self, ref)
				native.Env = append(os.Environ(), env)
				want, err := native.CombinedOutput()
				if err != nil {
					t.Fatalf("on the copy: %v:\n%s", err, want)
				}
				before := treetest.Snap(t, shared)
				got, res := runPolicyCmd(t, shared, policy, []string{env}, self, shared)
				if res.ExitStatus != 0 {
					t.Fatalf("exit status %d:\n%s", res.ExitStatus, got)
				}
				if got != string(want) {
					t.Errorf("the view and the kernel differ:\n%s", lineDiff(got, string(want)))
				}
				if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
					t.Errorf("the shared tree changed: %q", d)
				}
			})
		}
	}
}

// mkFlagsTree makes TestInodeFlagsLikeKernel's tree at root: an immutable file f and directory
// idir, append-only files g (with a second name, glink) and r and directory adir, everything but
// r writable by everyone.
func mkFlagsTree(t *testing.T, root string) {
	t.Helper()
	os.Mkdir(root, 0o777)
	treetest.Build(t, root, "file f f\n", "file g g\n", "file r r\n", "dir idir", "file idir/in i\n",
		"dir adir", "file adir/in a\n", "dir ddir", "file d d\n")
	for p, mode := range map[string]uint32{".": 0o777, "f": 0o666, "g": 0o666, "r": 0o644, "idir": 0o777,
		"idir/in": 0o666, "adir": 0o777, "adir/in": 0o666, "ddir": 0o777, "d": 0o666} {
		if err := os.Chmod(filepath.Join(root, p), os.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(root, "g"), filepath.Join(root, "glink")); err != nil { // g's second name
		t.Fatal(err)
	}
	const noDump, noAtime = 0x40, 0x80 // flags a copy keeps and the kernel enforces on no one
	for p, flags := range map[string]uint32{"f": fsImmutableFl, "idir": fsImmutableFl, "g": fsAppendFl,
		"r": fsAppendFl, "adir": fsAppendFl, "ddir": noDump | noAtime, "d": noDump} {
		if err := setIFlags(filepath.Join(root, p), flags); err != nil {
			t.Fatal(err)
		}
	}
}

// setIFlags sets the inode flags of p to flags.
func setIFlags(p string, flags uint32) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocSetflags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return e
	}
	return nil
}

// iflagsOf returns the flags of p that a copy keeps (keptFlags), in hex.
func iflagsOf(p string) string {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err.Error()
	}
	defer unix.Close(fd)
	var flags uint32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocGetflags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return e.Error()
	}
	return fmt.Sprintf("%#x", flags&keptFlags)
}

// changeFlagged, for FSVIRT_TEST_IFLAGS, makes every change TestInodeFlagsLikeKernel tries in
// root as caller who, and prints each one's outcome, then the files' contents and flags.
func changeFlagged(who, root string) int {
	if who == "nobody" {
		if err := dropTo(65534); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	if err := os.Chdir(root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	open := func(p string, flags int) error {
		fd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0o666)
		if err == nil {
			if flags&unix.O_ACCMODE != unix.O_RDONLY {
				unix.Write(fd, []byte("+\n"))
			}
			unix.Close(fd)
		}
		return err
	}
	now := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
	past := []unix.Timespec{{Sec: 1}, {Sec: 1}}
	xattr := func(p string) error { return unix.Setxattr(p, "user.k", []byte("v"), 0) }
	for _, c := range []struct {
		name string
		err  error
	}{
		{"append f", open("f", unix.O_WRONLY|unix.O_APPEND)},
		{"append g", open("g", unix.O_WRONLY|unix.O_APPEND)},
		{"write g", open("g", unix.O_WRONLY)},
		{"append-trunc g", open("g", unix.O_WRONLY|unix.O_APPEND|unix.O_TRUNC)},
		{"write r", open("r", unix.O_WRONLY)},
		{"truncate f", unix.Truncate("f", 0)},
		{"truncate g", unix.Truncate("g", 0)},
		{"truncate r", unix.Truncate("r", 0)},
		{"chmod f", unix.Chmod("f", 0o600)},
		{"chmod g", unix.Chmod("g", 0o600)},
		{"chown g", unix.Chown("g", os.Getuid(), -1)},
		{"utimes g", unix.UtimesNanoAt(unix.AT_FDCWD, "g", past, 0)},
		{"utimes-now g", unix.UtimesNanoAt(unix.AT_FDCWD, "g", now, 0)},
		{"xattr f", xattr("f")},
		{"xattr g", xattr("g")},
		{"link f", unix.Link("f", "f2")},
		{"link g", unix.Link("g", "g2")},
		{"unlink f", unix.Unlink("f")},
		{"unlink g", unix.Unlink("g")},
		{"rename g", unix.Rename("g", "g3")},
		{"rename in adir", unix.Rename("adir/in", "adir/in2")},
		{"unlink in adir", unix.Unlink("adir/in")},
		{"create in idir", open("idir/new", unix.O_WRONLY|unix.O_CREAT)},
		{"unlink in idir", unix.Unlink("idir/in")},
		{"append in idir", open("idir/in", unix.O_WRONLY|unix.O_APPEND)},
		{"mkdir in idir", unix.Mkdir("idir/d", 0o755)},
		{"symlink in idir", unix.Symlink("f", "idir/l")},
		{"fifo in idir", unix.Mknod("idir/p", unix.S_IFIFO|0o644, 0)},
		{"rename into idir", unix.Rename("adir", "idir/adir")},
		{"create in adir", open("adir/new", unix.O_WRONLY|unix.O_CREAT)},
		{"rename in adir (new)", unix.Rename("adir/new", "adir/new2")},
		{"rmdir adir", unix.Rmdir("adir")},
		{"create in ddir", open("ddir/new", unix.O_WRONLY|unix.O_CREAT)},
		{"append d", open("d", unix.O_WRONLY|unix.O_APPEND)},
	} {
		fmt.Printf("%s: %v\n", c.name, c.err)
	}
	for _, p := range []string{"f", "g", "glink", "r", "idir/in", "adir/in", "d", "ddir"} {
		b, err := os.ReadFile(p)
		fmt.Printf("%s: %q %v %s\n", p, b, err, iflagsOf(p))
	}
	for _, d := range []string{".", "idir", "adir"} {
		names, _ := os.ReadDir(d)
		var s []string
		for _, n := range names {
			s = append(s, n.Name())
		}
		fmt.Printf("%s: %s\n", d, strings.Join(s, " "))
	}
	return 0
}
