package impl

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// fdLink is the caller's /proc/self/fd/N for its descriptor fd: a magic link the kernel follows
// to the object itself, which may have no path (a memfd, a pipe, a deleted or O_TMPFILE file).
func fdLink(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// changeThroughLink changes what can be changed of the object behind fd by its /proc/self/fd/N
// path, and records each call's errno and the object's status (through fd) after it. xattrs:
// also set one (the object's file system must be the same in the view and in the copy). blind:
// record the errnos alone, for a shared file the view removed, which it leaves as it is (README).
func (r *rec) changeThroughLink(what string, fd int, xattrs, blind bool) {
	if fd < 0 {
		return
	}
	l := fdLink(fd)
	stat := func(call string, err error) {
		if blind {
			r.logf("%s %s: %s", what, call, errStr(err))
			return
		}
		var st unix.Stat_t
		serr := unix.Fstat(fd, &st)
		mtime := "recent" // the view's run and the copy's are not in the same second
		if st.Mtim.Sec < 1e9 {
			mtime = strconv.FormatInt(st.Mtim.Sec, 10) // utimensat's
		}
		r.logf("%s %s: %s; fstat %s mode=%#o size=%d uid=%d gid=%d mtime=%s", what, call, errStr(err),
			errStr(serr), st.Mode, st.Size, st.Uid, st.Gid, mtime)
	}
	stat("chmod", unix.Chmod(l, 0o640))
	stat("fchmodat", unix.Fchmodat(unix.AT_FDCWD, l, 0o604, 0))
	stat("chown", unix.Chown(l, 1234, 1235))
	stat("lchown", unix.Lchown(l, 1236, 1237)) // the link itself: /proc's, not the object
	ts := []unix.Timespec{{Sec: 1_000_000, Nsec: 0}, {Sec: 2_000_000, Nsec: 0}}
	stat("utimensat", unix.UtimesNanoAt(unix.AT_FDCWD, l, ts, 0))
	stat("truncate 3", unix.Truncate(l, 3))
	stat("truncate -1", unix.Truncate(l, -1))
	if xattrs {
		stat("setxattr", unix.Setxattr(l, "user.fsvirt", []byte("v"), 0))
		buf := make([]byte, 16)
		if n, err := unix.Getxattr(l, "user.fsvirt", buf); !blind {
			r.logf("%s getxattr: %d %s", what, n, errStr(err))
		}
		stat("removexattr", unix.Removexattr(l, "user.fsvirt"))
	}
}

// fdObjectCases change objects without a path in the view through /proc/self/fd/N, as chmod,
// chown, utimensat, truncate and the xattr calls do given such a path: the kernel follows the
// magic link to the object and changes it (only lchown stays on the link).
var fdObjectCases = []openCase{
	{"fd-object-memfd", []string{"dir d"}, func(r *rec) {
		fd, err := unix.MemfdCreate("fsvirt-test", unix.MFD_CLOEXEC)
		r.logf("memfd_create: %s", errStr(err))
		if err != nil {
			return
		}
		defer unix.Close(fd)
		r.write(fd, "hello")
		r.changeThroughLink("memfd", fd, false, false)
	}},
	{"fd-object-pipe", []string{"dir d"}, func(r *rec) {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			r.logf("pipe: %s", errStr(err))
			return
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		r.changeThroughLink("pipe", p[0], false, false)
	}},
	{"fd-object-deleted", []string{"dir d", "file d/f hello"}, func(r *rec) {
		// A shared file opened for reading, then removed: the descriptor's object in the view
		// is still the shared file, which nothing may change; the calls succeed as the kernel's
		// do, and change nothing (TestFDObjectRemovedShared).
		fd := r.open("d/f", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		defer r.close(fd)
		r.call("unlink d/f", unix.Unlink(r.p("d/f")))
		r.changeThroughLink("deleted shared", fd, true, true)
		r.call("fchmod deleted shared", unix.Fchmod(fd, 0o600))
		r.call("fchown deleted shared", unix.Fchown(fd, 1, 1))
		r.call("ftruncate deleted shared", unix.Ftruncate(fd, 1))
		r.call("futimens deleted shared", unix.UtimesNanoAt(fd, "", nil, unix.AT_EMPTY_PATH))
		r.call("linkat deleted shared", unix.Linkat(unix.AT_FDCWD, fdLink(fd), unix.AT_FDCWD, r.p("d/again"),
			unix.AT_SYMLINK_FOLLOW))
		r.call("linkat AT_EMPTY_PATH deleted shared", unix.Linkat(fd, "", unix.AT_FDCWD, r.p("d/again"),
			unix.AT_EMPTY_PATH))
		rfd, err := unix.Open(fdLink(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		r.logf("open link for reading: %s", errStr(err))
		r.close(rfd)
		// A file made in the tree, then removed.
		fd2 := r.open("d/n", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		defer r.close(fd2)
		r.write(fd2, "new file")
		r.call("unlink d/n", unix.Unlink(r.p("d/n")))
		r.changeThroughLink("deleted own", fd2, true, false)
	}},
	{"fd-object-renamed", []string{"dir d", "file d/f hello"}, func(r *rec) {
		// A shared file opened for reading, renamed, and another made at its name: calls through
		// the descriptor act on the renamed file, not on the new one.
		fd := r.open("d/f", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		defer r.close(fd)
		r.call("rename d/f d/g", unix.Rename(r.p("d/f"), r.p("d/g")))
		r.close(r.open("d/f", unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644))
		r.call("fchmod", unix.Fchmod(fd, 0o600))
		r.call("chmod link", unix.Chmod(fdLink(fd), 0o640))
		r.call("utimensat link", unix.UtimesNanoAt(unix.AT_FDCWD, fdLink(fd),
			[]unix.Timespec{{Sec: 1_000_000}, {Sec: 2_000_000}}, 0))
		r.call("truncate link", unix.Truncate(fdLink(fd), 2))
		for _, name := range []string{"d/f", "d/g"} {
			var st unix.Stat_t
			err := unix.Stat(r.p(name), &st)
			r.logf("stat %s = %s mode=%#o size=%d mtime set %v", name, errStr(err), st.Mode, st.Size,
				st.Mtim.Sec == 2_000_000)
		}
	}},
	{"fd-object-tmpfile", []string{"dir d", "file d/f hello"}, func(r *rec) {
		fd := r.open("d", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if fd < 0 {
			return
		}
		defer r.close(fd)
		r.write(fd, "tmpfile data")
		r.changeThroughLink("tmpfile", fd, true, false)
		// The usual way to give an O_TMPFILE file a name: link its /proc/self/fd/N.
		r.call("linkat tmpfile", unix.Linkat(unix.AT_FDCWD, fdLink(fd), unix.AT_FDCWD, r.p("d/named"),
			unix.AT_SYMLINK_FOLLOW))
		r.cat("d/named")
		r.statDot("d/named", unix.AT_FDCWD, r.p("d/named"))
		r.call("linkat onto f", unix.Linkat(unix.AT_FDCWD, fdLink(fd), unix.AT_FDCWD, r.p("d/f"),
			unix.AT_SYMLINK_FOLLOW))
	}},
}

// TestFDObjects: chmod, chown, utimensat, truncate and the xattr calls given /proc/self/fd/N of
// an object without a path in the view (a memfd, a pipe, a deleted or O_TMPFILE file) do what
// the kernel does on a private copy, in both policies and in process mode; linkat gives an
// O_TMPFILE file a name through it.
func TestFDObjects(t *testing.T) {
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		for _, c := range fdObjectCases {
			t.Run(pol.String()+"/"+c.name, func(t *testing.T) { runOpenCase(t, c, pol) })
		}
	}
}

func TestProcessFDObjects(t *testing.T) {
	for _, c := range fdObjectCases {
		t.Run(c.name, func(t *testing.T) { runProcessCase(t, c) })
	}
}

// TestFDObjectRemovedShared: a shared file that the view removed while a task held it stays as it
// is whatever the task does through its descriptor: the changes that the kernel would make
// succeed and change nothing (what the task can see of them, through the descriptor, is the
// shared file anyway); an open for writing through /proc/self/fd/N and FS_IOC_SETFLAGS fail with
// EROFS: the view has no copy to write (README, limits).
func TestFDObjectRemovedShared(t *testing.T) {
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(pol.String(), func(t *testing.T) {
			shared := t.TempDir()
			treetest.Build(t, shared, "dir d", "file d/f hello")
			before := treetest.Snap(t, shared)
			// The xattr calls where the file system takes user xattrs (tmpfs only since 6.6).
			probe := filepath.Join(t.TempDir(), "probe")
			treetest.Build(t, filepath.Dir(probe), "file probe x")
			xattrs := unix.Setxattr(probe, "user.probe", []byte("x"), 0) == nil
			p, err := NewPool(Config{Workers: 1, Trees: []string{shared}, Store: t.TempDir(), Policy: pol})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			got := &rec{root: shared}
			err = p.Invoke(context.Background(), func(*Invocation) error {
				fd := got.open("d/f", unix.O_RDONLY|unix.O_CLOEXEC, 0)
				defer got.close(fd)
				got.call("unlink", unix.Unlink(got.p("d/f")))
				got.changeThroughLink("removed", fd, xattrs, false)
				wfd, err := unix.Open(fdLink(fd), unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
				got.logf("open for writing: %s", errStr(err))
				got.close(wfd)
				// chattr +A (no atime updates), which any file system with inode flags takes.
				got.call("FS_IOC_SETFLAGS", unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, 0x80)) // FS_NOATIME_FL
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := `openat(ROOT/d/f, 02000000) = ok
unlink = ok
removed chmod: ok; fstat ok mode=0100644 size=5 uid=0 gid=0 mtime=recent
removed fchmodat: ok; fstat ok mode=0100644 size=5 uid=0 gid=0 mtime=recent
removed chown: ok; fstat ok mode=0100644 size=5 uid=0 gid=0 mtime=recent
removed lchown: ok; fstat ok mode=0100644 size=5 uid=0 gid=0 mtime=recent
removed utimensat: ok; fstat ok mode=0100644 size=5 uid=0 gid=0 mtime=recent
removed truncate 3: ok; fstat ok mode=0100644 size=5 uid=0 gid=0 mtime=recent
removed truncate -1: EINVAL; fstat ok mode=0100644 size=5 uid=0 gid=0 mtime=recent
removed setxattr: ok; fstat ok mode=0100644 size=5 uid=0 gid=0 mtime=recent
removed getxattr: -1 ENODATA
removed removexattr: ok; fstat ok mode=0100644 size=5 uid=0 gid=0 mtime=recent
open for writing: EROFS
FS_IOC_SETFLAGS = EROFS
`
			if !xattrs {
				want = strings.Join(slices.DeleteFunc(strings.SplitAfter(want, "\n"), func(l string) bool {
					return strings.Contains(l, "xattr:")
				}), "")
			}
			if g := got.b.String(); g != want {
				t.Errorf("got:\n%s\nwant:\n%s", g, want)
			}
			if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}

// TestFDObjectsAsNobody: the same calls made by nobody on root's objects are refused as the
// kernel refuses them (or allowed, on a memfd of mode 0777), through the caller's own
// /proc/self/fd, which the kernel lets it into although its /proc directory is root's once it
// changed its credentials.
func TestFDObjectsAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch a thread to nobody and back")
	}
	c := openCase{"fd-object-nobody", []string{"dir d", "file d/f hello"}, func(r *rec) {
		memfd, err := unix.MemfdCreate("fsvirt-test", unix.MFD_CLOEXEC)
		r.logf("memfd_create: %s", errStr(err))
		defer r.close(memfd)
		r.write(memfd, "hello")
		fd := r.open("d/f", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		defer r.close(fd)
		r.call("unlink d/f", unix.Unlink(r.p("d/f")))
		tmp := r.open("d", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		defer r.close(tmp)
		r.asNobody(func() {
			for _, o := range []struct {
				what string
				fd   int
			}{{"memfd", memfd}, {"removed shared", fd}, {"tmpfile", tmp}} {
				l := fdLink(o.fd)
				r.call(o.what+" chmod", unix.Chmod(l, 0o600))
				r.call(o.what+" chown", unix.Chown(l, 65534, 65534))
				r.call(o.what+" utimensat now", unix.UtimesNanoAt(unix.AT_FDCWD, l, nil, 0))
				r.call(o.what+" utimensat", unix.UtimesNanoAt(unix.AT_FDCWD, l,
					[]unix.Timespec{{Sec: 1}, {Sec: 2}}, 0))
				r.call(o.what+" truncate", unix.Truncate(l, 1))
				rfd, err := unix.Open(l, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				r.logf("%s open: %s", o.what, errStr(err))
				r.close(rfd)
				r.call(o.what+" linkat", unix.Linkat(unix.AT_FDCWD, l, unix.AT_FDCWD, r.p("d/n"),
					unix.AT_SYMLINK_FOLLOW))
			}
		})
	}}
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(pol.String(), func(t *testing.T) { runOpenCase(t, c, pol) })
	}
}
