package impl

import (
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/fsvirt/fsvirt/internal/layer"
	"golang.org/x/sys/unix"
)

// The private layer mirrors view paths under View.upper. What the view holds at a path is recorded
// in View.entries; a path without an entry is whatever the shared tree holds at the lower path of
// its nearest recorded ancestor (the same path, unless a directory was renamed).
//
// A directory is in one of four states: untouched, which has no entry, or one of the three that
// its entry's listing field records:
//
//   - untouched: no entry; its listing and metadata are the shared directory's.
//   - mirrored (listMirror): an entry with an upper directory that holds only its changed children
//     (copied-up files, mirrored subdirectories); its listing and metadata are still the lower
//     directory's, which may live at another path (a renamed directory keeps its lower path).
//   - partial (listPartial): the view added children to it and removed none of the shared ones.
//     Its upper directory holds the view's metadata, a mirror of every shared subdirectory (so
//     that its link count is right), and the children the view made or changed; its listing is
//     that of the upper directory and of the lower one together. Shared files have no
//     placeholders yet.
//   - materialized (listMaterialized): its upper directory holds the complete listing. Children
//     the invocation did not change are placeholders of the right file type that stand for a
//     lower object (their entry has own == false), so the kernel lists the directory, and renames
//     and unlinks in it, natively. Deleting a child is removing it from the upper directory: there
//     are no whiteouts. The upper directory's metadata is the view's.
//
// A new name in a directory (create, link, symlink, mkdir, mknod, the target of a rename) makes it
// partial at least (addable). Removing a name that the shared directory also holds (unlink, rmdir,
// the source of a rename), replacing one, and opening the directory, which lets a task list it,
// materialize it first (prepareRemove, materialize): a directory of many shared files that a
// function only adds to, and removes its own files from, never costs a placeholder per file. A
// change to a child's data or metadata copies the child up, which mirrors its ancestors.

// entryKind is what the private layer holds at a view path.
type entryKind uint8

const (
	entryDir entryKind = iota + 1
	entryObj           // anything else: a regular file, symlink, FIFO, socket or device
)

// listing is where a directory entry's listing comes from: the states above. One field, so that
// no entry can be in two of them.
type listing uint8

const (
	listMirror       listing = iota // mirrored; also the value of every entry that is not a directory
	listPartial                     // partial
	listMaterialized                // materialized
)

type entry struct {
	kind entryKind
	// own: the upper object is the view's object (created, or copied up). Otherwise the upper object
	// is a placeholder (in a materialized directory) or a mirror directory, standing for lower.
	own bool
	// lower is the host path of the shared object the entry stands for, "" when there is none.
	lower string
	// listing is a directory's state (see above).
	listing listing
}

// viewsOwn reports whether the upper object is what the view shows at the entry's path, its
// metadata included: an object the view made or copied up, or a directory it materialized or added
// to. Otherwise the upper object is a placeholder or a mirror, and the lower one speaks for it.
func (e *entry) viewsOwn() bool { return e.own || e.listing != listMirror }

// loc is where a view path's object is.
type loc struct {
	host  string // host path to stat, read, or open
	upper bool   // host is in the private layer (or an entry is on the view path)
	ent   *entry // the entry at the path, if any
}

// lowerOf is the shared directory that backs view directory p's listing, for a p that exists
// and has no entry of its own, or "" when no shared directory does.
func (v *View) lowerOf(p string) string {
	for a := p; ; a = path.Dir(a) {
		if e := v.entries[a]; e != nil {
			if e.listing == listMaterialized && a != p {
				return "" // every child of a materialized directory has an entry
			}
			if e.lower == "" {
				return ""
			}
			return e.lower + p[len(a):]
		}
		if a == "/" {
			return p
		}
	}
}

