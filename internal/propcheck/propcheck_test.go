package propcheck_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"pgregory.net/rapid"

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
	dir := tb.TempDir()
	shared, tmp = filepath.Join(dir, "shared"), filepath.Join(dir, "tmp")
	for _, d := range []string{shared, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := sysexec.Build(shared, propcheck.DefaultTree); err != nil {
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
