package impl

import (
	"path"
	"strconv"

	"golang.org/x/sys/unix"
)

// Shared files with several names on the host (hard links made before the view). Natively a write
// through one name shows through all of them; the view copies a file up by the name that was
// written. So the copy of a shared file whose link count is above one is also linked into the
// invocation's directory, outside the layer, under the shared file's device and inode: the index,
// as overlayfs keeps one with index=on (docs/kernel.md, "Hard links made on the host"). When a
// call next resolves another name of that shared file, the name becomes a link to the copy
// (linkAlias) before the call goes on, as relink does at once for the names the view made. The
// index link keeps the copy's data when the view removes the name it was copied by. Until a view
// copies such a file up, none of this costs anything: resolution looks at link counts only once
// the index has an entry.

// indexCopy records the copy at view path p of the shared file at host path lower, whose status st
// is, when that file has other names on the host. The copy is linked into the index before its
// inode flags are set (an immutable or append-only file takes no new name).
func (v *View) indexCopy(p, lower string, st *unix.Stat_t) error {
	if st.Nlink < 2 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	dir := v.dir + "/index"
	if err := long.Mkdir(dir, 0o700); err != nil && err != unix.EEXIST {
		return err
	}
	idx := dir + "/" + strconv.FormatUint(st.Dev, 10) + "-" + strconv.FormatUint(st.Ino, 10)
	if err := long.Link(v.upperPath(p), idx); err != nil && err != unix.EEXIST {
		return err
	}
	var cst unix.Stat_t
	if err := long.Lstat(idx, &cst); err != nil {
		return err
	}
	v.mu.Lock()
	if v.hostLinks == nil {
		v.hostLinks = map[devIno]*hostLink{}
		v.indexed = map[devIno]*hostLink{}
	}
	hl := &hostLink{idx: idx, lower: lower, claimed: 1}
	v.hostLinks[devIno{st.Dev, st.Ino}] = hl
	v.indexed[devIno{cst.Dev, cst.Ino}] = hl
	v.mu.Unlock()
	v.hasHostLinks.Store(true)
	return nil
}

// hostLink is the index entry idx of the copy of a shared file with several names on the host,
// one of which is lower; claimed counts those of its names that are links to the copy now.
type hostLink struct {
	idx, lower string
	claimed    uint64
}

// aliasOf returns the index entry of the copy of the shared regular file at host path lower, when
// the view copied that file up by another of its names; else "".
func (v *View) aliasOf(lower string) string {
	if !v.hasHostLinks.Load() {
		return ""
	}
	var st unix.Stat_t
	if long.Lstat(lower, &st) != nil || st.Nlink < 2 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return ""
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if hl := v.hostLinks[devIno{st.Dev, st.Ino}]; hl != nil {
		return hl.idx
	}
	return ""
}

// linkAlias makes view path p, a name of the shared file at host path lower, a link to that file's
// copy, whose index entry is idx: from now on p is the view's own, and shares the copy.
func (v *View) linkAlias(p, idx, lower string) error {
	if err := v.ensureDir(path.Dir(p)); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := long.Lstat(lower, &st); err != nil {
		return err
	}
	v.noteOrigin(lower, &st)
	// A copy that is immutable or append-only takes no new name from the kernel.
	if err := withoutFlags(idx, func() error { return linkOver(idx, v.upperPath(p)) }); err != nil {
		return err
	}
	v.setEntry(p, &entry{kind: entryObj, own: true, lower: lower})
	v.mu.Lock()
	if hl := v.hostLinks[devIno{st.Dev, st.Ino}]; hl != nil {
		hl.claimed++
	}
	v.mu.Unlock()
	v.copyGen.Add(1) // descriptors of p's shared file follow it to the copy
	return nil
}

// linkCount is the link count a task sees of the view's object whose device, inode and own link
// count are dev, ino and n: for the copy of a shared file with several names on the host, not its
// index link, and the names of the shared file that are not links to the copy yet (as many as the
// shared file has on the host, less those that are).
func (v *View) linkCount(dev, ino, n uint64) uint64 {
	if !v.hasHostLinks.Load() {
		return n
	}
	v.mu.Lock()
	hl := v.indexed[devIno{dev, ino}]
	var lower string
	var claimed uint64
	if hl != nil {
		lower, claimed = hl.lower, hl.claimed
	}
	v.mu.Unlock()
	if hl == nil {
		return n
	}
	n--
	var st unix.Stat_t
	if long.Lstat(lower, &st) == nil && st.Nlink > claimed {
		n += st.Nlink - claimed
	}
	return n
}