// locate looks view path p up, given that its parent directory exists in the view. It fails as the
// kernel's lookup of the name does: ENOENT, or ENAMETOOLONG for a name longer than NAME_MAX.
func (v *View) locate(p string) (loc, unix.Stat_t, error) {
	var st unix.Stat_t
	v.mu.Lock()
	e := v.entries[p]
	var lower string
	if e == nil && p != "/" {
		if pe := v.entries[path.Dir(p)]; pe == nil || pe.listing != listMaterialized {
			lower = path.Join(v.lowerOf(path.Dir(p)), path.Base(p))
		}
	} else if e == nil {
		lower = "/"
	}
	v.mu.Unlock()
	if e != nil {
		l := loc{upper: true, ent: e}
		switch {
		case e.viewsOwn():
			l.host = v.upperPath(p)
		default: // a placeholder or a mirrored directory: the shared object speaks for it
			l.host = e.lower
		}
		err := long.Lstat(l.host, &st)
		if err == nil && e.viewsOwn() {
			sharedOwner(e, &st.Uid, &st.Gid)
		}
		return l, st, err
	}
	if !strings.HasPrefix(lower, "/") { // no shared directory backs the parent
		if len(path.Base(p)) > unix.NAME_MAX {
			// The kernel looks the name up in the upper directory, whose file system refuses it.
			return loc{}, st, unix.ENAMETOOLONG
		}
		return loc{}, st, unix.ENOENT
	}
	err := long.Lstat(lower, &st)
	return loc{host: lower}, st, err
}

// sharedOwner sets *uid and *gid, the owner on disk of entry e's own upper object, to the owner
// the view shows for it where that differs: the owner of the shared object e stands for, when the
// supervisor is not root and could not give it to its copy. Such a supervisor cannot chown (copyMeta leaves
// the copy its own), and its callers, with its credentials and no_new_privs, cannot have given
// another user's object to themselves: an upper object of the supervisor's whose shared original
// is another user's is a copy that kept the supervisor's uid. (A root supervisor chowns its
// copies.) The shared object's owner now is taken: a change on the host after the copy shows.
func sharedOwner(e *entry, uid, gid *uint32) {
	me := selfIDs()
	if me.uid == 0 || e == nil || e.lower == "" || *uid != uint32(me.uid) {
		return
	}
	var st unix.Stat_t
	if long.Lstat(e.lower, &st) == nil && st.Uid != uint32(me.uid) {
		*uid, *gid = st.Uid, st.Gid
	}
}

// setEntry records e at p. The caller holds no lock.
func (v *View) setEntry(p string, e *entry) {
	v.mu.Lock()
	if v.entries == nil {
		v.entries = map[string]*entry{}
	}
	v.entries[p] = e
	v.mu.Unlock()
}

// goneFromRemadeLocked adds to out a deletion for every child of the shared directory p that the
// directory the view made in its place does not have, and the same for the subdirectories it made
// again. Preconditions: v.mu is held.
func (v *View) goneFromRemadeLocked(p string, out []Change) []Change {
	names, _ := readDirNames(p)
	for _, name := range names {
		c := path.Join(p, name)
		if v.ns.hidden(c) {
			continue
		}
		e := v.entries[c]
		var st unix.Stat_t
		switch {
		case e == nil:
			out = append(out, Change{Kind: 'D', Path: c})
		case e.kind == entryDir && e.lower != c && long.Lstat(c, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
			out = v.goneFromRemadeLocked(c, out)
		}
	}
	return out
}

// noteRemoved records that the view removes the name p, before its entries go: a name that
// stood for the shared object at the same path is a deletion Changes reports.
func (v *View) noteRemoved(p string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e := v.entries[p]; e != nil && e.lower == p || e == nil && v.ns.inTree(p) {
		if v.removed == nil {
			v.removed = map[string]bool{}
		}
		v.removed[p] = true
		var st unix.Stat_t
		if long.Lstat(p, &st) == nil {
			v.noteOriginLocked(p, &st)
		}
	}
}

// noteOriginLocked records st as what shared object host was when the view first copied it up
// or removed it, for the kept layer's record. Preconditions: v.mu is held.
func (v *View) noteOriginLocked(host string, st *unix.Stat_t) {
	if _, ok := v.origins[host]; ok {
		return
	}
	if v.origins == nil {
		v.origins = map[string]unix.Stat_t{}
	}
	v.origins[host] = *st
}

// noteOrigin is noteOriginLocked for a caller that does not hold v.mu.
func (v *View) noteOrigin(host string, st *unix.Stat_t) {
	v.mu.Lock()
	v.noteOriginLocked(host, st)
	v.mu.Unlock()
}

// dropTree forgets the entries at p and below.
func (v *View) dropTree(p string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for q := range v.entries {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(v.entries, q)
		}
	}
}

