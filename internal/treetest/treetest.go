// Package treetest builds, copies and records file trees for tests. Trees are written in the
// notation of package fsvirt ([fsvirt.Tree]: "dir a", "file a/f hello", "symlink l -> a/f");
// a [Snapshot] records what is on disk, and [Snapshot.Diff] names what changed, at a chosen
// [Level] of strictness. Every test that builds, copies or compares a tree uses these.
package treetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/internal/sysexec"
)

// Build makes the tree written in lines (the notation of [fsvirt.Tree], parents first) under
// dir, making dir first when it is missing; dir gets mode 0755 ([sysexec.Build]).
func Build(t testing.TB, dir string, lines ...string) {
	t.Helper()
	tree, err := fsvirt.ParseTree(lines...)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = sysexec.Build(dir, tree)
	}
	if err != nil {
		t.Fatalf("build tree in %s: %v", dir, err)
	}
}

// Copy makes dst a private full copy of the tree at src with cp -a (data, modes, owners, times,
// xattrs and hard links within the tree), making dst's parent directories first, and returns dst.
func Copy(t testing.TB, src, dst string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
	return dst
}
