// Package layer is fsvirt's layer format: an unpacked OCI image layer changeset (what
// `fsvirt run --keep` and `--layer` write) with a record of what each shared object it modifies or
// deletes looked like when the view first copied or removed it, and the apply that writes such a
// layer into a tree, refusing when the tree changed since. docs/layers.md describes the format.
package layer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// RecordName is the record's file name, at the layer's root. moby's and containerd's archive
// code take names that start with ".wh..wh.", other than the opaque marker, for AUFS metadata
// that is not unpacked: a tar of the layer directory stays an image layer that adds no file.
const RecordName = ".wh..wh..fsvirt"

// Format is the record's format version, the "fsvirt_layer" field.
const Format = 1

// Kinds of change, as words.
const (
	Added    = "added"
	Modified = "modified"
	Deleted  = "deleted"
)

// KindWord maps the engine's change byte ('A', 'M', 'D') to its word.
func KindWord(k byte) string {
	switch k {
	case 'A':
		return Added
	case 'M':
		return Modified
	case 'D':
		return Deleted
	}
	return fmt.Sprintf("[bug] change kind %q", k)
}

// KindLetter is the --diff letter of a kind word.
func KindLetter(kind string) byte {
	switch kind {
	case Added:
		return 'A'
	case Modified:
		return 'M'
	}
	return 'D'
}

// Record is the layer's record (RecordName).
type Record struct {
	Format  int      `json:"fsvirt_layer"`
	Changes []Change `json:"changes"`
}

// Change is one path the layer changes, as the view reported it (a path of the view, from "/").
type Change struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
	// Origin is the shared object the change replaces or deletes, as the view first found it:
	// set for modified and deleted paths.
	Origin *Origin `json:"origin,omitempty"`
}

