package propcheck

import (
	"golang.org/x/sys/unix"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/internal/sysexec"
	"github.com/fsvirt/fsvirt/model"
)

// DefaultTree is the shared tree of a run unless [Options] says otherwise:
// nested directories, one with a single file (to empty and remove), an
// empty file, symlinks to a file, to a directory, up to the root, dangling
// and looping.
var DefaultTree = fsvirt.MustParseTree(
	"dir a",
	"dir a/b",
	"dir d",
	"file d/x",
	"file f hello",
	"file empty",
	"file 0600 a/g world",
	"file a/b/h deep down",
	"symlink l -> a/g",
	"symlink la -> a",
	"symlink a/b/up -> ../..",
	"symlink dang -> nothere",
	"symlink loop -> loop",
)

// Root and Nobody are the credentials of [CredTree]'s runs: root, and an unprivileged user with
// a supplementary group (users, 100) that some of the tree's files belong to.
var (
	Root   = fsvirt.Cred{}
	Nobody = fsvirt.Cred{Uid: 65534, Gid: 65534, Groups: []uint32{65534, 100}}
)

// CredTree is [DefaultTree] with files and directories of root and of [Nobody], with modes that
// let some callers in and keep others out: a sticky world-writable directory (with root's and
// nobody's files), a set-group-ID directory of group 100, nobody's own directory, a directory
// only root may enter, files of group 100, a set-user-ID executable.
var CredTree = func() fsvirt.Tree {
	t := fsvirt.MustParseTree(
		"dir 1777 t",
		"file 0666 t/r root's, anyone writes",
		"file 0644 65534:65534 t/o nobody's",
		"dir 2775 0:100 s",
		"file 0664 0:100 s/w group writes",
		"dir 0755 65534:65534 u",
		"file 0600 65534:65534 u/p nobody's secret",
		"file 0444 65534:65534 u/ro",
		"dir 0700 p",
		"file p/s root's secret",
		"file 0640 0:100 grp group reads",
		"file 4755 x exec",
	)
	for p, n := range DefaultTree {
		t[p] = n
	}
	return t
}()

// CredNames are the path components of [CredTree]'s runs.
var CredNames = append(slices.Clone(DefaultNames), "t", "r", "o", "s", "w", "u", "p", "ro", "grp")

// Reachable lets any user reach dir: it gives dir, and the directories above it up to the system's
// temporary directory, mode 0755 (t.TempDir makes them 0700).
func Reachable(tb testing.TB, dir string) {
	tb.Helper()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
}

// HostSysctls are the fs.protected_* settings of this host, for the model.
func HostSysctls() model.Sysctls {
	on := func(name string) bool {
		b, err := os.ReadFile("/proc/sys/fs/" + name)
		return err == nil && len(b) > 0 && b[0] != '0'
	}
	return model.Sysctls{ProtectedHardlinks: on("protected_hardlinks"), ProtectedSymlinks: on("protected_symlinks")}
}

// DefaultNames are the path components ops are made of.
var DefaultNames = []string{
	".", "..", "a", "b", "d", "x", "f", "g", "h", "n", "m", "empty", "l", "la", "up", "dang", "nothere", "loop",
}

// Options configure [Run].
type Options struct {
	Tree        fsvirt.Tree // the shared tree sut and ref serve; DefaultTree if nil
	Names       []string    // path components; DefaultNames if nil
	Invocations int         // at most this many live at once; 3 if 0
	// NoXattrs leaves out the xattr ops, for trees on a file system that
	// refuses user.* xattrs (see [sysexec.HaveUserXattrs]).
	NoXattrs bool
	// Creds are who invocations run as: one is drawn at each Begin, and
	// invocations switch between them now and then. sut and ref must then be
	// [fsvirt.CredSetter]s, and the process root. Nil: the process's own
	// credentials throughout.
	Creds []fsvirt.Cred
}

