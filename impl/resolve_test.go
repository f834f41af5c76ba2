package impl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// treeCaller is a caller made up for a walk of a plain tree, without a seccomp notification: its
// working directory is a directory of the tree and its credentials are given, while the view's
// lookups and the host's symlinks are read as the supervisor reads them (traceeDeps). Its thread
// is the test's own, whose working directory is the caller's (inCwd), so that /proc/self and
// /proc/thread-self are the kernel's for the same call.
type treeCaller struct {
	traceeDeps
	cwd   string
	creds creds
}

func (c treeCaller) startDir(dirfd int) (start, error) {
	if dirfd != unix.AT_FDCWD {
		return start{}, unix.EBADF
	}
	return start{path: c.cwd, pure: true}, nil
}

func (c treeCaller) status() (creds, error) { return c.creds, nil }

// walkCase is one path resolved both by the walk and by the kernel, from the same directory as
// the same caller.
type walkCase struct {
	name string
	cwd  string // relative to the tree's root; "" for the root itself
	path string // "{fd}" stands for a descriptor of the tree's d, "{pipe}" for a pipe's
	// nofollow: a final symlink is not followed (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW).
	nofollow bool
	resolve  uint64 // openat2 RESOLVE_* flags
	// emptyPath: the caller names its working directory itself (AT_EMPTY_PATH on AT_FDCWD), which
	// the view resolves as "." without search permission (lookup).
	emptyPath bool
	nobody    bool // the caller is uid and gid 65534, without capabilities
	want      unix.Errno
}

// TestResolveLikeKernel resolves paths in a small tree with the walk and with the kernel, and
// checks that both fail with the same errno or reach the same object by the same path: the
// kernel's rules for ".", "..", trailing slashes, symlinks and magic links, search permission,
// openat2's RESOLVE_* flags, and its limits at their exact edges (40 symlinks followed, names of
// NAME_MAX bytes, paths of PATH_MAX bytes with the NUL). Each path is read from memory as a
// tracee's is (readPath), where PATH_MAX is enforced. want records the kernel's answer too, so
// that a kernel that changed would show here first.
func TestResolveLikeKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the cases of another caller need root to switch credentials")
	}
	root, deep := walkTree(t)
	dfd, err := unix.Open(root+"/d", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	fill := strings.NewReplacer("{fd}", strconv.Itoa(dfd), "{pipe}", strconv.Itoa(pipe[0]))

	v := testView(t, root)
	for _, c := range walkCases(root, deep) {
		t.Run(c.name, func(t *testing.T) {
			c.path = fill.Replace(c.path)
			defer inCwd(t, filepath.Join(root, c.cwd))()
			kernel := kernelWalk(t, c)
			walker := viewWalk(t, v, root, c)
			if walker.err != kernel.err {
				t.Fatalf("%q: walk: %v, kernel: %v", c.path, errStr(walker.err), errStr(kernel.err))
			}
			var want error
			if c.want != 0 {
				want = c.want
			}
			if kernel.err != want {
				t.Errorf("%q: kernel: %v, the table says %v", c.path, errStr(kernel.err), errStr(c.want))
			}
			if kernel.err != nil {
				return
			}
			if kernel.path != "" && !walker.fdObject && walker.path != kernel.path {
				t.Errorf("%q: walk reached %s, kernel %s", c.path, walker.path, kernel.path)
			}
			if walker.obj != nil && *walker.obj != *kernel.obj {
				t.Errorf("%q: walk reached object %v, kernel %v", c.path, *walker.obj, *kernel.obj)
			}
		})
	}
}

