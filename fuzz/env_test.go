package fuzz

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/impl"
	"github.com/fsvirt/fsvirt/internal/propcheck"
	"github.com/fsvirt/fsvirt/internal/sysexec"
	"github.com/fsvirt/fsvirt/model"
	"github.com/fsvirt/fsvirt/oracle"
)

// inv is the one invocation of every input.
const inv fsvirt.Inv = 0

// canaryData is the content of the canary, a file next to the shared tree
// that no input may change.
const canaryData = "canary: nothing may write here\n"

// env is one target's set-up, made once per process:
//
//	dir/shared   the tree the engine virtualizes, rebuilt for every input
//	dir/store    the engine's store directory; the user's store root in it,
//	             fsvirt-UID, is invisible in the view, and holds the store
//	             proper, fsvirt-UID/store-*, which holds the private layers
//	dir/tmp      the oracle's private copies
//	dir/canary   must never change
//	dir/in       a symlink to dir/shared: a way into the tree from outside
//	dir/st       a symlink to the store proper
//	dir/gst      a symlink to dir/ghost, which does not exist
type env struct {
	dir, shared, tmp, canary string
	storeRoot, store         string // the store's root and the store proper
	storeTree                fsvirt.Tree
	engine                   *engine
	ref                      *oracle.Oracle
	umask                    uint32
	xattrs                   bool
	directIO                 bool           // the file system under tmp takes O_DIRECT (haveDirectIO)
	fds                      map[int]string // open after the set-up
	outside                  []string       // dir's entries
}

func newEnv(f *testing.F) *env {
	f.Helper()
	dir := f.TempDir()
	v := &env{dir: dir, shared: filepath.Join(dir, "shared"), storeRoot: filepath.Join(dir, "store"),
		tmp: filepath.Join(dir, "tmp"), canary: filepath.Join(dir, "canary")}
	for _, d := range []string{v.shared, v.storeRoot, v.tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(v.canary, []byte(canaryData), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(v.shared, filepath.Join(dir, "in")); err != nil {
		f.Fatal(err)
	}
	var err error
	if v.umask, err = sysexec.Umask(); err != nil {
		f.Fatal(err)
	}
	v.xattrs = sysexec.HaveUserXattrs(v.tmp) == nil
	if v.directIO, err = haveDirectIO(v.tmp); err != nil {
		f.Fatal(err)
	}
	pool, err := impl.NewPool(impl.Config{Workers: 1, Trees: []string{v.shared}, Store: v.storeRoot})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := pool.Close(); err != nil {
			f.Error(err)
		}
	})
	stores, err := filepath.Glob(filepath.Join(v.storeRoot, "fsvirt-*", "store-*"))
	if err != nil || len(stores) != 1 {
		f.Fatalf("the store proper: %v %v", stores, err)
	}
	v.store = stores[0]
	if err := os.Symlink(v.store, filepath.Join(dir, "st")); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "ghost"), filepath.Join(dir, "gst")); err != nil {
		f.Fatal(err)
	}
	if v.storeTree, err = sysexec.Walk(v.store); err != nil {
		f.Fatal(err)
	}
	v.engine = &engine{shared: v.shared, pool: pool, invs: map[fsvirt.Inv]*worker{}}
	v.ref = oracle.NewCopy(v.shared, v.tmp)
	if v.outside, err = names(dir); err != nil {
		f.Fatal(err)
	}
	if v.fds, err = sysexec.OpenFDs(); err != nil {
		f.Fatal(err)
	}
	return v
}

// haveDirectIO reports whether the file system at dir opens files with
// O_DIRECT. One that does not (tmpfs before 6.6) creates the file of an
// O_CREAT|O_DIRECT open and then fails it with EINVAL: docs/kernel.md,
// "O_DIRECT on tmpfs".
func haveDirectIO(dir string) (bool, error) {
	name := filepath.Join(dir, "direct-probe")
	fd, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		return false, rerr
	}
	switch {
	case err == nil:
		return true, unix.Close(fd)
	case errors.Is(err, unix.EINVAL):
		return false, nil
	}
	return false, &os.PathError{Op: "open", Path: name, Err: err}
}

func names(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, err
}