// machine is the state of one run.
type machine struct {
	sut, ref fsvirt.FS
	shadow   *model.Model
	tree     fsvirt.Tree
	names    []string
	slots    int
	noXattrs bool
	creds    []fsvirt.Cred
	files    []string                                   // the tree's files and symlinks
	dirs     []string                                   // the tree's directories
	live     map[fsvirt.Inv]map[fsvirt.Handle]fsvirt.Op // the open that made each handle
	// standIn are the handles of O_PATH opens that the sut answered with an ordinary descriptor
	// (see FDs).
	standIn map[fsvirt.Inv]map[fsvirt.Handle]bool
	// focus is the invocation that takes every step while focused (see addThenRemove).
	focus   fsvirt.Inv
	focused bool
}

// FDs is implemented by a sut whose handles are descriptors of this process (fsvirt's engine in
// thread mode). The engine cannot inject an O_PATH descriptor, and where the kernel cannot reach
// the object by the caller's path it answers an O_PATH open with an ordinary read-only one (README,
// limits). The machine then skips the I/O that the two answer differently (read, write, lseek,
// ftruncate, getdents, fstat) on such a handle; paths relative to it, and close, are still
// compared. fuzz/ checks the stand-in more closely (that the kernel could not have reached the
// object).
type FDs interface {
	FD(inv fsvirt.Inv, h fsvirt.Handle) int
}

// Run checks sut against ref with one random sequence of steps. Both must
// serve opts.Tree and have no live invocation. Run ends every invocation it
// began.
func Run(t *rapid.T, sut, ref fsvirt.FS, opts Options) {
	t.Helper()
	m := &machine{sut: sut, ref: ref, tree: opts.Tree, names: opts.Names, slots: opts.Invocations, noXattrs: opts.NoXattrs, creds: opts.Creds}
	if m.tree == nil {
		m.tree = DefaultTree
	}
	if m.names == nil {
		m.names = DefaultNames
	}
	if m.slots == 0 {
		m.slots = 3
	}
	umask, err := sysexec.Umask()
	if err != nil {
		t.Fatal(err)
	}
	m.shadow = model.New(m.tree, umask).WithOwner(uint32(os.Getuid()), uint32(os.Getgid())).WithSysctls(HostSysctls())
	m.dirs = []string{"."}
	for _, p := range m.tree.Paths() {
		if m.tree[p].Type == fsvirt.Dir {
			m.dirs = append(m.dirs, p)
		} else {
			m.files = append(m.files, p)
		}
	}
	m.live = map[fsvirt.Inv]map[fsvirt.Handle]fsvirt.Op{}
	fds, err := sysexec.OpenFDs()
	if err != nil {
		t.Fatal(err)
	}

	defer m.endAll(t)
	m.begin(t, 0)
	t.Repeat(m.actions())
	m.endAll(t)
	m.checkShared(t)
	m.checkFDs(t, fds)
}

