package impl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/notify"
	"github.com/fsvirt/fsvirt/internal/treetest"
)

// openCase is one differential case: ops run once through a view of the shared tree and once,
// natively, on a private full copy of it; the two records must be equal.
type openCase struct {
	name string
	tree []string
	ops  func(r *rec)
}

var baseTree = []string{"dir a", "file a/f hello", "file g world", "dir d", "symlink l -> a/f", "symlink dangling -> a/new", "symlink up -> ../"}

var openCases = []openCase{
	{"write-existing", baseTree, func(r *rec) {
		fd := r.open("a/f", unix.O_WRONLY, 0)
		r.write(fd, "HE")
		r.close(fd)
		r.cat("a/f")
	}},
	{"append", baseTree, func(r *rec) {
		fd := r.open("a/f", unix.O_WRONLY|unix.O_APPEND, 0)
		r.write(fd, " again")
		r.fstat(fd)
		r.close(fd)
		r.cat("a/f")
	}},
	{"truncate", baseTree, func(r *rec) {
		fd := r.open("a/f", unix.O_RDWR|unix.O_TRUNC, 0)
		r.fstat(fd)
		r.readFD("fd", fd)
		r.close(fd)
		r.cat("a/f")
	}},
	{"rdonly-trunc-truncates", baseTree, func(r *rec) {
		r.close(r.open("g", unix.O_RDONLY|unix.O_TRUNC, 0))
		r.cat("g")
	}},
	{"create-new", baseTree, func(r *rec) {
		fd := r.open("a/new", unix.O_WRONLY|unix.O_CREAT, 0o640)
		r.write(fd, "fresh")
		r.fstat(fd)
		r.close(fd)
		r.cat("a/new")
	}},
	{"create-exclusive", baseTree, func(r *rec) {
		r.close(r.open("a/f", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644))
		r.close(r.open("a/x", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644))
		r.close(r.open("a/x", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644))
		r.close(r.open("l", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644))
	}},
	{"reread-after-write", baseTree, func(r *rec) {
		fd := r.open("g", unix.O_RDWR, 0)
		r.write(fd, "W")
		r.close(fd)
		fd = r.open("g", unix.O_RDONLY, 0)
		r.readFD("g", fd)
		r.fstat(fd)
		r.close(fd)
	}},
	{"creat-legacy", baseTree, func(r *rec) {
		// The creat syscall itself: unix.Creat issues openat.
		p, err := unix.BytePtrFromString(r.p("g"))
		if err != nil {
			panic(err)
		}
		r0, _, errno := unix.Syscall(unix.SYS_CREAT, uintptr(unsafe.Pointer(p)), 0o600, 0)
		fd := int(r0)
		if errno != 0 {
			fd, err = -1, errno
		}
		r.logf("creat = %s", errStr(err))
		r.write(fd, "c")
		r.close(fd)
		r.cat("g")
	}},
	{"tmpfile", baseTree, func(r *rec) {
		fd := r.open("d", unix.O_TMPFILE|unix.O_RDWR, 0o600)
		r.write(fd, "anon")
		r.readFD("tmp", fd)
		r.fstat(fd)
		r.close(fd)
		r.close(r.open("d", unix.O_TMPFILE|unix.O_RDONLY, 0o600))
		r.close(r.open("a/f", unix.O_TMPFILE|unix.O_RDWR, 0o600))
		r.close(r.open("nodir", unix.O_TMPFILE|unix.O_RDWR, 0o600))
	}},
	{"directory-flags", baseTree, func(r *rec) {
		r.close(r.open("a/f", unix.O_RDONLY|unix.O_DIRECTORY, 0))
		r.close(r.open("a/f", unix.O_WRONLY|unix.O_DIRECTORY, 0))
		r.close(r.open("a", unix.O_RDONLY|unix.O_DIRECTORY, 0))
		r.close(r.open("a", unix.O_WRONLY, 0))
		r.close(r.open("a", unix.O_RDWR|unix.O_CREAT, 0o644))
	}},
	{"nofollow", baseTree, func(r *rec) {
		r.close(r.open("l", unix.O_RDONLY|unix.O_NOFOLLOW, 0))
		r.close(r.open("l", unix.O_WRONLY|unix.O_NOFOLLOW, 0))
		fd := r.open("l", unix.O_PATH|unix.O_NOFOLLOW, 0)
		r.fstat(fd)
		r.close(fd)
	}},
	{"write-through-symlink", baseTree, func(r *rec) {
		fd := r.open("l", unix.O_WRONLY|unix.O_APPEND, 0)
		r.write(fd, "+link")
		r.close(fd)
		r.cat("a/f")
		r.cat("l")
	}},
	{"create-through-dangling-symlink", baseTree, func(r *rec) {
		fd := r.open("dangling", unix.O_WRONLY|unix.O_CREAT, 0o644)
		r.write(fd, "via link")
		r.close(fd)
		r.cat("a/new")
	}},
	{"trailing-slash", baseTree, func(r *rec) {
		r.close(r.open("a/f/", unix.O_RDONLY, 0))
		r.close(r.open("a/f/", unix.O_WRONLY, 0))
		r.close(r.open("a/new/", unix.O_WRONLY|unix.O_CREAT, 0o644))
		r.close(r.open("a/", unix.O_RDONLY, 0))
	}},
	{"missing-parent", baseTree, func(r *rec) {
		r.close(r.open("a/missing/x", unix.O_WRONLY|unix.O_CREAT, 0o644))
		r.close(r.open("a/f/x", unix.O_WRONLY|unix.O_CREAT, 0o644))
		r.close(r.open("a/missing", unix.O_RDONLY, 0))
	}},
	{"dotdot-and-dot", baseTree, func(r *rec) {
		fd := r.open("a/./../a/f", unix.O_WRONLY|unix.O_APPEND, 0)
		r.write(fd, "!")
		r.close(fd)
		r.cat("up/a/f")
	}},
	{"relative-dirfd", baseTree, func(r *rec) {
		dfd := r.open("a", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		fd := r.openat(dfd, "f", unix.O_RDWR, 0)
		r.write(fd, "dirfd")
		r.close(fd)
		fd = r.openat(dfd, "f", unix.O_RDONLY, 0)
		r.readFD("f", fd)
		r.close(fd)
		r.close(r.openat(dfd, "../g", unix.O_WRONLY|unix.O_TRUNC, 0))
		fileFd := r.open("g", unix.O_RDONLY, 0)
		r.close(r.openat(fileFd, "x", unix.O_RDONLY, 0))
		r.close(fileFd)
		r.close(r.openat(9999, "x", unix.O_RDONLY, 0))
		r.close(dfd)
		r.cat("g")
	}},
	{"relative-cwd", baseTree, func(r *rec) {
		err := unix.Chdir(r.p("a"))
		r.logf("chdir = %s", errStr(err))
		fd := r.openat(unix.AT_FDCWD, "f", unix.O_WRONLY|unix.O_APPEND, 0)
		r.write(fd, "cwd")
		r.close(fd)
		fd = r.openat(unix.AT_FDCWD, "new", unix.O_WRONLY|unix.O_CREAT, 0o644)
		r.close(fd)
		r.cat("a/f")
		r.cat("a/new")
	}},
	{"cloexec-mirrored", baseTree, func(r *rec) {
		for _, c := range []struct {
			path  string
			flags int
		}{{"g", unix.O_RDONLY}, {"g", unix.O_RDONLY | unix.O_CLOEXEC}, {"a/f", unix.O_WRONLY}, {"a/f", unix.O_WRONLY | unix.O_CLOEXEC}} {
			fd := r.open(c.path, c.flags, 0)
			fdFlags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			r.logf("F_GETFD = %d %s", fdFlags, errStr(err))
			fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
			r.logf("F_GETFL = %#o %s", fl&^unix.O_LARGEFILE, errStr(err))
			r.close(fd)
		}
	}},
	{"umask-applied", baseTree, func(r *rec) {
		old := unix.Umask(0o027)
		fd := r.open("a/u", unix.O_WRONLY|unix.O_CREAT, 0o666)
		r.fstat(fd)
		r.close(fd)
		fd = r.open("d", unix.O_TMPFILE|unix.O_WRONLY, 0o777)
		r.fstat(fd)
		r.close(fd)
		unix.Umask(old)
	}},
	{"openat2-resolve", baseTree, func(r *rec) {
		dfd := r.open("a", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		for _, c := range []struct {
			path    string
			flags   uint64
			resolve uint64
		}{
			{"../g", unix.O_RDONLY, unix.RESOLVE_BENEATH},
			{"../g", unix.O_WRONLY, unix.RESOLVE_BENEATH},
			{"f", unix.O_WRONLY | unix.O_APPEND, unix.RESOLVE_BENEATH},
			{"/etc/passwd", unix.O_RDONLY, unix.RESOLVE_BENEATH},
			{"f", unix.O_RDONLY, unix.RESOLVE_BENEATH | unix.RESOLVE_IN_ROOT},
			{"f", unix.O_RDONLY | 0x80000000, 0},
		} {
			fd, err := unix.Openat2(dfd, c.path, &unix.OpenHow{Flags: c.flags, Resolve: c.resolve})
			r.logf("openat2(%s, %#o, %#x) = %s", c.path, c.flags, c.resolve, errStr(err))
			r.close(fd)
		}
		fd, err := unix.Openat2(unix.AT_FDCWD, r.p("l"), &unix.OpenHow{Flags: unix.O_WRONLY, Resolve: unix.RESOLVE_NO_SYMLINKS})
		r.logf("openat2(l, NO_SYMLINKS) = %s", errStr(err))
		r.close(fd)
		fd, err = unix.Openat2(unix.AT_FDCWD, r.p("g"), &unix.OpenHow{Flags: unix.O_RDONLY, Mode: 0o644})
		r.logf("openat2(g, mode without O_CREAT) = %s", errStr(err))
		r.close(fd)
		r.close(dfd)
	}},
	{"reopen-through-proc-self-fd", baseTree, func(r *rec) {
		ro := r.open("g", unix.O_RDONLY, 0)
		fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(ro), unix.O_WRONLY|unix.O_APPEND, 0)
		r.logf("reopen /proc/self/fd/N for append = %s", errStr(err))
		r.write(fd, "+magic")
		r.close(fd)
		r.close(ro)
		r.cat("g")
	}},
	{"reopen-private-file-through-proc-self-fd", baseTree, func(r *rec) {
		w := r.open("a/f", unix.O_RDWR, 0)
		r.write(w, "X")
		fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(w), unix.O_RDONLY, 0)
		r.logf("reopen /proc/self/fd/N = %s", errStr(err))
		r.readFD("reopened", fd)
		r.close(fd)
		fd, err = unix.Open("/dev/fd/"+strconv.Itoa(w), unix.O_WRONLY|unix.O_APPEND, 0)
		r.logf("reopen /dev/fd/N for append = %s", errStr(err))
		r.write(fd, "Y")
		r.close(fd)
		r.close(w)
		r.cat("a/f")
	}},
	{"rdwr-create-existing-keeps-data", baseTree, func(r *rec) {
		fd := r.open("a/f", unix.O_RDWR|unix.O_CREAT, 0o600)
		r.readFD("f", fd)
		r.fstat(fd)
		r.close(fd)
	}},
	{"path-only-ignores-creat", baseTree, func(r *rec) {
		r.close(r.open("a/none", unix.O_PATH|unix.O_CREAT|unix.O_WRONLY, 0o644))
		r.cat("a/none")
	}},
	{"opath-through-proc-self-fd", baseTree, func(r *rec) {
		dfd := r.open("a", unix.O_PATH|unix.O_DIRECTORY, 0)
		for _, rest := range []string{"/f", "", "/../g", "/../d"} {
			fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(dfd)+rest, unix.O_PATH, 0)
			r.logf("open /proc/self/fd/N%s O_PATH = %s", rest, errStr(err))
			r.opath(fd)
			r.close(fd)
		}
		fd, err := unix.Openat(unix.AT_FDCWD, "/proc/thread-self/fd/"+strconv.Itoa(dfd)+"/f", unix.O_PATH, 0)
		r.logf("open /proc/thread-self/fd/N/f O_PATH = %s", errStr(err))
		r.opath(fd)
		r.close(fd)
		r.close(dfd)
	}},
	{"opath-relative-to-materialized-cwd", baseTree, func(r *rec) {
		r.close(r.open("a/new", unix.O_WRONLY|unix.O_CREAT, 0o644)) // a lists its children itself now
		r.call("chdir", unix.Chdir(r.p("a")))
		for _, name := range []string{"f", "../d", "../g"} { // shared objects; new and . are private
			fd := r.openat(unix.AT_FDCWD, name, unix.O_PATH, 0)
			r.opath(fd)
			r.close(fd)
		}
		// The working directory is still the view's: its listing, and what is created in it.
		r.close(r.openat(unix.AT_FDCWD, "made", unix.O_WRONLY|unix.O_CREAT, 0o644))
		ents, err := os.ReadDir(".")
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		r.logf("ls . = %v %s", names, errStr(err))
		cwd, err := os.Getwd()
		r.logf("getwd = %s %s", cwd, errStr(err))
		r.cat("a/made")
		var st unix.Stat_t
		r.call("stat .", unix.Stat(".", &st))
		r.logf("nlink %d", st.Nlink)
	}},
}

