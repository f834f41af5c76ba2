package impl

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

var (
	longName = strings.Repeat("n", unix.NAME_MAX+1) // one byte too long for a name
	maxName  = strings.Repeat("m", unix.NAME_MAX)
)

// nameTree has a directory the cases leave shared (a), one they materialize (m), a file (f) and a
// symlink whose target is a name too long.
var nameTree = []string{"dir a", "file a/f hello", "dir m", "file m/g world", "file f top", "symlink sl -> " + longName}

// call logs the outcome of a call that returns only an error.
func (r *rec) call(what string, err error) { r.logf("%s = %s", what, errStr(err)) }

// longNameOps runs every path call on a name too long in directory dir, and around it: a missing
// directory before it (ENOENT first, as the kernel walks), a file before it (ENOTDIR first), and
// the calls that check something else before they look the final name up.
func longNameOps(r *rec, dir string) {
	long := dir + "/" + longName
	for _, c := range []struct {
		what  string
		path  string
		flags int
	}{
		{"open", long, unix.O_RDONLY},
		{"open-creat", long, unix.O_WRONLY | unix.O_CREAT},
		{"open-creat-excl", long, unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL},
		{"open-creat-slash", long + "/", unix.O_WRONLY | unix.O_CREAT}, // EISDIR before the lookup
		{"open-slash", long + "/", unix.O_RDONLY},
		{"open-path", long, unix.O_PATH},
		{"open-tmpfile-in", long, unix.O_TMPFILE | unix.O_RDWR},
		{"open-under", long + "/x", unix.O_RDONLY},
		{"create-under", long + "/x", unix.O_WRONLY | unix.O_CREAT},
		{"after-missing-dir", dir + "/missing/" + longName, unix.O_WRONLY | unix.O_CREAT},
		{"after-file", "f/" + longName, unix.O_RDONLY},
		{"then-dotdot", long + "/../f", unix.O_RDONLY},
	} {
		fd, err := unix.Open(r.p(c.path), c.flags|unix.O_CLOEXEC, 0o644)
		r.logf("%s %s = %s", c.what, dir, errStr(err))
		r.close(fd)
	}
	var st unix.Stat_t
	r.call("stat", unix.Stat(r.p(long), &st))
	r.call("lstat", unix.Lstat(r.p(long), &st))
	r.call("access", unix.Access(r.p(long), unix.R_OK))
	_, err := unix.Readlink(r.p(long), make([]byte, 64))
	r.call("readlink", err)
	r.call("chdir", unix.Chdir(r.p(long)))
	r.call("mkdir", unix.Mkdir(r.p(long), 0o755))
	r.call("mkdir-slash", unix.Mkdir(r.p(long+"/"), 0o755))
	r.call("rmdir", unix.Rmdir(r.p(long)))
	r.call("unlink", unix.Unlink(r.p(long)))
	r.call("unlink-slash", unix.Unlink(r.p(long+"/")))
	r.call("mkfifo", unix.Mknod(r.p(long), unix.S_IFIFO|0o644, 0))
	r.call("mknod-dir", unix.Mknod(r.p(long), unix.S_IFDIR|0o755, 0)) // EPERM before the path
	r.call("mknod-bad-type", unix.Mknod(r.p(long), 0o170644, 0))      // EINVAL before the path
	r.call("symlink-at", unix.Symlink("t", r.p(long)))
	r.call("symlink-to", unix.Symlink(longName, r.p(dir+"/lt"))) // a long target is fine
	target := make([]byte, 300)
	n, err := unix.Readlink(r.p(dir+"/lt"), target)
	r.logf("readlink lt = %d %s", n, errStr(err))
	r.call("unlink lt", unix.Unlink(r.p(dir+"/lt")))
	r.call("link-from", unix.Link(r.p(long), r.p(dir+"/x")))
	r.call("link-to", unix.Link(r.p("f"), r.p(long)))
	r.call("rename-from", unix.Rename(r.p(long), r.p(dir+"/x")))
	r.call("rename-to", unix.Rename(r.p("f"), r.p(long)))
	r.call("rename-both", unix.Rename(r.p(long), r.p(long+"2")))
	r.call("rename-missing-from", unix.Rename(r.p(dir+"/nothere"), r.p(long))) // the source first
	r.call("rename-to-missing-dir", unix.Rename(r.p(long), r.p("missing/x")))  // both parents first
	r.call("rename-from-dot", unix.Rename(r.p(dir+"/."), r.p(long)))           // EBUSY first
	r.call("exchange", unix.Renameat2(unix.AT_FDCWD, r.p("f"), unix.AT_FDCWD, r.p(long), unix.RENAME_EXCHANGE))
	r.call("chmod", unix.Chmod(r.p(long), 0o600))
	r.call("chown", unix.Chown(r.p(long), -1, -1))
	r.call("truncate", unix.Truncate(r.p(long), 0))
	r.call("truncate-negative", unix.Truncate(r.p(long), -1)) // EINVAL before the path
	r.call("utimes", unix.UtimesNano(r.p(long), []unix.Timespec{{Sec: 1}, {Sec: 1}}))
	_, err = unix.Getxattr(r.p(long), "user.x", make([]byte, 8))
	r.call("getxattr", err)
	r.call("setxattr", unix.Setxattr(r.p(long), "user.x", []byte("v"), 0))
	var sfs unix.Statfs_t
	r.call("statfs", unix.Statfs(r.p(long), &sfs))
	p, _ := unix.BytePtrFromString(r.p(long))
	_, _, errno := unix.Syscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(p)), 0, 0)
	r.call("execve", errnoErr(errno))
}

