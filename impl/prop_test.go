package impl_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"pgregory.net/rapid"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/impl"
	"github.com/fsvirt/fsvirt/internal/propcheck"
	"github.com/fsvirt/fsvirt/internal/sysexec"
	"github.com/fsvirt/fsvirt/model"
	"github.com/fsvirt/fsvirt/oracle"
)

// engineFS drives the real engine in thread mode: each invocation of the state machine is one
// Invoke, whose function executes the machine's ops with real syscalls on its worker thread.
type engineFS struct {
	*sysexec.Remote
	store string
	mu    sync.Mutex
	invs  map[fsvirt.Inv]*impl.Invocation
}

var _ fsvirt.FS = (*engineFS)(nil)
var _ fsvirt.CopyUpCounter = (*engineFS)(nil)

// CopyUps reports the engine's own count, to be compared with the model's decisions.
func (e *engineFS) CopyUps(inv fsvirt.Inv) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.invs[inv].Stats().CopyUps
}

// invocations is how many invocations the state machine keeps live at once; each holds a worker.
const invocations = 3

func newEngineFS(t *testing.T, shared string, policy impl.Policy) *engineFS {
	t.Helper()
	store := t.TempDir()
	pool, err := impl.NewPool(impl.Config{Workers: invocations, Trees: []string{shared}, Store: store, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Close(); err != nil {
			t.Error(err)
		}
	})
	e := &engineFS{store: store, invs: map[fsvirt.Inv]*impl.Invocation{}}
	e.Remote = sysexec.NewRemote(shared, func(inv fsvirt.Inv, serve func() error) error {
		var layer string
		err := pool.Invoke(context.Background(), func(iv *impl.Invocation) error {
			e.mu.Lock()
			e.invs[inv] = iv
			e.mu.Unlock()
			layer = iv.LayerDir()
			return serve() // every op of this invocation runs here, on the worker thread
		})
		e.mu.Lock()
		delete(e.invs, inv)
		e.mu.Unlock()
		if _, serr := os.Stat(layer); err == nil && !os.IsNotExist(serr) {
			err = fmt.Errorf("private layer %s left behind after the invocation ended", layer)
		}
		return err
	})
	e.Remote.OwnCwd = true // workers unshare CLONE_FS: relative paths resolve against the worker's cwd
	return e
}

func setupShared(t *testing.T) (shared, tmp string) {
	t.Helper()
	dir := t.TempDir()
	shared, tmp = filepath.Join(dir, "shared"), filepath.Join(dir, "tmp")
	for _, d := range []string{shared, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := sysexec.Build(shared, propcheck.DefaultTree); err != nil {
		t.Fatal(err)
	}
	return shared, tmp
}

// resetShared rebuilds the shared tree before each case, so that an engine bug that wrote to it
// fails that case alone, and rapid can shrink it, rather than every later case.
func resetShared(t *rapid.T, shared string) {
	entries, err := os.ReadDir(shared)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(shared, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := sysexec.Build(shared, propcheck.DefaultTree); err != nil {
		t.Fatal(err)
	}
}

// TestEngineVsCopy: the engine, through real syscalls of sandboxed threads, behaves as the kernel
// does on a private full copy of the tree.
func TestEngineVsCopy(t *testing.T) {
	for _, pol := range []impl.Policy{impl.PolicyFast, impl.PolicyStrict} {
		t.Run(pol.String(), func(t *testing.T) {
			shared, tmp := setupShared(t)
			e := newEngineFS(t, shared, pol)
			nx := noXattrs(t)
			rapid.Check(t, func(rt *rapid.T) {
				resetShared(rt, shared)
				propcheck.Run(rt, e, oracle.NewCopy(shared, tmp), propcheck.Options{Invocations: invocations, NoXattrs: nx})
			})
		})
	}
}

// TestEngineVsModel: outcomes equal the model's predictions, and the engine copies a file up
// exactly when the model decides it must (never for a read-only open of an untouched file, once
// per file otherwise).
func TestEngineVsModel(t *testing.T) {
	shared, _ := setupShared(t)
	e := newEngineFS(t, shared, impl.PolicyFast)
	umask, err := sysexec.Umask()
	if err != nil {
		t.Fatal(err)
	}
	nx := noXattrs(t)
	rapid.Check(t, func(rt *rapid.T) {
		resetShared(rt, shared)
		propcheck.Run(rt, e, model.New(propcheck.DefaultTree, umask), propcheck.Options{Invocations: invocations, NoXattrs: nx})
	})
}

// noXattrs leaves the xattr ops out where the test's file system has no user xattrs (tmpfs
// before Linux 6.6, as in the vmtest initramfs).
func noXattrs(t *testing.T) bool { return sysexec.HaveUserXattrs(t.TempDir()) != nil }
