package attacktest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// Take records the fixture's tree as it is on the host; [Fixture.Check] compares it at
// [treetest.Exact].
func (f Fixture) Take(t testing.TB) treetest.Snapshot {
	t.Helper()
	return treetest.Snap(t, f.Dir)
}

// Strays lists what is in the fixture's parent besides the fixture: an attack that created a name
// next to the shared tree, inside the virtualized one.
func (f Fixture) Strays(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(f.Parent)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != FixtureName {
			out = append(out, filepath.Join(f.Parent, e.Name()))
		}
	}
	return out
}

// Check fails the test for every way the fixture differs from before, and for every stray next to
// it.
func (f Fixture) Check(t testing.TB, before treetest.Snapshot) {
	t.Helper()
	for _, d := range before.Diff(f.Take(t), treetest.Exact) {
		t.Errorf("shared tree changed: %s", d)
	}
	for _, s := range f.Strays(t) {
		t.Errorf("created beside the shared tree: %s", s)
	}
}