// Check implements the invariants, after every step.
func (m *machine) Check(t *rapid.T) {
	m.checkShared(t)
	for _, inv := range slices.Sorted(maps.Keys(m.live)) {
		if err := DiffViews(m.sut, m.ref, inv, !m.noXattrs); err != nil {
			t.Fatal(err)
		}
		if c, ok := m.sut.(fsvirt.CopyUpCounter); ok && c.CopyUps(inv) != m.shadow.CopyUps(inv) {
			t.Fatalf("inv %d: %d copy-ups, the model says %d", inv, c.CopyUps(inv), m.shadow.CopyUps(inv))
		}
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(nothing)"
}

func (m *machine) checkShared(t *rapid.T) {
	for name, fs := range map[string]fsvirt.FS{"sut": m.sut, "ref": m.ref} {
		tree, err := fs.Shared()
		if err != nil {
			t.Fatalf("%s: shared tree: %v", name, err)
		}
		if tree.Hash() != m.tree.Hash() {
			t.Fatalf("%s: the shared tree changed:\n%s\nwas:\n%s", name, tree, m.tree)
		}
	}
}

func (m *machine) checkFDs(t *rapid.T, before map[int]string) {
	after, err := sysexec.OpenFDs()
	if err != nil {
		t.Fatal(err)
	}
	for fd, target := range after {
		if _, ok := before[fd]; !ok {
			t.Fatalf("fd %d (%s) leaked", fd, target)
		}
	}
}

// step runs op in inv on sut, ref and the shadow model, compares, and returns
// the outcome.
func (m *machine) step(t *rapid.T, inv fsvirt.Inv, op fsvirt.Op) fsvirt.Outcome {
	if m.standIn[inv][op.Fd] {
		switch op.Kind {
		case fsvirt.OpRead, fsvirt.OpWrite, fsvirt.OpPwrite, fsvirt.OpSeek, fsvirt.OpTruncate, fsvirt.OpGetdents, fsvirt.OpStat:
			t.Skipf("a documented limit: %v on an ordinary fd that stands for an O_PATH fd", op)
		}
	}
	got, want, note, defined := Step(m.shadow, m.sut, m.ref, inv, op)
	if !defined {
		t.Skipf("undefined: %v", op)
	}
	t.Logf("inv %d: %v = %v [%s]", inv, op, got, note)
	if !got.Equal(want) {
		t.Fatalf("inv %d: %v\n  sut: %v\n  ref: %v", inv, op, got, want)
	}
	if got.Errno != 0 {
		return got
	}
	switch op.Kind {
	case fsvirt.OpOpen:
		h := fsvirt.Handle(got.Ret)
		m.live[inv][h] = op
		delete(m.standIn[inv], h)
		if fds, ok := m.sut.(FDs); ok && op.Flags&unix.O_PATH != 0 {
			if fd := fds.FD(inv, h); fd >= 0 {
				if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil && fl&unix.O_PATH == 0 {
					m.standIn[inv][h] = true
				}
			}
		}
	case fsvirt.OpClose:
		delete(m.live[inv], op.Fd)
		delete(m.standIn[inv], op.Fd)
	}
	return got
}

func (m *machine) begin(t *rapid.T, inv fsvirt.Inv) {
	t.Logf("inv %d: begin", inv)
	for _, fs := range []fsvirt.FS{m.sut, m.ref, m.shadow} {
		if err := fs.Begin(inv); err != nil {
			t.Fatalf("inv %d: begin: %v", inv, err)
		}
	}
	m.live[inv] = map[fsvirt.Handle]fsvirt.Op{}
	if len(m.creds) > 0 {
		m.setCred(t, inv)
	}
	if m.standIn == nil {
		m.standIn = map[fsvirt.Inv]map[fsvirt.Handle]bool{}
	}
	m.standIn[inv] = map[fsvirt.Handle]bool{}
}

// setCred makes inv run as credentials drawn from m.creds.
func (m *machine) setCred(t *rapid.T, inv fsvirt.Inv) {
	c := m.creds[rapid.IntRange(0, len(m.creds)-1).Draw(t, "cred")]
	t.Logf("inv %d: as %v", inv, c)
	for name, fs := range map[string]fsvirt.FS{"sut": m.sut, "ref": m.ref, "model": m.shadow} {
		cs, ok := fs.(fsvirt.CredSetter)
		if !ok {
			t.Fatalf("%s: %T cannot take credentials", name, fs)
		}
		if err := cs.SetCred(inv, c); err != nil {
			t.Fatalf("inv %d: %s: %v: %v", inv, name, c, err)
		}
	}
}

func (m *machine) end(t *rapid.T, inv fsvirt.Inv) {
	t.Logf("inv %d: end", inv)
	delete(m.live, inv)
	for name, fs := range map[string]fsvirt.FS{"sut": m.sut, "ref": m.ref, "model": m.shadow} {
		if err := fs.End(inv); err != nil {
			t.Errorf("inv %d: %s: end: %v", inv, name, err)
		}
	}
}

// endAll ends the live invocations, also when a step failed.
func (m *machine) endAll(t *rapid.T) {
	for inv := range m.live {
		m.end(t, inv)
	}
}