var nameCases = []openCase{
	{"long-name-in-shared-dir", nameTree, func(r *rec) { longNameOps(r, "a") }},
	{"long-name-in-materialized-dir", nameTree, func(r *rec) {
		r.close(r.open("m/new", unix.O_WRONLY|unix.O_CREAT, 0o644)) // m lists its children itself now
		longNameOps(r, "m")
	}},
	{"long-name-in-made-dir", nameTree, func(r *rec) {
		r.call("mkdir n", unix.Mkdir(r.p("n"), 0o755))
		longNameOps(r, "n")
	}},
	{"long-name-through-symlink", nameTree, func(r *rec) {
		for _, materialize := range []bool{false, true} {
			if materialize {
				r.close(r.open("new", unix.O_WRONLY|unix.O_CREAT, 0o644)) // the root now
			}
			r.close(r.open("sl", unix.O_RDONLY, 0))
			r.close(r.open("sl/x", unix.O_RDONLY, 0))
			r.close(r.open("sl", unix.O_WRONLY|unix.O_CREAT, 0o644))
			r.close(r.open("sl", unix.O_PATH|unix.O_NOFOLLOW, 0))
			var st unix.Stat_t
			r.call("stat sl", unix.Stat(r.p("sl"), &st))
			r.call("lstat sl", unix.Lstat(r.p("sl"), &st))
		}
	}},
	{"name-max-is-a-name", nameTree, func(r *rec) {
		for _, dir := range []string{"a", "m"} {
			p := dir + "/" + maxName
			fd := r.open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
			r.write(fd, "max")
			r.close(fd)
			r.cat(p)
			r.call("rename", unix.Rename(r.p(p), r.p(dir+"/"+strings.Repeat("r", unix.NAME_MAX))))
			r.call("mkdir", unix.Mkdir(r.p(p), 0o755))
			r.close(r.open(p+"/"+maxName, unix.O_WRONLY|unix.O_CREAT, 0o644))
			r.cat(p + "/" + maxName)
		}
	}},
	{"path-max", nameTree, func(r *rec) {
		// Relative paths, so that the two trees' roots do not count.
		r.call("chdir", unix.Chdir(r.root))
		fits := strings.Repeat("./", 2047) + "f"    // PATH_MAX-1 bytes
		over := strings.Repeat("./", 2046) + ".//f" // PATH_MAX bytes
		r.logf("lengths %d %d", len(fits), len(over))
		fd := r.openat(unix.AT_FDCWD, fits, unix.O_RDONLY, 0)
		r.readFD("fits", fd)
		r.close(fd)
		r.close(r.openat(unix.AT_FDCWD, over, unix.O_RDONLY, 0))
		r.close(r.openat(unix.AT_FDCWD, over, unix.O_WRONLY|unix.O_CREAT, 0o644))
		var st unix.Stat_t
		r.call("stat", unix.Stat(over, &st))
		r.call("mkdir", unix.Mkdir(over+"d", 0o755))
		r.call("symlink-target", unix.Symlink(over, "s"))
		r.call("symlink-at", unix.Symlink("t", over))
		r.call("rename-to", unix.Rename(fits, over))
		r.call("rename-from", unix.Rename(over, "g"))
		r.call("link-to", unix.Link(fits, over))
		r.call("chdir", unix.Chdir(over))
	}},
	{"flags-before-path", nameTree, func(r *rec) {
		// The kernel checks flags and modes before it copies the path in.
		over := strings.Repeat("./", 2046) + ".//f"
		r.call("chdir", unix.Chdir(r.root))
		if creatDirectoryEINVAL() {
			r.close(r.openat(unix.AT_FDCWD, over, unix.O_DIRECTORY|unix.O_CREAT, 0o644))
		}
		r.close(r.openat(unix.AT_FDCWD, over, unix.O_TMPFILE|unix.O_RDONLY, 0o644))
		fd, err := unix.Openat2(unix.AT_FDCWD, over, &unix.OpenHow{Flags: unix.O_RDONLY | 1<<31})
		r.call("openat2 bad flags", err)
		r.close(fd)
		fd, err = unix.Openat2(unix.AT_FDCWD, over, &unix.OpenHow{Flags: unix.O_RDONLY})
		r.call("openat2", err)
		r.close(fd)
		flagSets := []int{unix.O_RDONLY}
		if creatDirectoryEINVAL() {
			flagSets = append(flagSets, unix.O_DIRECTORY|unix.O_CREAT)
		}
		for _, flags := range flagSets {
			// An address the task cannot read: EFAULT, after the flags.
			fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, atFDCWD, 1, uintptr(flags), 0, 0, 0)
			if errno == 0 {
				unix.Close(int(fd))
			}
			r.logf("openat(bad address, %#o) = %s", flags, errStr(errno))
		}
		r.call("unlinkat bad flags", unix.Unlinkat(unix.AT_FDCWD, over, 0x1))
		r.call("unlinkat", unix.Unlinkat(unix.AT_FDCWD, over, 0))
		r.call("renameat2 bad flags", unix.Renameat2(unix.AT_FDCWD, over, unix.AT_FDCWD, "x", 0x8))
		r.call("renameat2 to", unix.Renameat2(unix.AT_FDCWD, "f", unix.AT_FDCWD, over, 0))
		r.call("linkat bad flags", unix.Linkat(unix.AT_FDCWD, over, unix.AT_FDCWD, "x", 0x1))
		r.call("faccessat2 bad mode", unix.Faccessat2(unix.AT_FDCWD, over, 0o10, 0))
		r.call("readlinkat bad size", func() error {
			_, _, errno := unix.Syscall6(unix.SYS_READLINKAT, atFDCWD, 1, 0, 0, 0, 0)
			return errnoErr(errno)
		}())
		r.call("mknod bad type", unix.Mknod(over, 0o170644, 0))
		r.call("truncate negative", unix.Truncate(over, -1))
		r.call("utimensat bad nsec", unix.UtimesNanoAt(unix.AT_FDCWD, over, []unix.Timespec{{Nsec: 2e9}, {}}, 0))
	}},
}