// Origin is what a shared object looked like when the view copied it up or removed it.
type Origin struct {
	Type  string `json:"type"` // file, dir, symlink, fifo, socket, device
	Mode  uint32 `json:"mode"` // permission bits (07777)
	Uid   uint32 `json:"uid"`
	Gid   uint32 `json:"gid"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
	// Dev, Ino and Ctime identify the object on its host: the same file, not touched since.
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Ctime int64  `json:"ctime_ns"`
	// SHA256 is a digest of a regular file's data, a symlink's target or a directory's sorted
	// listing, where it was taken: it recognizes the same object in a copy of the tree.
	SHA256 string `json:"sha256,omitempty"`
	// TreeSHA256, of a directory the view deleted, or removed and made again, is a digest of
	// everything under it (each path's type, mode, size, modification time and symlink target),
	// taken like SHA256: the view may have removed the directory whole (moved away) without
	// recording what it held, which apply must not remove if it changed.
	TreeSHA256 string `json:"tree_sha256,omitempty"`
}

// MaxHashSize bounds the regular files whose data is digested for the record.
const MaxHashSize = 64 << 20

// TypeOf names a stat mode's file type.
func TypeOf(mode uint32) string {
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
	}
	return "device"
}

// OriginOf describes st, the stat of host path p.
func OriginOf(st *unix.Stat_t) *Origin {
	return &Origin{
		Type: TypeOf(st.Mode), Mode: st.Mode & 07777, Uid: st.Uid, Gid: st.Gid, Size: st.Size,
		Mtime: st.Mtim.Nano(), Dev: st.Dev, Ino: st.Ino, Ctime: st.Ctim.Nano(),
	}
}

// sameMeta reports whether o and n agree on what a copy of the tree keeps: type, permission
// bits, owner, size (not of a directory) and modification time.
func sameMeta(o, n *Origin) bool {
	return o.Type == n.Type && o.Mode == n.Mode && o.Uid == n.Uid && o.Gid == n.Gid &&
		(o.Type == "dir" || o.Size == n.Size) && o.Mtime == n.Mtime
}

// sameObject reports whether n, the host's object now, is the object o recorded, unchanged.
func sameObject(o, n *Origin) bool {
	return sameMeta(o, n) && o.Dev == n.Dev && o.Ino == n.Ino && o.Ctime == n.Ctime
}

// Digest fills o.SHA256 from host path p: a regular file up to MaxHashSize, a symlink, a
// directory. Other objects, and larger files, get none.
func (o *Origin) Digest(p string) error {
	h := sha256.New()
	switch o.Type {
	case "file":
		if o.Size > MaxHashSize {
			return nil
		}
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
	case "symlink":
		t, err := os.Readlink(p)
		if err != nil {
			return err
		}
		io.WriteString(h, t)
	case "dir":
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return err
		}
		slices.Sort(names)
		for _, n := range names {
			io.WriteString(h, n+"\x00")
		}
	default:
		return nil
	}
	o.SHA256 = hex.EncodeToString(h.Sum(nil))
	return nil
}

// treeDigest digests everything under directory p (see Origin.TreeSHA256).
func treeDigest(p string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(p, func(q string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(q, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(p, q)
		target := ""
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			target, _ = os.Readlink(q)
		}
		size := st.Size
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			size = 0 // a directory's size is its file system's business, not its content
		}
		fmt.Fprintf(h, "%q %o %d %d %q\n", rel, st.Mode, size, st.Mtim.Nano(), target)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// DigestTree fills o.TreeSHA256 from directory p.
func (o *Origin) DigestTree(p string) error {
	d, err := treeDigest(p)
	if err == nil {
		o.TreeSHA256 = d
	}
	return err
}

// TreeUnchanged reports whether everything under directory p is as o.TreeSHA256 recorded, or
// nothing was recorded.
func (o *Origin) TreeUnchanged(p string) bool {
	if o.TreeSHA256 == "" {
		return true
	}
	d, err := treeDigest(p)
	return err == nil && d == o.TreeSHA256
}

// Unchanged reports whether host path p still holds the object o recorded: the same object
// untouched (device, inode, ctime and metadata), or, in a copy of the tree, an object with the
// same metadata and digest.
func (o *Origin) Unchanged(p string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return false, err
	}
	n := OriginOf(&st)
	if sameObject(o, n) {
		return true, nil
	}
	if !sameMeta(o, n) || o.SHA256 == "" {
		return false, nil
	}
	if err := n.Digest(p); err != nil {
		return false, err
	}
	return n.SHA256 == o.SHA256, nil
}

// ReadRecord reads the record of layer directory dir.
func ReadRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordName))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("layer %s: no %s: not a layer fsvirt kept (fsvirt run --keep or --layer makes one)", dir, RecordName)
	}
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", dir, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("layer %s: %s: %v", dir, RecordName, err)
	}
	if r.Format != Format {
		return nil, fmt.Errorf("layer %s: format %d, this fsvirt reads format %d", dir, r.Format, Format)
	}
	return &r, nil
}

// WriteRecord writes r into layer directory dir.
func WriteRecord(dir string, r *Record) error {
	r.Format = Format
	if r.Changes == nil {
		r.Changes = []Change{}
	}
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, RecordName), append(b, '\n'), 0o644)
}

// Describe is the origin of host path p given st, its stat when the view first copied it up or
// removed it (nil: not recorded, take it now); whole says that applying the layer removes
// what is under it (deleted, or removed and made again): a directory's tree is digested too.
// The digests are taken only while p is still that object: otherwise the data is no longer
// the data of the record.
func Describe(p string, st *unix.Stat_t, whole bool) *Origin {
	var now unix.Stat_t
	err := unix.Lstat(p, &now)
	if st == nil {
		if err != nil {
			return nil
		}
		st = &now
	}
	o := OriginOf(st)
	if err == nil && sameObject(o, OriginOf(&now)) {
		o.Digest(p) // best effort: without a digest, only the same object matches
		if whole && o.Type == "dir" {
			o.DigestTree(p)
		}
	}
	return o
}
