package impl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/fsvirt/fsvirt/internal/layer"
	"golang.org/x/sys/unix"
)

// A named layer (RunConfig.Layer) is a directory in the kept layer's format (see keep) that a
// run starts from and saves back into, as a persistent overlay upper directory is used:
//
//   - A lock, flock(2) on LAYER.lock beside it, taken before anything else, refuses a second
//     run on the same layer while one holds it.
//   - The layer's changes are loaded into the fresh view before the command runs, by a process
//     in the view (this program re-executed as loadArg0) that applies the layer to "/" without
//     the conflict check: the view then holds them as its own.
//   - At the end the view's changes, those loaded included, are kept in LAYER.new, which is then
//     exchanged with LAYER (renameat2 RENAME_EXCHANGE) and removed: a run killed before the
//     exchange leaves LAYER as it was, one killed after it leaves the new one whole, and
//     LAYER.new, left over, is removed by the next run.
//
// The record keeps what each shared object was when the first run that changed it saw it.

// loadArg0 marks a re-executed fsvirt that is to load a layer into the view it runs in.
const loadArg0 = "fsvirt-load"

// loadRole loads the layer named by the only argument into the view this process runs in, and
// exits. It runs from this package's init (reexec.go), before anything else of the program.
func loadRole() {
	if len(os.Args) != 2 {
		return
	}
	if _, err := layer.Apply(os.Args[1], layer.Options{NoCheck: true}); err != nil {
		fmt.Fprintf(os.Stderr, "fsvirt: load layer %s: %v\n", os.Args[1], err)
		os.Exit(ExitFailure)
	}
	os.Exit(0)
}

// namedLayer is a layer held by a run.
type namedLayer struct {
	dir  string
	lock *os.File
	prev *layer.Record // nil: the layer is new (missing or empty)
}

// openLayer locks layer directory dir and reads its record.
func openLayer(dir string) (*namedLayer, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(abs)
	lock, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("layer %s: lock: %w", dir, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("layer %s is in use by another fsvirt run (it holds %s.lock); wait for it to end", dir, dir)
		}
		return nil, fmt.Errorf("layer %s: lock: %w", dir, err)
	}
	l := &namedLayer{dir: dir, lock: lock}
	if err := os.RemoveAll(dir + ".new"); err != nil { // a save that was killed
		l.close()
		return nil, fmt.Errorf("layer %s: %w", dir, err)
	}
	switch empty, err := isEmptyDir(dir); {
	case errors.Is(err, os.ErrNotExist), err == nil && empty:
	case err != nil:
		l.close()
		return nil, fmt.Errorf("layer %s: %w", dir, err)
	default:
		if l.prev, err = layer.ReadRecord(dir); err != nil {
			l.close()
			return nil, err
		}
	}
	return l, nil
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		return false, fmt.Errorf("not a directory")
	}
	_, err = f.Readdirnames(1)
	if err == io.EOF {
		return true, nil
	}
	return false, err
}

func (l *namedLayer) close() { l.lock.Close() }

// checkTrees refuses a layer that changes a path outside ns's trees: outside them the view's
// changes are the host's own, and loading it would change the host (a layer made with another
// --tree).
func (l *namedLayer) checkTrees(ns *namespace) error {
	if l.prev == nil {
		return nil
	}
	for _, c := range l.prev.Changes {
		if !ns.inTree(c.Path) {
			return fmt.Errorf("layer %s changes %s, which is outside this run's trees (%s): run it with the trees it was made with", l.dir, c.Path, strings.Join(ns.trees, ", "))
		}
	}
	return nil
}

// load applies the layer to view v, before the command runs, and forgets what that counted.
func (l *namedLayer) load(ctx context.Context, v *View, sup *supervisor, cfg RunConfig) error {
	if l.prev == nil {
		return nil
	}
	lc := cfg
	lc.Path, lc.Args, lc.Dir, lc.Stdin, lc.Stdout = "/proc/self/exe", []string{loadArg0, l.dir}, "/", nil, cfg.Stderr
	end, err := v.runCommand(ctx, sup, lc)
	if err != nil {
		return fmt.Errorf("load layer %s: %w", l.dir, err)
	}
	if end.status != 0 {
		return fmt.Errorf("load layer %s: the loader exited with status %d %s", l.dir, end.status, end.notRun)
	}
	v.mu.Lock()
	v.stats = Stats{}
	v.mu.Unlock()
	return nil
}

// save keeps the view's changes as the layer's new content (see above).
func (l *namedLayer) save(v *View) error {
	tmp := l.dir + ".new"
	if err := v.keep(tmp, l.prev); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("save layer %s: %w", l.dir, err)
	}
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, l.dir, unix.RENAME_EXCHANGE)
	if err == unix.ENOENT {
		err = unix.Rename(tmp, l.dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("save layer %s: %w", l.dir, err)
	}
	return os.RemoveAll(tmp) // the layer as it was
}

// Layers in thread mode: a Pool's invocation can keep its private layer (Invocation.Keep) and
// use a named layer (OpenLayer, Invocation.LoadLayer, Invocation.SaveLayer) as process mode does.

// Layer is a named layer locked for one invocation at a time (see above): OpenLayer, then
// Close once the invocation that uses it has saved it.
type Layer struct{ l *namedLayer }

// OpenLayer locks the named layer in directory dir, made at the first save if missing; it
// fails at once, naming the layer, when another run or invocation holds it.
func OpenLayer(dir string) (*Layer, error) {
	l, err := openLayer(dir)
	if err != nil {
		return nil, err
	}
	return &Layer{l}, nil
}

// Close releases the lock.
func (l *Layer) Close() { l.l.close() }

// LoadLayer loads l's changes into the invocation's view, which must have none yet; Stats
// start again afterwards. It runs a process in the view (Start), and may be called from the
// function only.
func (inv *Invocation) LoadLayer(l *Layer) error {
	if l.l.prev == nil {
		return nil
	}
	if err := l.l.checkTrees(inv.view.ns); err != nil {
		return err
	}
	cmd := exec.Command("/proc/self/exe", l.l.dir)
	cmd.Args[0] = loadArg0
	cmd.Dir = "/"
	cmd.Stderr = os.Stderr
	if err := inv.Start(cmd); err != nil {
		return fmt.Errorf("load layer %s: %w", l.l.dir, err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("load layer %s: %w", l.l.dir, err)
	}
	v := inv.view
	v.mu.Lock()
	v.stats = Stats{}
	v.mu.Unlock()
	return nil
}

// SaveLayer saves the invocation's changes into l (atomically, see above). Call it when the
// function's work is done, from the function or another goroutine.
func (inv *Invocation) SaveLayer(l *Layer) error {
	return inv.view.offThread(func() error { return l.l.save(inv.view) })
}

// Keep writes the invocation's changes so far to dir, missing or empty, in the kept layer's
// format (see keep), as RunConfig.Keep does at the end of a run.
func (inv *Invocation) Keep(dir string) error {
	if err := checkKeepDir(dir); err != nil {
		return err
	}
	return inv.view.offThread(func() error { return inv.view.keep(dir, nil) })
}

// offThread runs fn on a goroutine of its own, holding the view's turn: keeping reads the
// private layer and the shared tree as the host has them, where a worker thread's calls would
// be answered in the view, and changes the private layer (materialize), which the supervisor
// must not do meanwhile for a process the invocation started.
func (v *View) offThread(fn func() error) error {
	out := make(chan error, 1)
	go func() {
		v.turn.Lock()
		defer v.turn.Unlock()
		out <- fn()
	}()
	return <-out
}