// atFDCWD is AT_FDCWD as a raw syscall argument.
var atFDCWD = func() uintptr { fd := unix.AT_FDCWD; return uintptr(fd) }()

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// TestLongNames: a name longer than NAME_MAX fails with ENAMETOOLONG, and a path of PATH_MAX bytes
// or more too, in the kernel's order with the other errors of every path call, in a directory the
// view left alone, one it materialized and one it made.
func TestLongNames(t *testing.T) {
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(pol.String(), func(t *testing.T) {
			for _, c := range nameCases {
				t.Run(c.name, func(t *testing.T) { runOpenCase(t, c, pol) })
			}
		})
	}
}

// creatDirectoryEINVAL reports whether this kernel refuses O_CREAT|O_DIRECTORY with EINVAL before it
// looks at the path (Linux 6.4, 43b450632676; Debian's 6.1 has it backported, its 5.10 not). The
// engine answers so on every kernel, as the model does; a native run on an older kernel resolves
// the path instead, so the comparison of those calls only holds where the kernel has the change.
var creatDirectoryEINVAL = sync.OnceValue(func() bool {
	dir, err := os.MkdirTemp("", "fsvirt-creat-dir-probe-")
	if err != nil {
		return true
	}
	defer os.RemoveAll(dir)
	fd, err := unix.Open(dir+"/x", unix.O_CREAT|unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		unix.Close(fd)
	}
	return err == unix.EINVAL
})