// opath logs what an O_PATH descriptor allows: it names its file (fstat), and reads nothing.
func (r *rec) opath(fd int) {
	if fd < 0 {
		return
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	r.logf("O_PATH %v %s", fl&unix.O_PATH != 0, errStr(err))
	_, err = unix.Read(fd, make([]byte, 8))
	r.logf("read = %s", errStr(err))
	_, err = unix.Getdents(fd, make([]byte, 256))
	r.logf("getdents = %s", errStr(err))
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	r.logf("fstat = %s %#o %d", errStr(err), st.Mode&unix.S_IFMT, st.Size)
}

// featureSets are the kernels' code paths: everything on, then each fallback forced.
var featureSets = []struct {
	name string
	off  func(*notify.FeatureSet)
}{
	{"all", func(*notify.FeatureSet) {}},
	{"no-addfd-send", func(f *notify.FeatureSet) { f.AddfdSend = false }},
	{"no-wait-killable", func(f *notify.FeatureSet) { f.WaitKillableRecv = false }},
	{"no-sync-wakeup", func(f *notify.FeatureSet) { f.SyncWakeUp = false }},
	{"old-id-valid", func(f *notify.FeatureSet) { f.IDValidW = false }},
}

// kernelPaths are the feature sets of featureSets on this kernel, each distinct one once (on 5.10,
// which lacks most features, forcing one of their fallbacks changes nothing). With -short (the
// kernel matrix, under emulation) they are everything on and every fallback at once; without it,
// each fallback alone as well.
func kernelPaths(t *testing.T) []namedFeatures {
	sets := featureSets
	if testing.Short() {
		sets = append(sets[:1:1], struct {
			name string
			off  func(*notify.FeatureSet)
		}{"every-fallback", func(f *notify.FeatureSet) {
			for _, s := range featureSets {
				s.off(f)
			}
		}})
	}
	var out []namedFeatures
	for _, s := range sets {
		f := notify.Features()
		s.off(&f)
		if i := slices.IndexFunc(out, func(o namedFeatures) bool { return o.set == f }); i >= 0 {
			t.Logf("%s: the kernel's code paths are those of %s", s.name, out[i].name)
			continue
		}
		out = append(out, namedFeatures{s.name, f})
	}
	return out
}

// namedFeatures is a feature set with its name in featureSets.
type namedFeatures struct {
	name string
	set  notify.FeatureSet
}

func TestOpenDifferential(t *testing.T) {
	for _, fs := range kernelPaths(t) {
		for _, pol := range []Policy{PolicyFast, PolicyStrict} {
			t.Run(fs.name+"/"+pol.String(), func(t *testing.T) {
				defer notify.SetForTest(fs.set)()
				for _, c := range openCases {
					t.Run(c.name, func(t *testing.T) { runOpenCase(t, c, pol) })
				}
			})
		}
	}
}

// referenceRun makes c's tree in a fresh shared directory and runs c's operations on a private
// full copy of it: the shared directory, what the view must record, and a snapshot of the tree.
func referenceRun(t *testing.T, c openCase) (shared string, want *rec, before treetest.Snapshot) {
	shared = t.TempDir()
	treetest.Build(t, shared, c.tree...)
	copyDir := treetest.Copy(t, shared, filepath.Join(t.TempDir(), "copy"))
	before = treetest.Snap(t, shared)
	want = &rec{root: copyDir}
	onOwnThread(t, func() { c.ops(want) })
	return shared, want, before
}

func runOpenCase(t *testing.T, c openCase, pol Policy) {
	shared, want, before := referenceRun(t, c)

	storeRoot := t.TempDir()
	p, err := NewPool(Config{Workers: 1, Trees: []string{shared}, Store: storeRoot, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	got := &rec{root: shared}
	err = p.Invoke(context.Background(), func(*Invocation) error { c.ops(got); return nil })
	if cerr := p.Close(); cerr != nil {
		t.Errorf("close: %v", cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got.b.String() != want.b.String() {
		t.Errorf("view and private copy differ\nview:\n%s\ncopy:\n%s", got.b.String(), want.b.String())
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
	if left := storeEntries(t, storeRoot); len(left) != 0 {
		t.Errorf("store not empty after close: %v", left)
	}
}

var _ = unsafe.Sizeof(0)

// forgeProxy, as nobody, makes a memfd named as fsvirt names its O_PATH proxies, for target, and
// prints what reading it through /proc/self/fd/N and fstat of it find: the memfd's (nothing, 0
// bytes), as the kernel has it, not target's.
func forgeProxy(target string) int {
	if err := dropTo(65534); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// Dumpable again, as after an exec: /proc/self/fd is then nobody's.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fd, err := unix.MemfdCreate("fsvirt-opath:"+target, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b, err := os.ReadFile("/proc/self/fd/" + strconv.Itoa(fd))
	fmt.Printf("read %q %v\n", b, err)
	var st unix.Stat_t
	err = unix.Fstatat(fd, "", &st, unix.AT_EMPTY_PATH)
	fmt.Printf("fstatat size %d %v\n", st.Size, err)
	return 0
}

// TestProcessForgedProxyIgnored: a task's own memfd, named as fsvirt names its O_PATH proxies, is
// a memfd, not a name for any view path it likes: through it nobody would reach a file in root's
// 0700 directory, which no search permission lets it reach.
func TestProcessForgedProxyIgnored(t *testing.T) {
	self, base := rootTestBase(t, "needs root to make a directory nobody cannot search", "fsvirt-proxy-test-")
	shared := filepath.Join(base, "tree")
	treetest.Build(t, shared, "dir private", "file private/secret secret")
	os.Chmod(filepath.Join(shared, "private"), 0o700)
	os.Chmod(filepath.Join(shared, "private/secret"), 0o644)
	target := filepath.Join(shared, "private/secret")
	native := exec.Command(self)
	native.Env = append(os.Environ(), "FSVIRT_TEST_FORGED_PROXY="+target)
	want, err := native.Output()
	if err != nil || !strings.Contains(string(want), "fstatat size 0 <nil>") {
		t.Fatalf("natively: %v: %s", err, want)
	}
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(policy.String(), func(t *testing.T) {
			got, res := runPolicyCmd(t, shared, policy, []string{"FSVIRT_TEST_FORGED_PROXY=" + target}, self)
			if got != string(want) || res.ExitStatus != 0 {
				t.Errorf("in the view: %q (status %d); natively: %q", got, res.ExitStatus, want)
			}
		})
	}
}