// walkTree makes the tree the cases walk, and returns its root and the name, relative to it, of
// a directory whose own path is longer than PATH_MAX.
func walkTree(t *testing.T) (root, deep string) {
	root = t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := []string{
		"dir d", "file d/f in-d", "file f top", "dir private", "file private/f secret",
		"symlink ld -> d", "symlink lf -> f", "symlink lslash -> d/", "symlink lfslash -> f/",
		"symlink ldot -> .", "symlink lup -> ..",
		"symlink dangling -> nowhere", "symlink loop1 -> loop2", "symlink loop2 -> loop1", "symlink self -> self",
		"file " + strings.Repeat("n", unix.NAME_MAX) + " longest",
		"symlink c1 -> f", "symlink k1 -> d",
	}
	// c41 leads to f through 41 symlinks, k41 to d.
	for i := 2; i <= maxSymlinks+1; i++ {
		spec = append(spec, "symlink c"+strconv.Itoa(i)+" -> c"+strconv.Itoa(i-1), "symlink k"+strconv.Itoa(i)+" -> k"+strconv.Itoa(i-1))
	}
	treetest.Build(t, root, spec...)
	// Absolute targets, which the notation leaves out: they would leave a tree built elsewhere.
	for name, target := range map[string]string{"lroot": "/", "labs": root + "/d"} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(root+"/private", 0o700); err != nil {
		t.Fatal(err)
	}
	// Twenty directories of 250-byte names: their path is longer than the kernel takes, the
	// supervisor's long paths (long) reach it.
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 20 {
		name := strings.Repeat(string(rune('a'+i)), 250)
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd, names = next, append(names, name)
	}
	defer unix.Close(fd)
	if err := unix.Mkdirat(fd, "sub", 0o755); err != nil {
		t.Fatal(err)
	}
	return root, strings.Join(names, "/")
}

