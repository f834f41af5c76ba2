// Package attacktest holds what the adversarial tests of cmd/fsvirt and impl share: the shared
// tree they attack, a snapshot of everything an attack could change in it, and the build of the
// attack programs (C, under cmd/fsvirt/testdata/attack).
//
// An attack succeeds when the shared tree differs after the attacked run from before it. The
// snapshot records, per entry, what a file system lets a process change: type, mode, owner,
// size, link count, content, mtime, xattrs and inode flags (FS_IOC_GETFLAGS).
//
// The tree is readable by everyone and mostly owned by root, so that an attacker running as
// nobody may not change it on the host; a few entries belong to nobody, which may change them on
// the host but must not through a view.
package attacktest

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Nobody is the uid and gid of the unprivileged attacker.
const Nobody = 65534

// FixtureName is the shared tree's directory in its parent.
const FixtureName = "fixture"

// A fixture entry: "dir PATH MODE OWNER", "file PATH MODE OWNER CONTENT" or
// "symlink PATH -> TARGET"; OWNER is root or nobody. Regular files get the xattr user.x.
var fixtureSpec = []string{
	"file root-file 0644 root root's file",
	"file ro-file 0444 root read-only",
	"file script 0755 root #!/bin/sh",
	"symlink link -> root-file",
	"dir sub 0755 root",
	"file sub/inner 0644 root inner",
	"file nobody-file 0644 nobody nobody's file",
	"file nobody-suid 04755 nobody nobody's set-uid file",
	"dir nobody-dir 0755 nobody",
	"dir nobody-dir/sub 0755 nobody",
	"file nobody-dir/own 0644 nobody nobody's file in its directory",
	"file nobody-dir/own2 0644 nobody nobody's other file",
}

// Fixture is a shared tree, Dir, alone in a directory of its own, Parent.
type Fixture struct {
	Parent, Dir string
}

// NewFixture builds the shared tree in parent, an empty directory, readable by everyone. Where
// the test cannot chown (it is not root), every entry is the test's own.
func NewFixture(t testing.TB, parent string) Fixture {
	t.Helper()
	f := Fixture{Parent: parent, Dir: filepath.Join(parent, FixtureName)}
	if err := os.Mkdir(f.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, line := range fixtureSpec {
		kind, rest, _ := strings.Cut(line, " ")
		if kind == "symlink" {
			name, target, _ := strings.Cut(rest, " -> ")
			if err := os.Symlink(target, filepath.Join(f.Dir, name)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		fields := strings.SplitN(rest, " ", 4)
		p := filepath.Join(f.Dir, fields[0])
		mode, err := strconv.ParseUint(fields[1], 8, 32)
		if err != nil {
			t.Fatalf("[harness] %q: %v", line, err)
		}
		if kind == "dir" {
			err = os.Mkdir(p, 0o700)
		} else {
			err = os.WriteFile(p, []byte(fields[3]+"\n"), 0o600)
			if err == nil {
				// ENOTSUP where the file system has no user xattrs: the xattr attacks then
				// change nothing there, and the other fields still count.
				_ = unix.Setxattr(p, "user.x", []byte("shared"), 0)
			}
		}
		if err == nil && fields[2] == "nobody" && os.Geteuid() == 0 {
			err = os.Lchown(p, Nobody, Nobody)
		}
		if err == nil {
			err = unix.Chmod(p, uint32(mode)) // after chown, which clears set-uid
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// Mirror makes, under root, the fixture's directories with the same paths relative to root as
// they have to the fixture's parent, owned by uid: where an attacker keeps decoys whose paths
// differ from the shared ones only in their leading bytes.
func (f Fixture) Mirror(t testing.TB, root string, uid int) {
	t.Helper()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	dirs := []string{root, filepath.Join(root, FixtureName)}
	for _, line := range fixtureSpec {
		if kind, rest, _ := strings.Cut(line, " "); kind == "dir" {
			name, _, _ := strings.Cut(rest, " ")
			dirs = append(dirs, filepath.Join(root, FixtureName, name))
		}
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil && d != root {
			t.Fatal(err)
		}
		if uid != os.Geteuid() {
			if err := os.Lchown(d, uid, uid); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TempDir makes a fresh directory under base with mode and owner uid (gid the same), and
// removes it, with everything in it, when the test ends: first clearing the immutable and
// append-only flags an attack may have set, which would make it undeletable.
func TempDir(t testing.TB, base, pattern string, mode os.FileMode, uid int) string {
	t.Helper()
	dir, err := os.MkdirTemp(base, pattern)
	if err != nil {
		t.Fatal(err)
	}
	adopt(t, dir, mode, uid)
	return dir
}

// adopt gives the test's new directory dir its mode and owner, and removes it when the test ends.
func adopt(t testing.TB, dir string, mode os.FileMode, uid int) {
	t.Helper()
	t.Cleanup(func() {
		clearFlags(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	if uid != os.Geteuid() {
		if err := os.Chown(dir, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
}

// TempDirLen is TempDir with a name of exactly n bytes, in base: ".", then random letters and
// digits.
func TempDirLen(t testing.TB, base string, n int, mode os.FileMode, uid int) string {
	t.Helper()
	if n < 2 {
		t.Fatalf("[harness] a directory name of %d bytes leaves no room for a random part", n)
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for range 1000 {
		name := []byte{'.'}
		for len(name) < n {
			name = append(name, alphabet[rand.IntN(len(alphabet))])
		}
		dir := filepath.Join(base, string(name))
		err := os.Mkdir(dir, 0o700)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		adopt(t, dir, mode, uid)
		return dir
	}
	t.Fatalf("[harness] no free name of %d bytes in %s", n, base)
	return ""
}

// Inode flags of linux/fs.h that x/sys/unix does not name.
const (
	fsImmutableFl = 0x10
	fsAppendFl    = 0x20
)

// clearFlags clears FS_IMMUTABLE_FL and FS_APPEND_FL on everything under dir.
func clearFlags(t testing.TB, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		defer unix.Close(fd)
		flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
		if err != nil || flags&(fsImmutableFl|fsAppendFl) == 0 {
			return nil
		}
		flags &^= fsImmutableFl | fsAppendFl
		if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags)); err != nil {
			t.Errorf("cleanup: clear the flags of %s: %v", p, err)
		}
		return nil
	})
}

// HaveInodeFlags reports whether FS_IOC_GETFLAGS works on the file system of dir.
func HaveInodeFlags(dir string) bool {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	_, err = unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	return err == nil
}

// FlagsBase is where fixtures go: /var/tmp where inode flags work there (the ioctl attacks need
// them), else the test's temporary directory.
func FlagsBase() string {
	if HaveInodeFlags("/var/tmp") {
		return "/var/tmp"
	}
	return os.TempDir()
}

// Compile builds the C program src (with attack.h beside it) into dir and returns its path.
func Compile(t testing.TB, src, dir string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc is not installed (scripts/test.sh installs it)")
	}
	out := filepath.Join(dir, strings.TrimSuffix(filepath.Base(src), ".c"))
	if b, err := exec.Command("gcc", "-O1", "-pthread", "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", src, err, b)
	}
	return out
}

// OpenToAll makes dir, and its parent, searchable by everyone, so that nobody can run what is in
// it. For t.TempDir(), whose directories are 0700.
func OpenToAll(t testing.TB, dir string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
