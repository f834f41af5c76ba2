package treetest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDiffNamesChanges: a copy equals its original at Kept but not at Exact, and each change is
// named by its path and field at every level that takes the field into account.
func TestDiffNamesChanges(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	Build(t, src, "dir 0750 d", "file d/f hello", "file 0600 g world", "symlink l -> d/f", "fifo p")
	dst := Copy(t, src, filepath.Join(t.TempDir(), "a", "copy"))
	before := Snap(t, src)
	if d := before.Diff(Snap(t, dst), Kept); d != nil {
		t.Errorf("a copy differs at Kept: %q", d)
	}
	if d := before.Diff(Snap(t, dst), Exact); !slices.ContainsFunc(d, func(s string) bool { return strings.HasPrefix(s, "d/f: ino ") }) {
		t.Errorf("a copy at Exact: %q, want d/f's inode number named", d)
	}
	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	tests := []struct {
		name   string
		change func(dir string) error
		level  Level
		want   string // the start of one difference; "" for none
	}{
		{"read", func(dir string) error { _, err := os.ReadFile(dir + "/g"); return err }, Exact, ""},
		{"chmod", func(dir string) error { return os.Chmod(dir+"/g", 0o644) }, Data, "g: mode 0600 -> 0644"},
		{"write", func(dir string) error { return os.WriteFile(dir+"/d/f", []byte("HELLO"), 0) }, Data, "d/f: sha256 "},
		{"remove", func(dir string) error { return os.Remove(dir + "/l") }, Data, "l: gone"},
		{"mkdir", func(dir string) error { return os.Mkdir(dir+"/d/new", 0o755) }, Data, "d/new: added"},
		{"touch", func(dir string) error { return os.Chtimes(dir+"/g", past, past) }, Kept, "g: mtime "},
		{"touch-unseen", func(dir string) error { return os.Chtimes(dir+"/g", past, past) }, Data, ""},
		{"link", func(dir string) error { return os.Link(dir+"/g", dir+"/d/g2") }, Kept, "g: nlink 1 -> 2"},
		{"chmod-same", func(dir string) error { return os.Chmod(dir+"/g", 0o600) }, Exact, "g: ctime "},
		{"retype", func(dir string) error {
			if err := os.Remove(dir + "/p"); err != nil {
				return err
			}
			return os.Mkdir(dir+"/p", 0o644)
		}, Data, "p: type=fifo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := Copy(t, src, filepath.Join(t.TempDir(), "tree"))
			before := Snap(t, dir)
			time.Sleep(10 * time.Millisecond) // so that a change time can differ
			if err := tt.change(dir); err != nil {
				t.Fatal(err)
			}
			d := before.Diff(Snap(t, dir), tt.level)
			found := slices.ContainsFunc(d, func(s string) bool { return tt.want != "" && strings.HasPrefix(s, tt.want) })
			if tt.want == "" && d != nil || tt.want != "" && !found {
				t.Errorf("Diff = %q, want one starting %q", d, tt.want)
			}
		})
	}
}
