package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreRootRefused: a --store that is not a directory, and a store root in it that another
// user could have planted, are refused with a reason (exit status 125), and nothing is made.
func TestStoreRootRefused(t *testing.T) {
	requireEngine(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, store string)
		want  string
	}{
		{"store-is-file", func(t *testing.T, store string) {
			if err := os.WriteFile(store, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a directory"},
		{"root-is-symlink", func(t *testing.T, store string) {
			if err := os.Mkdir(store, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(t.TempDir(), userRoot(store)); err != nil {
				t.Fatal(err)
			}
		}, "is a symbolic link"},
		{"root-of-another-user", func(t *testing.T, store string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			if err := os.MkdirAll(userRoot(store), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(userRoot(store), 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}, "is owned by uid 4242"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			store := filepath.Join(dir, "store")
			tt.setup(t, store)
			before := listTree(t, dir)
			r := fsvirt(t, "run", "--store", store, "--", "true")
			if r.code != 125 || !strings.Contains(r.stderr, store) || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit status %d, stderr %q; want 125 and a reason that names %s and says %q", r.code, r.stderr, store, tt.want)
			}
			if after := listTree(t, dir); after != before {
				t.Errorf("the refused store left\n%s\nwas\n%s", after, before)
			}
		})
	}
}

// listTree lists every path under dir with its mode, a directory that a symlink points to included.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	var walk func(string)
	walk = func(d string) {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, _ := e.Info()
			b.WriteString(p + " " + info.Mode().String() + "\n")
			if e.Type()&fs.ModeSymlink != 0 {
				if target, err := filepath.EvalSymlinks(p); err == nil {
					walk(target)
				}
			}
			return nil
		})
	}
	walk(dir)
	return b.String()
}