// session is one input's run: the engine, the oracle and the shadow model
// with invocation inv live, and the log of what ran.
type session struct {
	t      *testing.T
	v      *env
	tree   fsvirt.Tree
	shadow *model.Model
	live   bool
	log    []string
	// handles are inv's open handles, in all three alike.
	handles map[fsvirt.Handle]bool
	// plain are the handles of O_PATH opens that the engine answered with an
	// ordinary descriptor, where the README's limits allow it (plainOPath).
	plain map[fsvirt.Handle]opathLimit
}

// start rebuilds the shared tree as tree and begins inv.
func (v *env) start(t *testing.T, tree fsvirt.Tree) *session {
	t.Helper()
	entries, err := os.ReadDir(v.shared)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(v.shared, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := sysexec.Build(v.shared, tree); err != nil {
		t.Fatal(err)
	}
	s := &session{t: t, v: v, tree: tree, handles: map[fsvirt.Handle]bool{}, plain: map[fsvirt.Handle]opathLimit{}}
	s.shadow = model.New(tree, v.umask).WithOwner(uint32(os.Getuid()), uint32(os.Getgid()))
	for _, fs := range []fsvirt.FS{v.engine, v.ref, s.shadow} {
		if err := fs.Begin(inv); err != nil {
			t.Fatal(err)
		}
	}
	s.live = true
	t.Cleanup(s.end) // also when the input failed: the next one begins inv again
	return s
}

// fail stops the input with what ran so far.
func (s *session) fail(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s\nops:\n  %s", fmt.Sprintf(format, args...), strings.Join(s.log, "\n  "))
}

func (s *session) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf(format, args...))
}

// do runs op in the engine, the oracle and the model. It returns the
// engine's outcome and false when the model leaves op undefined, which runs
// nothing.
func (s *session) do(op fsvirt.Op) (fsvirt.Outcome, bool) {
	s.t.Helper()
	return s.doWith(s.v.engine, op)
}

// doWith is do with sut in place of the engine: the engine reached another
// way.
func (s *session) doWith(sut fsvirt.FS, op fsvirt.Op) (fsvirt.Outcome, bool) {
	s.t.Helper()
	if why := s.limit(op); why != "" {
		s.logf("%v: a documented limit, skipped: %s", op, why)
		return fsvirt.Outcome{}, false
	}
	got, want, note, defined := propcheck.Step(s.shadow, sut, s.v.ref, inv, op)
	if !defined {
		s.logf("%v: undefined, skipped", op)
		return got, false
	}
	s.logf("%v = %v [%s]", op, got, note)
	if !got.Equal(want) {
		s.fail("%v\n  engine: %v\n  oracle: %v", op, got, want)
	}
	if got.Errno == 0 {
		switch op.Kind {
		case fsvirt.OpOpen:
			h := fsvirt.Handle(got.Ret)
			s.handles[h] = true
			delete(s.plain, h)
			if sut == s.v.engine && op.Flags&unix.O_PATH != 0 {
				if l := s.v.engine.opath(inv, op, h); l != realOPath {
					s.plain[h] = l
					s.logf("  an ordinary fd: the kernel does not reach the object by this path")
				}
			}
		case fsvirt.OpClose:
			delete(s.handles, op.Fd)
			delete(s.plain, op.Fd)
		}
	}
	return got, true
}

// limit says why op is left out although the model defines it: the README's
// limits, which the model does not know of.
func (s *session) limit(op fsvirt.Op) string {
	if op.Kind == fsvirt.OpOpen && op.Flags&unix.O_DIRECT != 0 && op.Flags&(unix.O_CREAT|unix.O_TMPFILE) != 0 && !s.v.directIO {
		// The oracle's copy is left with the new file, the engine's view is
		// not: docs/kernel.md, "O_DIRECT on tmpfs".
		return "a create with O_DIRECT on a file system without direct I/O"
	}
	switch l := s.plain[op.Fd]; {
	case l == realOPath:
	case op.Kind == fsvirt.OpStat && l == opathProxy:
		return "fstat of the memfd that stands for an O_PATH fd of a symlink"
	case op.Kind == fsvirt.OpRead, op.Kind == fsvirt.OpWrite, op.Kind == fsvirt.OpPwrite, op.Kind == fsvirt.OpSeek,
		op.Kind == fsvirt.OpTruncate, op.Kind == fsvirt.OpGetdents:
		return "I/O on an ordinary fd that stands for an O_PATH fd"
	}
	return ""
}

