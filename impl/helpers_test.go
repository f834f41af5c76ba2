package impl

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// onOwnThread runs fn on a fresh OS thread with its own cwd and umask (as a worker has), and lets
// the thread exit afterwards, so that chdir and umask in fn touch nothing else.
func onOwnThread(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// rec performs file-system operations with raw syscalls and records what it observed, with the
// tree's root replaced by "ROOT" so that runs on different trees compare equal.
type rec struct {
	root string
	b    strings.Builder
}

func (r *rec) logf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	fmt.Fprintln(&r.b, strings.ReplaceAll(s, r.root, "ROOT"))
}

func (r *rec) p(rel string) string {
	if strings.HasPrefix(rel, "/") {
		return rel
	}
	return r.root + "/" + rel
}

func errStr(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(unix.Errno); ok {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

func (r *rec) openat(dirfd int, path string, flags int, mode uint32) int {
	fd, err := unix.Openat(dirfd, path, flags, mode)
	r.logf("openat(%s, %#o) = %s", path, flags, errStr(err))
	return fd
}

func (r *rec) open(rel string, flags int, mode uint32) int {
	return r.openat(unix.AT_FDCWD, r.p(rel), flags, mode)
}

func (r *rec) write(fd int, s string) {
	if fd < 0 {
		return
	}
	n, err := unix.Write(fd, []byte(s))
	r.logf("write(%q) = %d %s", s, n, errStr(err))
}

func (r *rec) close(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// cat reads a whole file through a fresh open.
func (r *rec) cat(rel string) {
	fd, err := unix.Open(r.p(rel), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.logf("cat %s: %s", rel, errStr(err))
		return
	}
	defer unix.Close(fd)
	r.readFD(rel, fd)
}

func (r *rec) readFD(name string, fd int) {
	buf := make([]byte, 4096)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		r.logf("read %s: %s", name, errStr(err))
		return
	}
	r.logf("read %s: %q", name, buf[:n])
}

func (r *rec) fstat(fd int) {
	if fd < 0 {
		return
	}
	var st unix.Stat_t
	err := unix.Fstat(fd, &st)
	r.logf("fstat = %s mode=%#o size=%d nlink=%d", errStr(err), st.Mode, st.Size, st.Nlink)
}

// fdCount is the number of open file descriptors of this process.
func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func threadCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// storeEntries lists what is left under a Config.Store directory: the stores in the user's store
// root there, which stays, and anything else.
func storeEntries(t *testing.T, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	user := filepath.Base(userStoreRoot(root))
	var names []string
	for _, e := range ents {
		if e.Name() != user || !e.IsDir() {
			names = append(names, e.Name())
			continue
		}
		in, err := os.ReadDir(filepath.Join(root, user))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range in {
			names = append(names, user+"/"+e.Name())
		}
	}
	return names
}

// userStoreRoot is the user's store root under Config.Store directory root.
func userStoreRoot(root string) string {
	return filepath.Join(root, "fsvirt-"+strconv.Itoa(os.Geteuid()))
}

// rootTestBase skips t unless it runs as root (why says what for), and returns this test binary,
// which tests run as their command, and a fresh directory that every user may search (a
// t.TempDir is not), removed when t ends.
func rootTestBase(t *testing.T, why, prefix string) (self, base string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip(why)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base, err = os.MkdirTemp(defaultStoreRoot(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	return self, base
}

// hasProgram reports whether prog is on PATH.
func hasProgram(prog string) bool {
	_, err := exec.LookPath(prog)
	return err == nil
}

// shLikeKernel runs script with /bin/sh -c, its $1 a directory that mk has filled, natively and
// in the view of another such directory with each policy, as root and (when the test runs as
// root) as nobody: the output and exit status must be the same, and the shared directory must not
// change. prefix names the directories' base, which nobody may walk to.
func shLikeKernel(t *testing.T, prefix, script string, mk func(dir string)) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	mkdir := func(dir string) string {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		mk(dir)
		return dir
	}
	for _, who := range []string{"root", "nobody"} {
		if who == "nobody" && !root {
			continue
		}
		base := t.TempDir()
		if root {
			_, base = rootTestBase(t, "", prefix)
		}
		argv, env := []string{"/bin/sh", "-c", script, "sh"}, []string(nil)
		if who == "nobody" {
			argv, env = []string{self}, []string{"FSVIRT_TEST_SH_AS_NOBODY=" + script}
		}
		native := exec.Command(argv[0], append(argv[1:], mkdir(filepath.Join(base, "native")))...)
		native.Env = append(os.Environ(), env...)
		want, err := native.CombinedOutput()
		if err != nil {
			t.Fatalf("natively: %v:\n%s", err, want)
		}
		for _, policy := range []Policy{PolicyFast, PolicyStrict} {
			t.Run(who+"/"+policy.String(), func(t *testing.T) {
				shared := mkdir(filepath.Join(base, "tree-"+policy.String()))
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

// testView returns a view of the tree root, with a store of its own, made without a pool or a
// run: for tests that call the view's methods for a made-up caller.
func testView(t *testing.T, root string) *View {
	t.Helper()
	ns, err := newNamespace([]string{root}, filepath.Join(t.TempDir(), "fsvirt-0"), PolicyFast)
	if err != nil {
		t.Fatal(err)
	}
	v, err := newView(ns, filepath.Join(ns.store, "inv"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