// walkCases are the table: each case's want is what the kernel answers. It is one long function
// because it is one table, grouped by the rule its cases check.
func walkCases(root, deep string) []walkCase {
	name255, name256 := strings.Repeat("n", unix.NAME_MAX), strings.Repeat("n", unix.NAME_MAX+1)
	// "d", as many slashes as make the path n bytes long, and "f".
	dSlashF := func(n int) string { return "d" + strings.Repeat("/", n-2) + "f" }
	up := strings.Repeat("../", strings.Count(root, "/")+2) // from the root's level past "/"
	return []walkCase{
		{name: "dot", path: "."},
		{name: "dotdot", path: ".."},
		{name: "dir-dotdot", path: "d/.."},
		{name: "dot-in-path", path: "./d/./f"},
		{name: "dotdot-in-path", path: "d/../d/f"},
		{name: "dotdot-at-root", path: "/.."},
		{name: "dotdot-past-root", path: up + root[1:] + "/f"},
		{name: "absolute-dotdot-at-root", path: "/../.." + root + "/d/f"},
		{name: "dotdot-from-cwd", cwd: "d", path: "../f"},

		{name: "file", path: "f"},
		{name: "missing", path: "missing", want: unix.ENOENT},
		{name: "in-missing", path: "missing/f", want: unix.ENOENT},
		{name: "empty", path: "", want: unix.ENOENT},
		{name: "empty-path", emptyPath: true},
		{name: "empty-path-of-cwd", cwd: "d", emptyPath: true},

		{name: "dir-slash", path: "d/"},
		{name: "dir-slashes", path: "d//"},
		{name: "file-slash", path: "f/", want: unix.ENOTDIR},
		{name: "file-slash-dot", path: "f/.", want: unix.ENOTDIR},
		{name: "file-slash-dotdot", path: "f/..", want: unix.ENOTDIR},
		{name: "file-slash-nofollow", path: "f/", nofollow: true, want: unix.ENOTDIR},
		{name: "missing-slash", path: "missing/", want: unix.ENOENT},
		{name: "through-file", path: "f/x", want: unix.ENOTDIR},
		{name: "through-file-in-dir", path: "d/f/x", want: unix.ENOTDIR},
		{name: "through-symlink-to-file", path: "lf/x", want: unix.ENOTDIR},

		{name: "symlink-to-dir", path: "ld/f"},
		{name: "symlink-final", path: "lf"},
		{name: "symlink-final-nofollow", path: "lf", nofollow: true},
		{name: "symlink-dir-nofollow", path: "ld", nofollow: true},
		{name: "symlink-dir-slash-nofollow", path: "ld/", nofollow: true},
		{name: "symlink-file-slash", path: "lf/", want: unix.ENOTDIR},
		{name: "symlink-file-slash-nofollow", path: "lf/", nofollow: true, want: unix.ENOTDIR},
		{name: "target-with-slash", path: "lslash"},
		{name: "target-file-with-slash", path: "lfslash", want: unix.ENOTDIR},
		{name: "target-dot", path: "ldot/f"},
		{name: "target-dot-final", path: "ldot"},
		{name: "target-dotdot", path: "lup"},
		{name: "target-root", path: "lroot"},
		{name: "through-target-root", path: "lroot" + root + "/f"},
		{name: "absolute-target", path: "labs/f"},
		{name: "dangling", path: "dangling", want: unix.ENOENT},
		{name: "dangling-nofollow", path: "dangling", nofollow: true},
		{name: "dangling-slash", path: "dangling/", want: unix.ENOENT},
		{name: "through-dangling", path: "dangling/x", want: unix.ENOENT},
		{name: "loop", path: "loop1", want: unix.ELOOP},
		{name: "loop-nofollow", path: "loop1", nofollow: true},
		{name: "through-loop", path: "loop1/x", want: unix.ELOOP},
		{name: "self-loop", path: "self", want: unix.ELOOP},

		// MAXSYMLINKS: 40 followed in one lookup, the 41st is ELOOP, counted over the whole
		// path, not per component.
		{name: "symlinks-40", path: "c40"},
		{name: "symlinks-41", path: "c41", want: unix.ELOOP},
		{name: "symlinks-41-nofollow", path: "c41", nofollow: true},
		{name: "symlinks-40-on-the-way", path: "k40/f"},
		{name: "symlinks-41-on-the-way", path: "k41/f", want: unix.ELOOP},
		{name: "symlinks-39-and-1", path: "k39/../lf"},
		{name: "symlinks-40-and-1", path: "k40/../lf", want: unix.ELOOP},
		{name: "symlinks-40-and-1-nofollow", path: "k40/../lf", nofollow: true},

		// NAME_MAX: 255 bytes, a name of 256 is refused by the lookup, wherever it is.
		{name: "name-255", path: name255},
		{name: "name-255-missing", path: "d/" + name255, want: unix.ENOENT},
		{name: "name-256", path: name256, want: unix.ENAMETOOLONG},
		{name: "name-256-in-dir", path: "d/" + name256, want: unix.ENAMETOOLONG},
		{name: "name-256-on-the-way", path: name256 + "/f", want: unix.ENAMETOOLONG},
		{name: "name-256-nofollow", path: name256, nofollow: true, want: unix.ENAMETOOLONG},
		{name: "name-255-dotdot", path: "d/" + name255 + "/..", want: unix.ENOENT},

		// PATH_MAX: a path string of 4,095 bytes and its NUL is taken, one of 4,096 is not; a
		// directory whose own path is longer is reached by a shorter relative path.
		{name: "path-4095", path: dSlashF(maxPath - 1)},
		{name: "path-4096", path: dSlashF(maxPath), want: unix.ENAMETOOLONG},
		{name: "path-4096-missing", path: "m" + strings.Repeat("/", maxPath-2) + "x", want: unix.ENAMETOOLONG},
		{name: "deep-cwd", cwd: deep, path: "sub"},
		{name: "deep-cwd-dotdot", cwd: deep, path: "../" + deep[strings.LastIndexByte(deep, '/')+1:] + "/sub/"},
		{name: "deep-path", path: deep + "/sub", want: unix.ENAMETOOLONG},

		// Search permission: the caller's, on every directory a component is looked up in,
		// the last one's included; none for AT_EMPTY_PATH.
		{name: "private-root", path: "private/f"},
		{name: "private", path: "private/f", nobody: true, want: unix.EACCES},
		{name: "private-dir", path: "private", nobody: true},
		{name: "private-dotdot", path: "private/..", nobody: true, want: unix.EACCES},
		{name: "private-cwd-dot", cwd: "private", path: ".", nobody: true, want: unix.EACCES},
		{name: "private-cwd-file", cwd: "private", path: "f", nobody: true, want: unix.EACCES},
		{name: "private-cwd-empty-path", cwd: "private", emptyPath: true, nobody: true},
		{name: "nobody", path: "d/f", nobody: true},

		// Magic links of /proc jump to the object, the caller's own /proc/self being the caller's.
		{name: "magic-dir", path: "/proc/self/fd/{fd}/f"},
		{name: "magic-thread", path: "/proc/thread-self/fd/{fd}/f"},
		{name: "magic-final", path: "/proc/self/fd/{fd}"},
		{name: "magic-final-nofollow", path: "/proc/self/fd/{fd}", nofollow: true},
		{name: "magic-dotdot", path: "/proc/self/fd/{fd}/../f"},
		{name: "magic-pipe", path: "/proc/self/fd/{pipe}"},
		{name: "magic-through-pipe", path: "/proc/self/fd/{pipe}/x", want: unix.ENOTDIR},
		{name: "magic-cwd", cwd: "d", path: "/proc/self/cwd/."}, // the process's, not the thread's
		{name: "magic-thread-cwd", cwd: "d", path: "/proc/thread-self/cwd/f"},

		// openat2's RESOLVE_* flags.
		{name: "beneath", path: "d/../f", resolve: unix.RESOLVE_BENEATH},
		{name: "beneath-dotdot", path: "../f", resolve: unix.RESOLVE_BENEATH, want: unix.EXDEV},
		{name: "beneath-absolute", path: root + "/f", resolve: unix.RESOLVE_BENEATH, want: unix.EXDEV},
		{name: "beneath-absolute-target", path: "labs/f", resolve: unix.RESOLVE_BENEATH, want: unix.EXDEV},
		{name: "beneath-magic", path: "/proc/self/fd/{fd}", resolve: unix.RESOLVE_BENEATH, want: unix.EXDEV},
		{name: "in-root-dotdot", cwd: "d", path: "../../f", resolve: unix.RESOLVE_IN_ROOT},
		{name: "in-root-absolute", cwd: "d", path: "/f", resolve: unix.RESOLVE_IN_ROOT},
		{name: "in-root-target-root", path: "lroot/f", resolve: unix.RESOLVE_IN_ROOT},
		{name: "in-root-absolute-target", path: "labs/f", resolve: unix.RESOLVE_IN_ROOT, want: unix.ENOENT},
		{name: "no-symlinks", path: "ld/f", resolve: unix.RESOLVE_NO_SYMLINKS, want: unix.ELOOP},
		{name: "no-symlinks-final-nofollow", path: "lf", nofollow: true, resolve: unix.RESOLVE_NO_SYMLINKS},
		{name: "no-magiclinks", path: "/proc/self/fd/{fd}/f", resolve: unix.RESOLVE_NO_MAGICLINKS, want: unix.ELOOP},
		{name: "no-magiclinks-symlink", path: "ld/f", resolve: unix.RESOLVE_NO_MAGICLINKS},
		{name: "no-magiclinks-self", path: "/proc/self/status", resolve: unix.RESOLVE_NO_MAGICLINKS},
	}
}

