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
	return setupSharedTree(t, propcheck.DefaultTree)
}

// setupSharedTree is setupShared for tree, in directories any user may reach.
func setupSharedTree(t *testing.T, tree fsvirt.Tree) (shared, tmp string) {
	t.Helper()
	dir := t.TempDir()
	propcheck.Reachable(t, dir)
	shared, tmp = filepath.Join(dir, "shared"), filepath.Join(dir, "tmp")
	for _, d := range []string{shared, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := sysexec.Build(shared, tree); err != nil {
		t.Fatal(err)
	}
	return shared, tmp
}

// resetShared rebuilds the shared tree before each case, so that an engine bug that wrote to it
// fails that case alone, and rapid can shrink it, rather than every later case.
func resetShared(t *rapid.T, shared string) { resetSharedTree(t, shared, propcheck.DefaultTree) }

// resetSharedTree is resetShared for tree.
func resetSharedTree(t *rapid.T, shared string, tree fsvirt.Tree) {
	entries, err := os.ReadDir(shared)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(shared, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := sysexec.Build(shared, tree); err != nil {
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

// credOptions are the state machine's options for runs as root and as nobody with a supplementary
// group, on a tree of both users' files; such runs need root.
func credOptions(t *testing.T) propcheck.Options {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the tree holds root's and nobody's files, and the worker threads switch credentials: needs root")
	}
	return propcheck.Options{Tree: propcheck.CredTree, Names: propcheck.CredNames, Invocations: invocations, NoXattrs: noXattrs(t),
		Creds: []fsvirt.Cred{propcheck.Root, propcheck.Nobody}}
}

// TestEngineVsCopyCreds: the engine refuses a caller what the kernel refuses it, and makes new
// files as the kernel does, as root and as an unprivileged user with supplementary groups; each
// invocation's worker thread itself holds the credentials (sysexec.SetCred), which the engine reads
// as it reads any caller's.
func TestEngineVsCopyCreds(t *testing.T) {
	opts := credOptions(t)
	for _, pol := range []impl.Policy{impl.PolicyFast, impl.PolicyStrict} {
		t.Run(pol.String(), func(t *testing.T) {
			shared, tmp := setupSharedTree(t, propcheck.CredTree)
			e := newEngineFS(t, shared, pol)
			rapid.Check(t, func(rt *rapid.T) {
				resetSharedTree(rt, shared, propcheck.CredTree)
				propcheck.Run(rt, e, oracle.NewCopy(shared, tmp), opts)
			})
		})
	}
}

// TestEngineVsModelCreds is TestEngineVsModel with credentials, as TestEngineVsCopyCreds.
func TestEngineVsModelCreds(t *testing.T) {
	opts := credOptions(t)
	shared, _ := setupSharedTree(t, propcheck.CredTree)
	e := newEngineFS(t, shared, impl.PolicyFast)
	umask, err := sysexec.Umask()
	if err != nil {
		t.Fatal(err)
	}
	rapid.Check(t, func(rt *rapid.T) {
		resetSharedTree(rt, shared, propcheck.CredTree)
		propcheck.Run(rt, e, model.New(propcheck.CredTree, umask).WithSysctls(propcheck.HostSysctls()), opts)
	})
}