// TestMkdirModeTypeBits: mkdir ignores the file-type bits of its mode (vfs_mkdir keeps the
// permission bits), so a caller without CAP_MKNOD makes a directory whatever the bits say; the
// view refused one whose bits said a device with EPERM, as mknod would. As a process that setpriv
// made nobody, without capabilities, in process mode, compared with the kernel. (The same calls
// from a thread that switched to nobody with a saved uid of 0, as asNobody does, passed on the old
// code.)
func TestMkdirModeTypeBits(t *testing.T) {
	if os.Geteuid() != 0 || !hasProgram("perl") || !hasProgram("setpriv") {
		t.Skip("needs root, perl and setpriv")
	}
	script := `for my $m (0020000, 0060000, 0100000, 0010000, 0140000, 0040000) {
		my $n = sprintf("d/m%o", $m);
		print "$n: ", (mkdir($n, $m | 0755) ? sprintf("%o", (lstat $n)[2]) : "$!"), "\n";
	}`
	argv := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "perl", "-e", script}
	shared := t.TempDir()
	treetest.Build(t, shared, "dir d")
	if err := os.Chmod(shared+"/d", 0o777); err != nil {
		t.Fatal(err)
	}
	ref := treetest.Copy(t, shared, filepath.Join(t.TempDir(), "copy"))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = ref
	want, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		got, res := runPolicyCmd(t, shared, pol, nil, append([]string{"/bin/sh", "-c", `cd "$0" && exec "$@"`, shared}, argv...)...)
		if res.ExitStatus != 0 || got != string(want) {
			t.Errorf("%v: exit %d\n%s\nwant (the kernel's):\n%s", pol, res.ExitStatus, got, want)
		}
	}
}

// TestProcessDeviceNode: root makes a device node in the view, as the kernel lets it, and it works
// there; the shared tree gets nothing.
func TestProcessDeviceNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod of a device needs CAP_MKNOD")
	}
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared\n")
	before := treetest.Snap(t, shared)
	out, res := runCmd(t, shared, nil, "/bin/sh", "-c", "cd "+shared+" && mknod null c 1 3 && stat -c '%F %t:%T' null && echo x > null && wc -c < null")
	if want := "character special file 1:3\n0\n"; out != want || res.ExitStatus != 0 {
		t.Errorf("stdout %q, status %d; want %q", out, res.ExitStatus, want)
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}
