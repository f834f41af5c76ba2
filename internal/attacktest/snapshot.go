package attacktest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// entry is what a snapshot knows of one object, field by field, in the order diffs name them.
type entry struct {
	typ, mode, uid, gid, size, nlink, content, mtime, xattrs, flags string
}

var fieldNames = []string{"type", "mode", "uid", "gid", "size", "nlink", "content", "mtime", "xattrs", "flags"}

func (e entry) fields() []string {
	return []string{e.typ, e.mode, e.uid, e.gid, e.size, e.nlink, e.content, e.mtime, e.xattrs, e.flags}
}

// Snapshot maps each path under a fixture's directory, relative to its parent ("fixture",
// "fixture/root-file"), to what it records.
type Snapshot map[string]entry

// Take records the fixture's tree as it is on the host.
func (f Fixture) Take(t testing.TB) Snapshot {
	t.Helper()
	s := Snapshot{}
	err := filepath.WalkDir(f.Dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(f.Parent, p)
		if err != nil {
			return err
		}
		e, err := record(p)
		s[rel] = e
		return err
	})
	if err != nil {
		t.Fatalf("snapshot of %s: %v", f.Dir, err)
	}
	return s
}

func record(p string) (entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return entry{}, err
	}
	e := entry{
		typ:   fileType(st.Mode),
		mode:  fmt.Sprintf("%#o", st.Mode&0o7777),
		uid:   fmt.Sprint(st.Uid),
		gid:   fmt.Sprint(st.Gid),
		size:  fmt.Sprint(st.Size),
		nlink: fmt.Sprint(st.Nlink),
		mtime: fmt.Sprintf("%d.%09d", st.Mtim.Sec, st.Mtim.Nsec),
	}
	if e.typ == "dir" {
		e.size = "-" // the file system's layout, not the tree's
	}
	var err error
	switch e.typ {
	case "file":
		var b []byte
		if b, err = os.ReadFile(p); err == nil {
			sum := sha256.Sum256(b)
			e.content = "sha256:" + hex.EncodeToString(sum[:8])
		}
	case "symlink":
		e.content, err = os.Readlink(p)
	}
	if err != nil {
		return e, err
	}
	if e.xattrs, err = xattrs(p); err != nil {
		return e, err
	}
	e.flags, err = inodeFlags(p, e.typ)
	return e, err
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char-device"
	case unix.S_IFBLK:
		return "block-device"
	}
	return fmt.Sprintf("type-%#o", mode&unix.S_IFMT)
}

// xattrs lists every xattr of p, sorted, as name=value.
func xattrs(p string) (string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("llistxattr %s: %w", p, err)
	}
	var out []string
	for _, name := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return "", fmt.Errorf("lgetxattr %s %s: %w", p, name, err)
		}
		out = append(out, fmt.Sprintf("%s=%q", name, val[:m]))
	}
	slices.Sort(out)
	return strings.Join(out, ","), nil
}

// inodeFlags is FS_IOC_GETFLAGS (lsattr) on an O_RDONLY descriptor of p: "-" where there are
// none to read (a symlink, a socket, a file system without them).
func inodeFlags(p, typ string) (string, error) {
	if typ != "file" && typ != "dir" {
		return "-", nil
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	switch {
	case errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOTSUP):
		return "-", nil
	case err != nil:
		return "", fmt.Errorf("FS_IOC_GETFLAGS %s: %w", p, err)
	}
	return fmt.Sprintf("%#x", flags), nil
}

// Diff lists how after differs from s: one line per entry gone or added, and per field changed,
// naming the entry and the field.
func (s Snapshot) Diff(after Snapshot) []string {
	var out []string
	paths := map[string]bool{}
	for p := range s {
		paths[p] = true
	}
	for p := range after {
		paths[p] = true
	}
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		b, inBefore := s[p]
		a, inAfter := after[p]
		switch {
		case !inAfter:
			out = append(out, fmt.Sprintf("%s: gone (was a %s)", p, b.typ))
		case !inBefore:
			out = append(out, fmt.Sprintf("%s: added (a %s, mode %s, uid %s)", p, a.typ, a.mode, a.uid))
		default:
			bf, af := b.fields(), a.fields()
			for i := range bf {
				if bf[i] != af[i] {
					out = append(out, fmt.Sprintf("%s: %s %s -> %s", p, fieldNames[i], bf[i], af[i]))
				}
			}
		}
	}
	return out
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
func (f Fixture) Check(t testing.TB, before Snapshot) {
	t.Helper()
	for _, d := range before.Diff(f.Take(t)) {
		t.Errorf("shared tree changed: %s", d)
	}
	for _, s := range f.Strays(t) {
		t.Errorf("created beside the shared tree: %s", s)
	}
}
