package layer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Options say how Apply writes a layer.
type Options struct {
	// Root is the directory the layer's paths are taken from: a change to /etc/motd is made to
	// Root/etc/motd. "" means "/".
	Root string
	// DryRun checks for conflicts and changes nothing.
	DryRun bool
	// NoCheck skips the conflict check: the layer is loaded into a fresh view of the tree it
	// was made over (RunConfig.Layer), whose objects the record may no longer describe.
	NoCheck bool
}

// Conflict is a path whose object in the tree is neither what the layer's view found when it
// first changed it nor what the layer makes of it.
type Conflict struct {
	Path string // in the tree, Root included
	Why  string
}

// ConflictError is Apply's refusal: nothing was changed.
type ConflictError struct {
	Conflicts []Conflict
}

func (e *ConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d path(s) changed in the tree since the layer's view saw them; nothing was applied:", len(e.Conflicts))
	for _, c := range e.Conflicts {
		fmt.Fprintf(&b, " %s (%s);", c.Path, c.Why)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Apply writes the layer in directory dir into the tree at opt.Root: each regular file, symlink
// and FIFO is written beside its place under a temporary name, with its mode, owner (where
// permitted), extended attributes and times, and renamed into place, so that a killed apply
// leaves every file either as it was or as the layer has it; whiteouts remove their name (renamed
// away, then removed), opaque directories lose what the layer does not have; directories get
// their metadata last. Before changing anything, it compares every path the layer modifies or
// deletes with the record (Origin.Unchanged), and every path it adds with nothing being there,
// and returns a *ConflictError naming those that differ; a path that already is what the layer
// makes of it (an earlier apply that was killed) is no conflict. It returns the layer's record.
func Apply(dir string, opt Options) (*Record, error) {
	rec, err := ReadRecord(dir)
	if err != nil {
		return nil, err
	}
	root := opt.Root
	if root == "" {
		root = "/"
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("root %s: %w", root, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("root %s: not a directory", root)
	}
	if err := validate(dir, rec); err != nil {
		return rec, err
	}
	if !opt.NoCheck {
		if cs := check(dir, root, rec); len(cs) > 0 {
			return rec, &ConflictError{Conflicts: cs}
		}
	}
	if opt.DryRun {
		return rec, nil
	}
	a := &applier{layer: dir, root: root, links: map[[2]uint64]string{}, changed: map[string]bool{}, loading: opt.NoCheck}
	for _, c := range rec.Changes {
		if c.Kind != Deleted {
			a.changed[c.Path] = true
		}
	}
	if err := a.dir("/", false); err != nil {
		return rec, err
	}
	// Directories last, deepest first: writing in them changed their times.
	slices.SortFunc(a.metas, func(x, y string) int { return strings.Count(y, "/") - strings.Count(x, "/") })
	for _, p := range a.metas {
		if err := setMeta(path.Join(dir, p), path.Join(root, p), true); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

// validate refuses a layer whose changeset holds a file or whiteout that its record does not
// account for: every one must be a recorded change, or lie in a directory the record adds or
// modifies (the content of a directory moved there). Apply writes nothing the record does not
// list, and loading a layer (Options.NoCheck) nothing outside the trees it checked the record
// against.
func validate(dir string, rec *Record) error {
	changed, deleted := map[string]bool{}, map[string]bool{}
	for _, c := range rec.Changes {
		if c.Kind == Deleted {
			deleted[c.Path] = true
		} else {
			changed[c.Path] = true
		}
	}
	covered := func(p string) bool {
		for a := p; a != "/"; a = path.Dir(a) {
			if changed[a] {
				return true
			}
		}
		return false
	}
	return filepath.WalkDir(dir, func(host string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, host)
		p := path.Join("/", filepath.ToSlash(rel))
		name := d.Name()
		switch {
		case d.IsDir(), p == "/"+RecordName, name == ".wh..wh..opq" && covered(path.Dir(p)):
			return nil
		case strings.HasPrefix(name, ".wh."):
			if gone := path.Join(path.Dir(p), strings.TrimPrefix(name, ".wh.")); deleted[gone] || covered(gone) {
				return nil
			}
		case covered(p):
			return nil
		}
		return fmt.Errorf("layer %s holds %s, which its record (%s) does not list: not applied", dir, p, RecordName)
	})
}

// check returns the conflicts of the layer's changes with the tree at root.
func check(dir, root string, rec *Record) []Conflict {
	var out []Conflict
	for _, c := range rec.Changes {
		host := path.Join(root, c.Path)
		var st unix.Stat_t
		exists := unix.Lstat(host, &st) == nil
		why := ""
		switch c.Kind {
		case Added:
			if exists && !sameAsLayer(dir, c.Path, host) {
				why = "exists in the tree, and the layer adds it"
			}
		case Modified:
			switch {
			case !exists:
				why = "gone from the tree since the view copied it"
			case c.Origin == nil:
				why = "the layer has no record of it"
			default:
				ok, _ := c.Origin.Unchanged(host)
				if (!ok || !c.Origin.TreeUnchanged(host)) && !sameAsLayer(dir, c.Path, host) {
					why = "changed in the tree since the view copied it"
				}
			}
		case Deleted:
			if exists && (c.Origin == nil || !unchanged(c.Origin, host) || !c.Origin.TreeUnchanged(host)) {
				why = "changed in the tree since the view deleted it"
			}
		default:
			why = fmt.Sprintf("unknown change kind %q in the record", c.Kind)
		}
		if why != "" {
			out = append(out, Conflict{Path: host, Why: why})
		}
	}
	// The directories above the changes that the record does not change itself were directories
	// in the view: one that is something else now (a symlink, which apply would follow or
	// replace) is a conflict too.
	recorded := map[string]bool{}
	for _, c := range rec.Changes {
		recorded[c.Path] = true
	}
	seen := map[string]bool{}
	for _, c := range rec.Changes {
		for a := path.Dir(c.Path); a != "/" && !seen[a]; a = path.Dir(a) {
			seen[a] = true
			var st unix.Stat_t
			host := path.Join(root, a)
			if !recorded[a] && unix.Lstat(host, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				out = append(out, Conflict{Path: host, Why: "no longer a directory in the tree (the layer's view had one)"})
			}
		}
	}
	slices.SortFunc(out, func(x, y Conflict) int { return strings.Compare(x.Path, y.Path) })
	return out
}

func unchanged(o *Origin, p string) bool {
	ok, _ := o.Unchanged(p)
	return ok
}

// sameAsLayer reports whether host path p already is what layer dir has at view path v: same
// type, permission bits, owner, and data or symlink target; for a directory that is opaque (it,
// or a directory above it in the layer, has the opaque marker), nothing under it that the
// layer's does not have, which apply would remove.
func sameAsLayer(dir, v, p string) bool {
	l := path.Join(dir, v)
	var ls, hs unix.Stat_t
	if unix.Lstat(l, &ls) != nil || unix.Lstat(p, &hs) != nil {
		return false
	}
	lo, ho := OriginOf(&ls), OriginOf(&hs)
	if lo.Type != ho.Type || lo.Mode != ho.Mode || lo.Uid != ho.Uid || lo.Gid != ho.Gid {
		return false
	}
	if lo.Type == "dir" {
		opaque := false
		for a := v; ; a = path.Dir(a) {
			if _, err := os.Lstat(path.Join(dir, a, ".wh..wh..opq")); err == nil {
				opaque = true
			}
			if a == "/" || opaque {
				break
			}
		}
		return !opaque || noneBeyond(l, p)
	}
	if lo.Size != ho.Size {
		return false
	}
	lo.Size, ho.Size = 0, 0 // a digest of any size
	if lo.Digest(l) != nil || ho.Digest(p) != nil {
		return false
	}
	return lo.SHA256 == ho.SHA256
}

type applier struct {
	layer, root string
	links       map[[2]uint64]string // the first tree path of each hard-linked layer file
	changed     map[string]bool      // paths the record adds or modifies
	metas       []string             // directories whose metadata is the layer's
	loading     bool                 // Options.NoCheck: into a view, whose directories outside its trees are the host's
}

// noneBeyond reports whether host directory p holds nothing, at any depth, that layer
// directory l does not have.
func noneBeyond(l, p string) bool {
	hnames, err := readNames(p)
	if err != nil {
		return false
	}
	for _, n := range hnames {
		var ls, hs unix.Stat_t
		if strings.HasPrefix(n, ".wh.") || unix.Lstat(path.Join(l, n), &ls) != nil {
			return false
		}
		if unix.Lstat(path.Join(p, n), &hs) == nil && hs.Mode&unix.S_IFMT == unix.S_IFDIR &&
			ls.Mode&unix.S_IFMT == unix.S_IFDIR && !noneBeyond(path.Join(l, n), path.Join(p, n)) {
			return false
		}
	}
	return true
}

// tmpSeq numbers the temporary names of this process.
var tmpSeq atomic.Uint64

// tmpName is a name beside host path p, for what is to replace it.
func tmpName(p string) string {
	return path.Join(path.Dir(p), ".fsvirt-apply-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatUint(tmpSeq.Add(1), 10))
}

// dir applies layer directory p (a view path). opaque: the tree's directory keeps nothing the
// layer's does not have.
func (a *applier) dir(p string, opaque bool) error {
	ldir := path.Join(a.layer, p)
	names, err := readNames(ldir)
	if err != nil {
		return err
	}
	opaque = opaque || slices.Contains(names, ".wh..wh..opq")
	if !a.loading {
		if err := removeStale(path.Join(a.root, p)); err != nil {
			return err
		}
	}
	if opaque {
		keep := map[string]bool{}
		for _, n := range names {
			keep[n] = true
		}
		hnames, err := readNames(path.Join(a.root, p))
		if err != nil {
			return err
		}
		for _, n := range hnames {
			if !keep[n] {
				if err := remove(path.Join(a.root, p, n)); err != nil {
					return err
				}
			}
		}
	}
	for _, n := range names {
		child := path.Join(p, n)
		host := path.Join(a.root, child)
		switch {
		case p == "/" && n == RecordName, n == ".wh..wh..opq":
			continue
		case strings.HasPrefix(n, ".wh."):
			if err := remove(path.Join(a.root, p, strings.TrimPrefix(n, ".wh."))); err != nil {
				return err
			}
			continue
		}
		var ls, hs unix.Stat_t
		if err := unix.Lstat(path.Join(a.layer, child), &ls); err != nil {
			return err
		}
		hostErr := unix.Lstat(host, &hs)
		if ls.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := a.object(child, host, &ls); err != nil {
				return fmt.Errorf("apply %s: %w", host, err)
			}
			continue
		}
		switch {
		case hostErr == nil && hs.Mode&unix.S_IFMT == unix.S_IFDIR:
			if a.changed[child] {
				a.metas = append(a.metas, child)
			}
		default:
			if hostErr == nil {
				if err := remove(host); err != nil {
					return err
				}
			}
			if err := unix.Mkdir(host, 0o700); err != nil {
				return fmt.Errorf("apply %s: %w", host, err)
			}
			a.metas = append(a.metas, child)
		}
		if err := a.dir(child, opaque); err != nil {
			return err
		}
	}
	return nil
}

// object puts layer object p (a view path; not a directory, st its stat) at host path host.
func (a *applier) object(p, host string, st *unix.Stat_t) error {
	src := path.Join(a.layer, p)
	tmp := tmpName(host)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := a.links[key]; ok && st.Nlink > 1 {
			if err := os.Link(first, tmp); err != nil {
				return err
			}
			return replace(tmp, host)
		}
		if err := writeFile(src, tmp, st); err != nil {
			os.Remove(tmp)
			return err
		}
		if st.Nlink > 1 {
			a.links[key] = host
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, tmp); err != nil {
			return err
		}
		if err := setMeta(src, tmp, false); err != nil {
			os.Remove(tmp)
			return err
		}
	case unix.S_IFIFO:
		if err := unix.Mkfifo(tmp, 0o600); err != nil {
			return err
		}
		if err := setMeta(src, tmp, false); err != nil {
			os.Remove(tmp)
			return err
		}
	default:
		return nil // sockets and devices are not kept
	}
	return replace(tmp, host)
}

// writeFile writes a copy of regular file src, st its stat, at tmp, durably.
func writeFile(src, tmp string, st *unix.Stat_t) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	if err := setMeta(src, tmp, false); err != nil {
		return err
	}
	return out.Sync() // renamed into place only once its data is on disk
}

// replace renames tmp over host; a directory there is removed first.
func replace(tmp, host string) error {
	err := unix.Rename(tmp, host)
	if err == unix.EISDIR || err == unix.ENOTEMPTY || err == unix.EEXIST {
		if err = remove(host); err == nil {
			err = unix.Rename(tmp, host)
		}
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// removeStale removes from host directory dir what an apply that was killed left there: the
// temporary names of processes that no longer exist.
func removeStale(dir string) error {
	names, err := readNames(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, ".fsvirt-apply-")
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if id, err := strconv.Atoi(pid); err == nil && unix.Kill(id, 0) == unix.ESRCH {
			if err := os.RemoveAll(path.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// remove removes host path p, whatever it is: renamed away first, so that the name goes at once.
func remove(p string) error {
	tmp := tmpName(p)
	if err := unix.Rename(p, tmp); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return os.RemoveAll(tmp)
}

// setMeta gives host path dst the owner (where permitted), extended attributes, permission bits
// (not of a symlink) and times of layer object src.
func setMeta(src, dst string, isDir bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil && err != unix.EPERM {
		return err
	}
	if err := CopyXattrs(src, dst); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, st.Mode&07777); err != nil {
			return err
		}
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// CopyXattrs copies src's extended attributes to dst (neither followed if a symlink). Those dst's
// file system or the caller's rights refuse (trusted.*, security.* as non-root) are left out.
func CopyXattrs(src, dst string) error {
	names, err := listXattrs(src)
	if err != nil {
		return err
	}
	for _, n := range names {
		buf := make([]byte, 1<<16)
		sz, err := unix.Lgetxattr(src, n, buf)
		if err != nil {
			continue
		}
		if err := unix.Lsetxattr(dst, n, buf[:sz], 0); err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EACCES) {
			return fmt.Errorf("setxattr %s %s: %w", dst, n, err)
		}
	}
	return nil
}

func listXattrs(p string) ([]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err == unix.ENOTSUP || sz == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range strings.Split(string(buf[:sz]), "\x00") {
		if n != "" {
			out = append(out, n)
		}
	}
	return out, nil
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

// Diff returns the --diff lines of the layer's changes, taken from root ("" or "/": as recorded).
func Diff(rec *Record, root string) []string {
	var out []string
	for _, c := range rec.Changes {
		p := c.Path
		if root != "" && root != "/" {
			p = filepath.Join(root, p)
		}
		out = append(out, fmt.Sprintf("%c %s", KindLetter(c.Kind), p))
	}
	return out
}
