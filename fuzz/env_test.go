package fuzz

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
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
//	dir/store    the engine's store root; its fsvirt-* directory, the store
//	             proper, holds the private layers and is invisible in the view
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
	pool, err := impl.NewPool(impl.Config{Workers: 1, Trees: []string{v.shared}, Store: v.storeRoot})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := pool.Close(); err != nil {
			f.Error(err)
		}
	})
	stores, err := filepath.Glob(filepath.Join(v.storeRoot, "fsvirt-*"))
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
	// relPath are the handles opened with O_PATH by a relative path (see
	// knownIssue).
	relPath map[fsvirt.Handle]bool
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
	s := &session{t: t, v: v, tree: tree, handles: map[fsvirt.Handle]bool{}, relPath: map[fsvirt.Handle]bool{}}
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
	if why := s.knownIssue(op); why != "" {
		s.logf("%v: known issue, skipped: %s", op, why)
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
			s.relPath[h] = op.Flags&unix.O_PATH != 0 && !strings.HasPrefix(op.Path, "/")
		case fsvirt.OpClose:
			delete(s.handles, op.Fd)
			delete(s.relPath, op.Fd)
		}
	}
	return got, true
}

// knownIssue says why op is left out although the model defines it: an
// engine bug reported and not fixed yet.
func (s *session) knownIssue(op fsvirt.Op) string {
	for _, p := range []string{op.Path, op.NewPath} {
		for c := range strings.SplitSeq(p, "/") {
			if len(c) > unix.NAME_MAX {
				// The kernel says ENAMETOOLONG for a name longer than NAME_MAX;
				// the engine looks it up and says ENOENT. Regression:
				// FuzzOpenatFlags/name-longer-than-name-max.
				return "a name longer than NAME_MAX"
			}
		}
	}
	switch op.Kind {
	case fsvirt.OpRead, fsvirt.OpWrite, fsvirt.OpPwrite, fsvirt.OpSeek, fsvirt.OpTruncate, fsvirt.OpGetdents:
		if s.relPath[op.Fd] {
			// The engine resolves a relative path from a working directory or
			// dirfd in the private layer as impure, and answers an O_PATH open
			// of a shared object with an ordinary read-only fd; the model expects
			// an O_PATH fd (EBADF). Regression: FuzzOpenatFlags/opath-relative-*.
			return "I/O on an O_PATH fd opened by a relative path"
		}
	}
	return ""
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
