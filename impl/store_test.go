package impl

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStoreSweepsDeadStores: a new store sweeps the stores in the user's store root whose process
// has died (their lock is free), and leaves those of live processes.
func TestStoreSweepsDeadStores(t *testing.T) {
	storeDir := t.TempDir()
	user := userStoreRoot(storeDir)
	mkTree(t, user, "dir store-dead/inv-3/upper", "file store-dead/lock", "dir store-live", "file store-live/lock")
	if err := os.Chmod(user, 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := unix.Open(user+"/store-live/lock", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lock)
	if err := unix.Flock(lock, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	p, err := NewPool(Config{Store: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	if got := storeEntries(t, storeDir); !slices.Equal(got, []string{filepath.Base(user) + "/store-live"}) {
		t.Errorf("store directory holds %q after a pool came and went, want only the live store", got)
	}
}

// TestStoreRootRefused: a store directory that is not a directory, and a store root that another
// user could have planted or can change, are refused with an error that says what is wrong, and
// nothing is made.
func TestStoreRootRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir, user string) // dir: the --store directory
		want  string
	}{
		{"store-is-file", func(t *testing.T, dir, user string) {
			mkTree(t, dir, "file store x")
		}, "not a directory"},
		{"root-is-symlink", func(t *testing.T, dir, user string) {
			mkTree(t, dir, "dir store", "dir elsewhere", "symlink store/"+filepath.Base(user)+" -> ../elsewhere")
		}, "is a symbolic link"},
		{"root-is-file", func(t *testing.T, dir, user string) {
			mkTree(t, dir, "dir store", "file store/"+filepath.Base(user)+" x")
		}, "is not a directory"},
		{"root-of-another-user", func(t *testing.T, dir, user string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			mkTree(t, dir, "dir store/"+filepath.Base(user))
			if err := os.Chmod(user, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(user, 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}, "is owned by uid 4242"},
		{"root-writable-by-others", func(t *testing.T, dir, user string) {
			mkTree(t, dir, "dir store/"+filepath.Base(user))
			if err := os.Chmod(user, 0o733); err != nil {
				t.Fatal(err)
			}
		}, "is writable by others"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			store := dir + "/store"
			user := userStoreRoot(store)
			tt.setup(t, dir, user)
			before := treeListing(t, dir)
			p, err := NewPool(Config{Store: store})
			if err == nil {
				p.Close()
				t.Fatal("NewPool succeeded")
			}
			_, rerr := Run(context.Background(), RunConfig{Store: store, Path: "/bin/true", Args: []string{"true"}})
			for _, err := range []error{err, rerr} {
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), store) {
					t.Errorf("error %v, want one that names %s and says %q", err, store, tt.want)
				}
			}
			if after := treeListing(t, dir); !slices.Equal(after, before) {
				t.Errorf("the refused store left\n%q\nwas\n%q", after, before)
			}
		})
	}
}

// treeListing lists every path under dir with its mode, sorted.
func treeListing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %v", p, info.Mode()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