// reached is where a resolution led: an errno, or the object, by its path when it has one, and by
// its device and inode when known.
type reached struct {
	err      error
	path     string
	obj      *devIno
	fdObject bool // the walk's object without a path (a pipe's), which the supervisor reopens by its magic link
}

// caseCreds returns the caller of case c: root with the test's own capabilities, or nobody.
func caseCreds(c walkCase) creds {
	me := selfIDs()
	if c.nobody {
		return creds{tgid: os.Getpid(), fsuid: 65534, fsgid: 65534, hasUmk: true}
	}
	return creds{tgid: os.Getpid(), fsuid: me.uid, fsgid: me.gid, groups: me.groups, capEff: me.capEff, hasUmk: true}
}

// inCwd gives the test's goroutine a thread of its own whose working directory is dir: the
// thread the kernel resolves from, whose /proc/thread-self/cwd the walk reads too. The thread
// ends with the goroutine (it is never unlocked), unless it is the process's main thread, which
// the runtime keeps: the function inCwd returns moves it back to where it was, so that the
// process's working directory (/proc/self/cwd) is not left in a directory the test removes.
func inCwd(t *testing.T, dir string) (restore func()) {
	t.Helper()
	runtime.LockOSThread()
	was, err := unix.Open(".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	restore = func() {
		if err := unix.Fchdir(was); err != nil {
			t.Error(err)
		}
		unix.Close(was)
	}
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		t.Fatal(err)
	}
	fd, err := long.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) // dir may be too long for chdir
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Fchdir(fd); err != nil {
		t.Fatal(err)
	}
	return restore
}