// opathLimit is what stands for an O_PATH fd the engine could not leave to
// the kernel.
type opathLimit uint8

const (
	realOPath  opathLimit = iota // an O_PATH fd, or one the kernel could have opened
	opathPlain                   // an ordinary read-only fd of the object
	opathProxy                   // a memfd that stands for a symlink
)

// opath checks the engine's answer to O_PATH open op, handle h: the engine
// cannot inject an O_PATH fd, so it may answer with an ordinary one where the
// kernel, resolving the caller's path from the caller's working directory or
// dirfd, does not reach the object, and only there (README, limits). An
// ordinary fd where the kernel reaches the object is the engine's bug: it
// counts as an O_PATH fd, and the ops on it fail the input.
func (e *engine) opath(inv fsvirt.Inv, op fsvirt.Op, h fsvirt.Handle) opathLimit {
	var fd, dirfd, tid int
	e.call(inv, func(x *sysexec.Exec) { fd, dirfd, tid = x.FD(h), x.FD(op.Dirfd), unix.Gettid() })
	// From here on this goroutine's thread, which the view does not see.
	start := "/proc/self/task/" + strconv.Itoa(tid) + "/cwd"
	switch {
	case strings.HasPrefix(op.Path, "/"):
		start = e.shared
	case op.Dirfd != fsvirt.AtCWD:
		start = "/proc/self/fd/" + strconv.Itoa(dirfd)
	}
	return plainOPath(fd, start+"/"+op.Path, op.Flags)
}

// plainOPath says what fd, the engine's answer to an O_PATH open with flags
// of what kernelPath names for the kernel, stands in for, if anything.
func plainOPath(fd int, kernelPath string, flags int) opathLimit {
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_PATH != 0 {
		return realOPath
	}
	self := "/proc/self/fd/" + strconv.Itoa(fd)
	var got, want unix.Stat_t
	if err := unix.Stat(self, &got); err != nil {
		return realOPath
	}
	kfd, err := unix.Open(kernelPath, unix.O_PATH|unix.O_CLOEXEC|flags&(unix.O_NOFOLLOW|unix.O_DIRECTORY), 0)
	if err == nil {
		err = unix.Fstat(kfd, &want)
		unix.Close(kfd)
	}
	if err == nil && got.Dev == want.Dev && got.Ino == want.Ino {
		return realOPath // the kernel reaches the object: it should have opened it
	}
	if target, _ := os.Readlink(self); strings.HasPrefix(target, "/memfd:fsvirt-opath:") {
		return opathProxy
	}
	return opathPlain
}

// open lists inv's open handles, sorted.
func (s *session) open() []fsvirt.Handle { return slices.Sorted(maps.Keys(s.handles)) }

// finish compares the views, ends inv and checks that nothing escaped.
func (s *session) finish() {
	s.t.Helper()
	if err := propcheck.DiffViews(s.v.engine, s.v.ref, inv, s.v.xattrs); err != nil {
		s.fail("%v", err)
	}
	s.end()
	s.checkOutside()
	if left, err := names(s.v.tmp); err != nil || len(left) > 0 {
		s.fail("left behind in %s: %v %v", s.v.tmp, left, err)
	}
	after, err := sysexec.OpenFDs()
	if err != nil {
		s.t.Fatal(err)
	}
	for fd, target := range after {
		if _, ok := s.v.fds[fd]; !ok {
			s.fail("fd %d (%s) leaked", fd, target)
		}
	}
}

