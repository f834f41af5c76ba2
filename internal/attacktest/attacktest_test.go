package attacktest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// TestCheckCatches plants each change an attack could make and checks that the snapshot, or the
// look beside the fixture, names it; reading the tree changes nothing.
func TestCheckCatches(t *testing.T) {
	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	tests := []struct {
		name   string
		change func(dir string) error
		want   string // a substring of one problem; "" for none
	}{
		{"nothing", func(string) error { return nil }, ""},
		{"read", func(dir string) error { _, err := os.ReadFile(dir + "/root-file"); return err }, ""},
		{"chmod", func(dir string) error { return os.Chmod(dir+"/root-file", 0o777) }, "root-file: mode 0644 -> 0777"},
		{"chown", func(dir string) error { return os.Lchown(dir+"/root-file", 1, 1) }, "root-file: owner"},
		{"truncate", func(dir string) error { return os.Truncate(dir+"/root-file", 0) }, "root-file: size"},
		{"same-size-write", func(dir string) error {
			return os.WriteFile(dir+"/sub/inner", []byte("INNER\n"), 0)
		}, "sub/inner: sha256"},
		{"mtime", func(dir string) error { return os.Chtimes(dir+"/ro-file", past, past) }, "ro-file: mtime"},
		{"setxattr", func(dir string) error { return unix.Setxattr(dir+"/script", "user.evil", []byte("1"), 0) }, "script: xattrs"},
		{"unlink", func(dir string) error { return os.Remove(dir + "/nobody-dir/own") }, "nobody-dir/own: gone"},
		{"link", func(dir string) error { return os.Link(dir+"/root-file", dir+"/sub/hard") }, "root-file: nlink 1 -> 2"},
		{"symlink-target", func(dir string) error {
			if err := os.Remove(dir + "/link"); err != nil {
				return err
			}
			return os.Symlink("ro-file", dir+"/link")
		}, "link: target root-file -> ro-file"},
		{"mkdir", func(dir string) error { return os.Mkdir(dir+"/nobody-dir/new", 0o755) }, "nobody-dir/new: added"},
		{"stray", func(dir string) error { return os.WriteFile(dir+"/../stray", nil, 0o644) }, "created beside the shared tree: "},
		{"flags", func(dir string) error { return setFlags(dir+"/root-file", 0x40 /* FS_NODUMP_FL */) }, "root-file: flags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.name == "flags" && !HaveInodeFlags(f.Dir) {
				t.Skip("no inode flags on this file system")
			}
			before := f.Take(t)
			if err := tt.change(f.Dir); err != nil {
				t.Fatal(err)
			}
			problems := before.Diff(f.Take(t), treetest.Exact)
			for _, s := range f.Strays(t) {
				problems = append(problems, "created beside the shared tree: "+s)
			}
			found := false
			for _, p := range problems {
				found = found || tt.want != "" && strings.Contains(p, tt.want)
			}
			if tt.want == "" && len(problems) > 0 || tt.want != "" && !found {
				t.Errorf("problems %q, want one containing %q", problems, tt.want)
			}
		})
	}
}

func newFixture(t *testing.T) Fixture {
	t.Helper()
	return NewFixture(t, TempDir(t, FlagsBase(), "attack-", 0o755, os.Geteuid()))
}

func setFlags(p string, add uint32) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|add))
}

// TestFixtureCleanupClearsImmutable: a file an attack made immutable is removed with the rest.
func TestFixtureCleanupClearsImmutable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting FS_IMMUTABLE_FL needs CAP_LINUX_IMMUTABLE")
	}
	var parent string
	t.Run("attacked", func(t *testing.T) {
		f := newFixture(t)
		if !HaveInodeFlags(f.Dir) {
			t.Skip("no inode flags on this file system")
		}
		parent = f.Parent
		if err := setFlags(filepath.Join(f.Dir, "root-file"), fsImmutableFl); err != nil {
			t.Fatal(err)
		}
	})
	if parent == "" {
		t.Skip("no inode flags on this file system")
	}
	if _, err := os.Lstat(parent); !os.IsNotExist(err) {
		t.Errorf("%s left behind (lstat: %v)", parent, err)
	}
}
