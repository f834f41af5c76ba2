package impl

import (
	"os"
	"path"
	"strconv"

	"golang.org/x/sys/unix"
)

// Hard links of shared files. A link made in the view to a shared regular file copies nothing: the new
// name gets a placeholder whose entry stands for the same shared object, as a renamed one does, so
// that both names show one object, with one inode number, as after link(2) (git clone of a local
// repository checks that). When either name is later copied up, copyUp gives every other name of
// that shared file in the view the copy itself, as a hard link in the private layer: a write
// through one name is seen through all of them. Until then, resolution of any of its names is not
// pure (the kernel would count the links of the shared file alone), and stat adds the view's
// names to the shared file's link count (nlink).

// linkShared gives view path to (whose directory may receive it) the shared regular file at host
// path lower. Other shared objects are copied up first (their copy-up, copyUpObj, does not relink).
func (v *View) linkShared(lower string, to string) error {
	if err := v.addable(path.Dir(to)); err != nil {
		return err
	}
	if err := long.Mknod(v.upperPath(to), unix.S_IFREG|0o600, 0); err != nil {
		return err
	}
	v.setEntry(to, &entry{kind: entryObj, lower: lower})
	v.mu.Lock()
	if v.linked == nil {
		v.linked = map[string]bool{}
	}
	v.linked[lower] = true
	v.hasLinks.Store(true)
	v.mu.Unlock()
	return nil
}

// isLinked reports whether the view gave shared object lower another name.
func (v *View) isLinked(lower string) bool {
	if !v.hasLinks.Load() {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.linked[lower]
}

// nlink is the link count the view shows for shared object lower, whose own count is n: the
// names the view gave it, and not the one it removed.
func (v *View) nlink(lower string, n uint64) uint64 {
	if !v.isLinked(lower) {
		return n
	}
	v.mu.Lock()
	for _, e := range v.entries {
		if e.kind == entryObj && !e.own && e.lower == lower {
			n++
		}
	}
	v.mu.Unlock()
	if orig := v.viewOfLower(lower); v.ns.inTree(orig) {
		if l, _, err := v.locate(orig); err != nil || l.ent != nil || l.host != lower {
			n-- // the view removed or replaced the shared name
		}
	}
	return n
}

// relink gives every other name of shared file lower in the view the private copy at view path p,
// which copyUp just made: names made by link (placeholders standing for lower), and lower's own
// name when the view still shows it unchanged.
func (v *View) relink(p, lower string) error {
	v.mu.Lock()
	if !v.linked[lower] {
		v.mu.Unlock()
		return nil
	}
	var names []string
	for q, e := range v.entries {
		if q != p && e.kind == entryObj && !e.own && e.lower == lower {
			names = append(names, q)
		}
	}
	v.mu.Unlock()
	if orig := v.viewOfLower(lower); orig != p && v.ns.inTree(orig) {
		if l, _, err := v.locate(orig); err == nil && l.ent == nil && l.host == lower {
			if err := v.ensureDir(path.Dir(orig)); err != nil {
				return err
			}
			names = append(names, orig)
		}
	}
	src := v.upperPath(p)
	for _, q := range names {
		if err := linkOver(src, v.upperPath(q)); err != nil {
			return err
		}
		v.setEntry(q, &entry{kind: entryObj, own: true, lower: lower})
	}
	return nil
}

// linkOver makes host path up a link to host path src, in place of whatever up was (a
// placeholder), in one rename.
func linkOver(src, up string) error {
	tmp := path.Dir(up) + "/.fsvirt-link-" + strconv.Itoa(os.Getpid())
	if err := long.Link(src, tmp); err != nil {
		return err
	}
	if err := long.Rename(tmp, up); err != nil {
		long.Unlink(tmp)
		return err
	}
	return nil
}