// checkOutside checks the shared tree and everything next to it.
func (s *session) checkOutside() {
	s.t.Helper()
	tree, err := sysexec.Walk(s.v.shared)
	if err != nil {
		s.fail("shared tree: %v", err)
	}
	if tree.Hash() != s.tree.Hash() {
		s.fail("the shared tree changed:\n%s\nwas:\n%s", tree, s.tree)
	}
	if data, err := os.ReadFile(s.v.canary); err != nil || string(data) != canaryData {
		s.fail("the canary changed: %q %v", data, err)
	}
	if st, err := os.Lstat(s.v.canary); err != nil || st.Mode() != 0o644 {
		s.fail("the canary changed: %v %v", st.Mode(), err)
	}
	if outside, err := names(s.v.dir); err != nil || !slices.Equal(outside, s.v.outside) {
		s.fail("next to the tree: %v, want %v (%v)", outside, s.v.outside, err)
	}
	if s.live {
		return // the store holds inv's layer
	}
	if store, err := sysexec.Walk(s.v.store); err != nil || store.Hash() != s.v.storeTree.Hash() {
		s.fail("the store holds:\n%s(%v), want:\n%s", store, err, s.v.storeTree)
	}
}

func (s *session) end() {
	if !s.live {
		return
	}
	s.live = false
	var errs []error
	for _, fs := range []fsvirt.FS{s.v.engine, s.v.ref, s.shadow} {
		errs = append(errs, fs.End(inv))
	}
	if err := errors.Join(errs...); err != nil {
		s.t.Errorf("end: %v", err)
	}
}

// engine is an [fsvirt.FS] on the engine in thread mode: each invocation is
// one Invoke of the pool, whose function runs the invocation's calls on the
// worker thread, the only one virtualized. Unlike [sysexec.Remote], a call
// can be any function of the thread's [sysexec.Exec], not just an op: it
// may reach the view by other paths than the tree's own.
type engine struct {
	shared string
	pool   *impl.Pool
	invs   map[fsvirt.Inv]*worker
}

type worker struct {
	calls chan func(*sysexec.Exec)
	done  chan error
}

var _ fsvirt.FS = (*engine)(nil)

// Begin implements [fsvirt.FS].
func (e *engine) Begin(inv fsvirt.Inv) error {
	if e.invs[inv] != nil {
		return fmt.Errorf("engine: invocation %d is live", inv)
	}
	w := &worker{calls: make(chan func(*sysexec.Exec)), done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		var layer string
		err := e.pool.Invoke(context.Background(), func(iv *impl.Invocation) error {
			layer = iv.LayerDir()
			x, err := sysexec.NewInCwd(e.shared)
			if err != nil {
				return err
			}
			close(ready)
			for call := range w.calls {
				call(x)
			}
			return x.Close()
		})
		if _, serr := os.Lstat(layer); err == nil && layer != "" && !os.IsNotExist(serr) {
			err = fmt.Errorf("private layer %s left behind", layer)
		}
		w.done <- err
	}()
	select {
	case <-ready:
		e.invs[inv] = w
		return nil
	case err := <-w.done:
		return errors.Join(fmt.Errorf("engine: invocation %d did not start", inv), err)
	}
}

// call runs fn on inv's worker thread, with the Exec of its ops.
func (e *engine) call(inv fsvirt.Inv, fn func(x *sysexec.Exec)) {
	w, done := e.invs[inv], make(chan struct{})
	select {
	case w.calls <- func(x *sysexec.Exec) {
		defer close(done)
		fn(x)
	}:
	case err := <-w.done:
		panic(fmt.Sprintf("[bug] engine: invocation %d ended early: %v", inv, err))
	}
	<-done
}

// Do implements [fsvirt.FS].
func (e *engine) Do(inv fsvirt.Inv, op fsvirt.Op) (o fsvirt.Outcome) {
	e.call(inv, func(x *sysexec.Exec) { o = x.Do(op) })
	return o
}

// End implements [fsvirt.FS].
func (e *engine) End(inv fsvirt.Inv) error {
	w := e.invs[inv]
	if w == nil {
		return fmt.Errorf("engine: invocation %d is not live", inv)
	}
	delete(e.invs, inv)
	close(w.calls)
	return <-w.done
}

// Shared implements [fsvirt.FS].
func (e *engine) Shared() (fsvirt.Tree, error) { return sysexec.Walk(e.shared) }

// doFS is an [fsvirt.FS] whose Do is a function: the engine reached by
// another path, for [propcheck.Step].
type doFS struct {
	fsvirt.FS
	do func(fsvirt.Op) fsvirt.Outcome
}

func (d doFS) Do(_ fsvirt.Inv, op fsvirt.Op) fsvirt.Outcome { return d.do(op) }
