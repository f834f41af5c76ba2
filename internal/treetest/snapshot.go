package treetest

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

	"github.com/fsvirt/fsvirt/internal/layer"
)

// A Level is how much of each entry a comparison takes into account.
type Level int

const (
	// Data is the tree as data: each entry's type, permission bits, owner, xattrs and, by type,
	// a file's size and SHA-256 or a symlink's target.
	Data Level = iota
	// Kept adds what cp -a keeps besides: the link count of what is not a directory, and the
	// modification time. A faithful copy equals its original at this level.
	Kept
	// Exact adds what only leaving the tree alone keeps: inode numbers, change times, the size
	// and link count of directories (the file system's record of names added and removed) and
	// inode flags (FS_IOC_GETFLAGS).
	Exact
)

// An Entry is what a [Snapshot] records of one object.
type Entry struct {
	Type     string // "dir", "file", "symlink", "fifo", "socket", "device" (layer.TypeOf)
	Mode     uint32 // permission bits, set-ID and sticky included
	Uid, Gid uint32
	Nlink    uint64
	Size     int64
	Sum      string // a file's SHA-256, in hex
	Target   string // a symlink's
	Xattrs   string // name="value", sorted, separated by spaces
	Mtime    string // seconds.nanoseconds
	Ctime    string
	Ino      uint64
	Flags    string // FS_IOC_GETFLAGS of a file or directory, "-" where there are none to read
}

// field is one named part of an entry, as diffs name it.
type field struct{ name, value string }

// fields lists what level l takes into account of e, in a fixed order.
func (e Entry) fields(l Level) []field {
	out := []field{{"type", e.Type}, {"mode", fmt.Sprintf("%04o", e.Mode)}, {"owner", fmt.Sprintf("%d:%d", e.Uid, e.Gid)}}
	dir := e.Type == "dir"
	if !dir || l >= Exact {
		out = append(out, field{"size", fmt.Sprint(e.Size)})
	}
	switch e.Type {
	case "file":
		out = append(out, field{"sha256", e.Sum})
	case "symlink":
		out = append(out, field{"target", e.Target})
	}
	out = append(out, field{"xattrs", "{" + e.Xattrs + "}"})
	if l >= Kept {
		if !dir || l >= Exact {
			out = append(out, field{"nlink", fmt.Sprint(e.Nlink)})
		}
		out = append(out, field{"mtime", e.Mtime})
	}
	if l >= Exact {
		out = append(out, field{"ctime", e.Ctime}, field{"ino", fmt.Sprint(e.Ino)}, field{"flags", e.Flags})
	}
	return out
}

// Format renders what level l takes into account of e, on one line.
func (e Entry) Format(l Level) string {
	var parts []string
	for _, f := range e.fields(l) {
		parts = append(parts, f.name+"="+f.value)
	}
	return strings.Join(parts, " ")
}

// Stat records the object at p, without following a symlink there.
func Stat(p string) (Entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return Entry{}, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	e := Entry{
		Type: layer.TypeOf(st.Mode), Mode: st.Mode & 0o7777, Uid: st.Uid, Gid: st.Gid,
		Nlink: uint64(st.Nlink), Size: st.Size, Ino: st.Ino,
		Mtime: fmt.Sprintf("%d.%09d", st.Mtim.Sec, st.Mtim.Nsec),
		Ctime: fmt.Sprintf("%d.%09d", st.Ctim.Sec, st.Ctim.Nsec),
	}
	var err error
	switch e.Type {
	case "file":
		var b []byte
		if b, err = os.ReadFile(p); err == nil {
			sum := sha256.Sum256(b)
			e.Sum = hex.EncodeToString(sum[:])
		}
	case "symlink":
		e.Target, err = os.Readlink(p)
	}
	if err != nil {
		return e, err
	}
	if e.Xattrs, err = xattrs(p); err != nil {
		return e, err
	}
	e.Flags, err = inodeFlags(p, e.Type)
	return e, err
}

// xattrs lists every xattr of p, sorted, as name="value", separated by spaces.
func xattrs(p string) (string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return "", nil
	}
	if err != nil {
		return "", &os.PathError{Op: "llistxattr", Path: p, Err: err}
	}
	var out []string
	for _, name := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return "", &os.PathError{Op: "lgetxattr " + name, Path: p, Err: err}
		}
		out = append(out, fmt.Sprintf("%s=%q", name, val[:m]))
	}
	slices.Sort(out)
	return strings.Join(out, " "), nil
}

// inodeFlags is FS_IOC_GETFLAGS (lsattr) on an O_RDONLY descriptor of p: "-" where there are
// none to read (a symlink, a socket, a file system without them).
func inodeFlags(p, typ string) (string, error) {
	if typ != "file" && typ != "dir" {
		return "-", nil
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	switch {
	case errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EINVAL):
		return "-", nil
	case err != nil:
		return "", &os.PathError{Op: "FS_IOC_GETFLAGS", Path: p, Err: err}
	}
	return fmt.Sprintf("%#x", flags), nil
}

// A Snapshot maps "." (the tree's root) and each path under it, slash-separated, to its entry.
type Snapshot map[string]Entry

// Walk records the tree at dir, dir itself included; it does not follow symlinks.
func Walk(dir string) (Snapshot, error) {
	s := Snapshot{}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		e, err := Stat(p)
		s[filepath.ToSlash(rel)] = e
		return err
	})
	return s, err
}

// Snap is [Walk] for tests: an error fails t.
func Snap(t testing.TB, dir string) Snapshot {
	t.Helper()
	s, err := Walk(dir)
	if err != nil {
		t.Fatalf("snapshot of %s: %v", dir, err)
	}
	return s
}

// Diff lists how after differs from s at level l, sorted by path: "PATH: gone (was a TYPE)",
// "PATH: added (ENTRY)", and one "PATH: FIELD WAS -> NOW" for each field that changed.
func (s Snapshot) Diff(after Snapshot, l Level) []string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(union(s, after))) {
		b, inBefore := s[p]
		a, inAfter := after[p]
		switch {
		case !inAfter:
			out = append(out, fmt.Sprintf("%s: gone (was a %s)", p, b.Type))
		case !inBefore:
			out = append(out, fmt.Sprintf("%s: added (%s)", p, a.Format(l)))
		case a.Type != b.Type: // and with it the fields
			out = append(out, fmt.Sprintf("%s: %s -> %s", p, b.Format(l), a.Format(l)))
		default:
			bf, af := b.fields(l), a.fields(l)
			for i := range bf {
				if bf[i] != af[i] {
					out = append(out, fmt.Sprintf("%s: %s %s -> %s", p, bf[i].name, bf[i].value, af[i].value))
				}
			}
		}
	}
	return out
}

func union(a, b Snapshot) map[string]bool {
	paths := map[string]bool{}
	for p := range a {
		paths[p] = true
	}
	for p := range b {
		paths[p] = true
	}
	return paths
}

// Lines renders s at level l, one "PATH\tENTRY" line a path, sorted by path.
func (s Snapshot) Lines(l Level) []string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(s)) {
		out = append(out, p+"\t"+s[p].Format(l))
	}
	return out
}