// kernelWalk asks the kernel: openat2 with O_PATH (fstatat with AT_EMPTY_PATH), as c's caller,
// from the thread's working directory.
func kernelWalk(t *testing.T, c walkCase) reached {
	t.Helper()
	flags := uint64(unix.O_PATH | unix.O_CLOEXEC)
	if c.nofollow {
		flags |= unix.O_NOFOLLOW
	}
	var out reached
	fd := -1
	err := asCaller(caseCreds(c), func() error {
		if c.emptyPath {
			var st unix.Stat_t
			out.err = unix.Fstatat(unix.AT_FDCWD, "", &st, unix.AT_EMPTY_PATH)
			out.obj = &devIno{st.Dev, st.Ino}
			return nil
		}
		fd, out.err = openat2Retry(unix.AT_FDCWD, c.path, &unix.OpenHow{Flags: flags, Resolve: c.resolve})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fd >= 0 {
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		out.obj = &devIno{st.Dev, st.Ino}
		if out.path, err = readlink("/proc/self/fd/" + strconv.Itoa(fd)); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// viewWalk resolves c with the walk, as a call of c's caller would: the path is read from memory
// as a tracee's (readPath), which refuses PATH_MAX bytes and more.
func viewWalk(t *testing.T, v *View, root string, c walkCase) reached {
	t.Helper()
	deps := treeCaller{traceeDeps: traceeDeps{v: v, t: tracee{tid: unix.Gettid()}}, cwd: filepath.Join(root, c.cwd), creds: caseCreds(c)}
	buf := append([]byte(c.path), 0)
	p, pathErr, err := tracee{tid: os.Getpid()}.readPath(uint64(uintptr(unsafe.Pointer(&buf[0]))))
	runtime.KeepAlive(buf)
	if err != nil {
		t.Fatal(err)
	}
	if pathErr != nil {
		return reached{err: pathErr}
	}
	o := resolveOpts{followFinal: !c.nofollow, resolve: c.resolve}
	if c.emptyPath {
		p, o = ".", resolveOpts{followFinal: true, named: true}
	}
	var out reached
	r, err := v.resolveWith(deps, unix.AT_FDCWD, p, o)
	if err == nil && !r.exists() {
		err = unix.ENOENT
	}
	if out.err = err; err != nil {
		return out
	}
	out.path = r.path
	if r.kind == resFDObject {
		out.fdObject = true
		return out
	}
	var st unix.Stat_t
	if err := long.Lstat(r.host, &st); err != nil {
		t.Fatalf("%s: the walk's object %s: %v", c.path, r.host, err)
	}
	out.obj = &devIno{st.Dev, st.Ino}
	return out
}

// TestKnownDirsFollowViewChanges: a walk from "/" skips the lookups of shared directories it has
// walked before in the same invocation (knownDir). Once the view changes such a directory or one
// above it (renamed away, replaced by a symlink, removed), the walk must see the change, not the
// remembered directory.
func TestKnownDirsFollowViewChanges(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "dir a", "dir a/b", "file a/b/f in-a", "dir c", "dir c/b", "file c/b/f in-c")
	p, _ := newTestPool(t, 1, shared)
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	}
	err := p.Invoke(context.Background(), func(*Invocation) error {
		for i := 0; i < 2; i++ { // the second walk skips shared, a and a/b
			if got := read(shared + "/a/b/f"); got != "in-a" {
				t.Errorf("walk %d: a/b/f = %q, want in-a", i, got)
			}
		}
		if err := os.Rename(shared+"/a", shared+"/moved"); err != nil {
			return err
		}
		if err := os.Symlink("c", shared+"/a"); err != nil {
			return err
		}
		if got := read(shared + "/a/b/f"); got != "in-c" {
			t.Errorf("after a became a symlink to c: a/b/f = %q, want in-c", got)
		}
		if got := read(shared + "/moved/b/f"); got != "in-a" {
			t.Errorf("moved/b/f = %q, want in-a", got)
		}
		if err := os.RemoveAll(shared + "/c/b"); err != nil {
			return err
		}
		if got := read(shared + "/a/b/f"); got != "error: open "+shared+"/a/b/f: no such file or directory" {
			t.Errorf("after c/b was removed: a/b/f = %q, want ENOENT", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKnownDirsSeeHostReplacement: when the host (outside the view, while the invocation runs)
// replaces a directory above a remembered one by a symlink, the remembered path leads to another
// directory: one lstat tells them apart by inode. Here the symlink leads to a directory whose file
// the view changed, so only a fresh walk finds the view's copy; a walk that trusted the remembered
// directory would let the kernel open the shared file.
func TestKnownDirsSeeHostReplacement(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "dir a", "dir a/b", "file a/b/f old", "dir c", "dir c/b", "file c/b/f shared-c")
	p, _ := newTestPool(t, 1, shared)
	host := func(fn func() error) error { // on another thread: not in the view
		done := make(chan error)
		go func() { done <- fn() }()
		return <-done
	}
	err := p.Invoke(context.Background(), func(*Invocation) error {
		if b, err := os.ReadFile(shared + "/a/b/f"); err != nil || string(b) != "old" {
			t.Fatalf("a/b/f = %q, %v", b, err)
		}
		if err := os.WriteFile(shared+"/c/b/f", []byte("private-c"), 0o644); err != nil {
			return err
		}
		err := host(func() error {
			if err := os.Rename(shared+"/a", shared+"/old-a"); err != nil {
				return err
			}
			return os.Symlink("c", shared+"/a")
		})
		if err != nil {
			return err
		}
		if b, err := os.ReadFile(shared + "/a/b/f"); err != nil || string(b) != "private-c" {
			t.Errorf("after the host made a a symlink to c: a/b/f = %q, %v, want the view's private-c", b, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// readOwnProc, as nobody and so no longer dumpable, reads a memfd of its own through
// /proc/self/fd/N and prints what it found.
func readOwnProc() int {
	if err := dropTo(65534); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fd, err := unix.MemfdCreate("mine", 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	unix.Write(fd, []byte("hi"))
	b, err := os.ReadFile("/proc/self/fd/" + strconv.Itoa(fd))
	fmt.Printf("read %q %v\n", b, err)
	return 0
}

// TestProcessOwnProcAfterCredentialChange: a process that changed its credentials (and so is no
// longer dumpable, its /proc/PID/fd root's, mode 0500) reaches its own descriptors through
// /proc/self/fd, as the kernel lets it.
func TestProcessOwnProcAfterCredentialChange(t *testing.T) {
	self, base := rootTestBase(t, "needs root to change credentials", "fsvirt-ownproc-test-")
	native := exec.Command(self)
	native.Env = append(os.Environ(), "FSVIRT_TEST_OWN_PROC=1")
	want, err := native.Output()
	if err != nil || string(want) != "read \"hi\" <nil>\n" {
		t.Fatalf("natively: %v: %q", err, want)
	}
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(policy.String(), func(t *testing.T) {
			got, res := runPolicyCmd(t, base, policy, []string{"FSVIRT_TEST_OWN_PROC=1"}, self)
			if got != string(want) || res.ExitStatus != 0 {
				t.Errorf("in the view: %q (status %d); natively: %q", got, res.ExitStatus, want)
			}
		})
	}
}