// moveTree re-keys the entries at from and below to to. With exchange, the entries at to move to
// from at the same time.
func (v *View) moveTree(from, to string, exchange bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	under := func(q, p string) (string, bool) {
		if q == p {
			return "", true
		}
		if rest, ok := strings.CutPrefix(q, p+"/"); ok {
			return "/" + rest, true
		}
		return "", false
	}
	moved := map[string]*entry{}
	for q, e := range v.entries {
		if rest, ok := under(q, from); ok {
			moved[to+rest] = e
			delete(v.entries, q)
		} else if rest, ok := under(q, to); ok {
			if exchange {
				moved[from+rest] = e
			}
			delete(v.entries, q)
		}
	}
	for q, e := range moved {
		v.entries[q] = e
	}
}

// ensureDir gives view directory p an upper directory, mirroring it (and its ancestors) from the
// shared tree with their mode, owner and times when they have none yet.
func (v *View) ensureDir(p string) error {
	v.mu.Lock()
	e := v.entries[p]
	v.mu.Unlock()
	if e != nil {
		if e.kind != entryDir {
			return unix.ENOTDIR
		}
		return nil
	}
	if p != "/" {
		if err := v.ensureDir(path.Dir(p)); err != nil {
			return err
		}
	}
	l, st, err := v.locate(p)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.ENOTDIR
	}
	up := v.upperPath(p)
	if p == "/" { // the invocation's first change: its directory in the store comes to be
		if v.readOnly {
			return unix.EROFS
		}
		if err := long.Mkdir(v.dir, 0o700); err != nil && err != unix.EEXIST {
			return err
		}
		if l := v.layerLimits(); l.set() {
			if err := mountLimits(v.dir, l); err != nil {
				long.Rmdir(v.dir)
				return err
			}
		}
		v.created.Store(true)
	}
	if err := long.Mkdir(up, 0o700); err != nil && err != unix.EEXIST {
		return err
	}
	if err := copyMeta(l.host, up, &st); err != nil {
		return err
	}
	v.setEntry(p, &entry{kind: entryDir, lower: l.host})
	return nil
}

// keepMeta gives the kept copy p of the view's object at host path src the view's owner (where
// the supervisor may), extended attributes, permission bits and times; a symlink its owner,
// extended attributes and times.
func keepMeta(src, p string, st *unix.Stat_t) error {
	if err := long.Lchown(p, int(st.Uid), int(st.Gid)); err != nil && err != unix.EPERM {
		return err
	}
	if err := layer.CopyXattrs(src, p); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := long.Chmod(p, st.Mode&07777); err != nil {
			return err
		}
	}
	return long.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// copyMeta gives host object p (not a symlink) st's permission bits, owner and times, and, given
// the shared object src, its extended attributes and, for a directory, its inode flags.
func copyMeta(src, p string, st *unix.Stat_t) error {
	if err := long.Lchown(p, int(st.Uid), int(st.Gid)); err != nil && err != unix.EPERM {
		return err
	}
	if src != "" {
		if err := copyXattrs(src, p); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			copyDirFlags(src, p)
		}
	}
	if err := long.Chmod(p, st.Mode&07777); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return long.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// materialize makes view directory p's upper directory list all of its children, creating a
