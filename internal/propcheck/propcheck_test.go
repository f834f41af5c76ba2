package propcheck_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"pgregory.net/rapid"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/internal/propcheck"
	"github.com/fsvirt/fsvirt/internal/sysexec"
	"github.com/fsvirt/fsvirt/model"
	"github.com/fsvirt/fsvirt/oracle"
)

func TestModelVsCopy(t *testing.T) {
	shared, tmp := setup(t)
	rapid.Check(t, modelVs(t, oracle.NewCopy(shared, tmp)))
	assertEmpty(t, tmp)
}

func TestModelVsOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("overlayfs needs root")
	}
	if err := oracle.HaveOverlay(); errors.Is(err, oracle.ErrNotSupported) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	shared, tmp := setup(t)
	rapid.Check(t, modelVs(t, oracle.NewOverlay(shared, tmp)))
	assertEmpty(t, tmp)
}

// TestModelVsCopyCreds: the model refuses what the kernel refuses root and an unprivileged user
// with supplementary groups, on a tree of both, with credentials switched mid-sequence.
func TestModelVsCopyCreds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the tree holds root's and nobody's files, and the oracle switches credentials: needs root")
	}
	umask, err := sysexec.Umask()
	if err != nil {
		t.Fatal(err)
	}
	shared, tmp := setupTree(t, propcheck.CredTree)
	ref := oracle.NewCopy(shared, tmp)
	opts := propcheck.Options{Tree: propcheck.CredTree, Names: propcheck.CredNames, Creds: []fsvirt.Cred{propcheck.Root, propcheck.Nobody},
		NoXattrs: sysexec.HaveUserXattrs(tmp) != nil}
	rapid.Check(t, func(t *rapid.T) {
		sut := model.New(propcheck.CredTree, umask).WithSysctls(propcheck.HostSysctls())
		propcheck.Run(t, sut, ref, opts)
	})
	assertEmpty(t, tmp)
}

func FuzzModelVsCopy(f *testing.F) {
	shared, tmp := setup(f)
	f.Fuzz(rapid.MakeFuzz(modelVs(f, oracle.NewCopy(shared, tmp))))
}

// modelVs checks a fresh model against ref.
func modelVs(tb testing.TB, ref *oracle.Oracle) func(*rapid.T) {
	tb.Helper()
	umask, err := sysexec.Umask()
	if err != nil {
		tb.Fatal(err)
	}
	opts := propcheck.Options{NoXattrs: sysexec.HaveUserXattrs(tb.TempDir()) != nil}
	return func(t *rapid.T) {
		sut := model.New(propcheck.DefaultTree, umask).WithOwner(uint32(os.Getuid()), uint32(os.Getgid()))
		propcheck.Run(t, sut, ref, opts)
	}
}

// setup builds the default tree in a temporary shared directory and makes an
// empty directory for the oracle's private trees.
func setup(tb testing.TB) (shared, tmp string) {
	tb.Helper()
	return setupTree(tb, propcheck.DefaultTree)
}

// setupTree is setup for tree, in directories any user may reach.
func setupTree(tb testing.TB, tree fsvirt.Tree) (shared, tmp string) {
	tb.Helper()
	dir := tb.TempDir()
	propcheck.Reachable(tb, dir)
	shared, tmp = filepath.Join(dir, "shared"), filepath.Join(dir, "tmp")
	for _, d := range []string{shared, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := sysexec.Build(shared, tree); err != nil {
		tb.Fatal(err)
	}
	return shared, tmp
}

func assertEmpty(tb testing.TB, dir string) {
	tb.Helper()
	if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
		tb.Errorf("%s: left behind: %v %v", dir, entries, err)
	}
}