// placeholder for each shared child it does not hold yet.
func (v *View) materialize(p string) error {
	if err := v.ensureDir(p); err != nil {
		return err
	}
	v.mu.Lock()
	e := v.entries[p]
	v.mu.Unlock()
	if e.listing == listMaterialized {
		return nil
	}
	up := v.upperPath(p)
	var st unix.Stat_t
	if err := long.Lstat(up, &st); err != nil {
		return err
	}
	if e.lower != "" {
		if err := v.placeholders(p, e.lower, up, false); err != nil {
			return err
		}
	}
	// The upper directory was a placeholder or a mirror, and creating placeholders changed its
	// times: from now on its metadata is the view's, which is the shared directory's.
	if e.lower != "" && !e.own && e.listing != listPartial {
		if err := long.Lstat(e.lower, &st); err != nil {
			return err
		}
		// A placeholder or a mirror made beside another directory's change has no xattrs yet.
		if err := copyMeta(e.lower, up, &st); err != nil {
			return err
		}
	} else if err := long.UtimesNanoAt(unix.AT_FDCWD, up, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	v.mu.Lock()
	e.listing = listMaterialized
	v.mu.Unlock()
	v.copyGen.Add(1)
	return nil
}

// addable makes view directory p ready to take a new child, when the store's file system has room
// for it (mayGrow): partial (see above), unless it is materialized already. Its shared
// subdirectories are mirrored, its other shared children are not.
func (v *View) addable(p string) error {
	if err := v.mayGrow(); err != nil {
		return err
	}
	return v.addableDir(p)
}

// addableDir is addable whatever the free space: for a rename, which adds no object.
func (v *View) addableDir(p string) error {
	if err := v.ensureDir(p); err != nil {
		return err
	}
	v.mu.Lock()
	e := v.entries[p]
	done := e.listing != listMirror
	v.mu.Unlock()
	switch {
	case done:
		return nil
	case e.lower == "" || e.own:
		return v.materialize(p)
	}
	up := v.upperPath(p)
	if err := v.placeholders(p, e.lower, up, true); err != nil {
		return err
	}
	// From now on the directory's metadata is the view's: the shared directory's, with the times
	// the mirrors just changed put back, and its extended attributes, which a mirror made as the
	// child of another directory did not get (nor the default ACL the kernel gives what is made
	// in it).
	var st unix.Stat_t
	if err := long.Lstat(e.lower, &st); err != nil {
		return err
	}
	if err := copyMeta(e.lower, up, &st); err != nil {
		return err
	}
	v.mu.Lock()
	e.listing = listPartial
	v.mu.Unlock()
	v.copyGen.Add(1)
	return nil
}

// hideStore readies view directory p, whose listing would be the shared directory that holds the
// user's store root, to be listed without it, and reports whether it did: p becomes partial (see
// above), so that an open of it materializes it first, and materialize leaves the store root out,
// as if the view had removed it (but Changes does not report it). The resolver calls it when a
// resolution ends at p, not when a walk passes through p. Outside the trees, and in a view that
// cannot change (the fence), the listing stays the kernel's, store root included: lookups in it
// fail all the same.
func (v *View) hideStore(p string) (bool, error) {
	if v.readOnly || !v.ns.inTree(p) {
		return false, nil
	}
	return true, v.addable(p)
}

// prepareRemove makes the directory of view path p ready for p's removal (or its move away). A
// name the shared directory also holds must leave the listing, which needs the complete one
// (materialize); a name only the view made, in a partial directory, can simply go.
func (v *View) prepareRemove(p string) error {
	dir := pathDir(p)
	v.mu.Lock()
	e := v.entries[dir]
	partial := e != nil && e.listing == listPartial
	v.mu.Unlock()
	if partial {
		var st unix.Stat_t
		if err := long.Lstat(path.Join(e.lower, path.Base(p)), &st); err == unix.ENOENT {
			return nil
		}
	}
	return v.materialize(dir)
}

// isPartial reports whether e is a partial directory's entry.
func (v *View) isPartial(e *entry) bool {
	if e == nil {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return e.listing == listPartial
}

// placeholders puts in upper directory up a placeholder for each child of shared directory lower
// (each subdirectory only, if dirsOnly) that view directory p holds no entry for. Both directories
// are walked to once: the placeholders are made relative to a descriptor of up, their types taken
// from the listing (d_type), so that a directory of n files costs about n syscalls, not 3n path
// walks.
func (v *View) placeholders(p, lower, up string, dirsOnly bool) error {
	lfd, err := long.Open(lower, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ld := os.NewFile(uintptr(lfd), lower)
	defer ld.Close()
	ents, err := ld.ReadDir(-1) // lstat's an entry whose d_type is DT_UNKNOWN
	if err != nil {
		return err
	}
	ufd, err := long.Open(up, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ufd)
	for _, de := range ents {
		if dirsOnly && !de.IsDir() {
			continue
		}
		name := de.Name()
		child := path.Join(p, name)
		v.mu.Lock()
		has := v.entries[child] != nil
		v.mu.Unlock()
		if has || v.ns.hidden(path.Join(lower, name)) { // the store root is in no listing
			continue
		}
		kind, err := placeholder(lfd, ufd, name, de.Type())
		if err != nil {
			return err
		}
		v.setEntry(child, &entry{kind: kind, lower: path.Join(lower, name)})
	}
	return nil
}

// placeholder creates name in directory ufd, an object of the type t of name in directory lfd
// that stands for it in a listing: an empty directory or file, the same symlink, a FIFO or socket
// node. Devices become empty files.
func placeholder(lfd, ufd int, name string, t os.FileMode) (entryKind, error) {
	switch {
	case t&os.ModeDir != 0:
		return entryDir, unix.Mkdirat(ufd, name, 0o700)
	case t&os.ModeSymlink != 0:
		target, err := readlinkat(lfd, name)
		if err != nil {
			return 0, err
		}
		return entryObj, unix.Symlinkat(target, ufd, name)
	case t&os.ModeNamedPipe != 0:
		return entryObj, unix.Mknodat(ufd, name, unix.S_IFIFO|0o600, 0)
	case t&os.ModeSocket != 0:
		return entryObj, unix.Mknodat(ufd, name, unix.S_IFSOCK|0o600, 0)
	}
	return entryObj, unix.Mknodat(ufd, name, unix.S_IFREG|0o600, 0)
}

func readDirNames(dir string) ([]string, error) {
	fd, err := long.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	return f.Readdirnames(-1)
}

// copyUpObj makes the object at view path p the view's own, so that its data or metadata can
// change: a regular file is copied up (its data too unless truncate), a symlink, FIFO or socket
// recreated, a directory materialized.
func (v *View) copyUpObj(p string, truncate bool) error {
	l, st, err := v.locate(p)
	if err != nil {
		return err
	}
	// What is the view's own already changes where it is, whatever the free space (mayGrow); a
	// regular file's copy-up checks for itself (copyUp).
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		if l.ent == nil || l.ent.listing != listMaterialized {
			if err := v.mayGrow(); err != nil {
				return err
			}
		}
	case l.ent != nil && l.ent.own:
		return nil
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		if err := v.mayGrow(); err != nil {
			return err
		}
	}
	if l.ent == nil {
		v.noteOrigin(l.host, &st)
	} else if l.ent.lower != "" { // l.host may be the upper directory
		var lst unix.Stat_t
		if long.Lstat(l.ent.lower, &lst) == nil {
			v.noteOrigin(l.ent.lower, &lst)
		}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := v.materialize(p); err != nil {
			return err
		}
		v.mu.Lock()
		v.entries[p].own = true // its metadata is about to become the view's own
		v.mu.Unlock()
		v.copyGen.Add(1)
		return nil
	case unix.S_IFREG:
		return v.copyUp(p, l.host, truncate)
	}
	if err := v.ensureDir(path.Dir(p)); err != nil {
		return err
	}
	up := v.upperPath(p)
	if l.ent != nil { // a placeholder: replace it
		if err := long.Unlink(up); err != nil {
			return err
		}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		target, err := readlink(l.host)
		if err != nil {
			return err
		}
		if err := long.Symlink(target, up); err != nil {
			return err
		}
		if err := copyXattrs(l.host, up); err != nil {
			return err
		}
		if err := long.Lchown(up, int(st.Uid), int(st.Gid)); err != nil && err != unix.EPERM {
			return err
		}
		err = long.UtimesNanoAt(unix.AT_FDCWD, up, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			return err
		}
	default:
		if err := long.Mknod(up, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
		if err := copyMeta(l.host, up, &st); err != nil {
			return err
		}
	}
	v.setEntry(p, &entry{kind: entryObj, own: true, lower: l.host})
	v.copyGen.Add(1)
	v.countCopyUp(0)
	return nil
}

// Changes lists the paths whose object in the view differs from the shared tree's at the same
// path, sorted: 'A' added (nothing there in the shared tree, or moved there), 'M' modified (the
// view's own copy), 'D' deleted (in the shared tree, gone from the view).
func (v *View) Changes() []Change {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []Change
	var st unix.Stat_t
	for p, e := range v.entries {
		if !e.own && (e.lower == p || v.movedWithParent(p, e)) {
			// Unchanged, and not looked at: a lookup of a mirror entry on a file system whose
			// server has stopped (slowfs.go) would hold up the end of the run.
			continue
		}
		if long.Lstat(p, &st) == nil && v.ns.inTree(p) && !v.ns.hidden(p) {
			out = append(out, Change{Kind: 'M', Path: p})
		} else {
			out = append(out, Change{Kind: 'A', Path: p})
		}
	}
	// What the view removed of the shared tree, and has not made again: not what the host has in
	// a directory the view changed, which the host may have added to since.
	for p := range v.removed {
		if long.Lstat(p, &st) != nil || !v.ns.inTree(p) || v.ns.hidden(p) {
			continue
		}
		switch {
		case v.entries[p] == nil:
			out = append(out, Change{Kind: 'D', Path: p})
		case st.Mode&unix.S_IFMT == unix.S_IFDIR && v.entries[p].kind == entryDir && (v.entries[p].lower != p || v.entries[p].listing == listMaterialized):
			// Removed, then made again; or a shared directory renamed away and back, which lists
			// the shared names it still has once materialized, and not before
			// (they all show through then).
			out = v.goneFromRemadeLocked(p, out)
		}
	}
	// A shared file the view gave another name (linkShared) has a link more: modified.
	for lower := range v.linked {
		if orig := v.viewOfLowerLocked(lower); orig == lower && v.entries[orig] == nil && !v.removed[orig] && v.ns.inTree(orig) && long.Lstat(orig, &st) == nil {
			out = append(out, Change{Kind: 'M', Path: orig})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	// A deletion can be found twice: the name removed, and missing from the directory made again.
	return slices.CompactFunc(out, func(a, b Change) bool { return a == b })
}

// movedWithParent reports that placeholder e at p only moved because an ancestor directory did:
// the ancestor is reported, not every object under it.
func (v *View) movedWithParent(p string, e *entry) bool {
	parent := v.entries[path.Dir(p)]
	return parent != nil && parent.lower != "" && path.Join(parent.lower, path.Base(p)) == e.lower
}

// copyView copies the view's object at p to host path out; a directory with its listing when
// recursive.
func (v *View) copyView(p, out string, recursive bool) error {
	l, st, err := v.locate(p)
	if err != nil {
		return err
	}
	if v.hides(l.host) { // the store root, listed by a shared directory
		return nil
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.Mkdir(out, 0o700); err != nil && !os.IsExist(err) {
			return err
		}
		if recursive && v.isPartial(l.ent) {
			if err := v.materialize(p); err != nil {
				return err
			}
		}
		if recursive {
			names, err := readDirNames(l.host) // the upper directory when materialized, else the shared one
			if err != nil {
				return err
			}
			for _, name := range names {
				child := path.Join(p, name)
				if err := v.copyView(child, path.Join(out, name), true); err != nil {
					return err
				}
			}
		}
		return keepMeta(l.host, out, &st)
	case unix.S_IFREG:
		src, err := long.Open(l.host, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(src)
		dst, err := long.Open(out, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC|unix.O_NOFOLLOW, st.Mode&07777)
		if err != nil {
			return err
		}
		defer unix.Close(dst)
		if _, err := copyData(dst, src, st.Size); err != nil {
			return err
		}
		return keepMeta(l.host, out, &st)
	case unix.S_IFLNK:
		target, err := readlink(l.host)
		if err != nil {
			return err
		}
		os.Remove(out)
		if err := long.Symlink(target, out); err != nil {
			return err
		}
		return keepMeta(l.host, out, &st)
	case unix.S_IFIFO:
		os.Remove(out)
		if err := unix.Mkfifo(out, 0o600); err != nil {
			return err
		}
		return keepMeta(l.host, out, &st)
	}
	return nil // sockets and devices are not kept
}
