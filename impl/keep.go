package impl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/fsvirt/fsvirt/internal/layer"
	"golang.org/x/sys/unix"
)

// The kept layer (--keep, RunConfig.Keep) is an OCI image layer changeset, unpacked: applied over
// the shared tree (by an OCI runtime, overlayfs as an upper directory after converting whiteouts,
// or `fsvirt`'s tests' apply), it gives the view's final state.
//
//   - every path the view added or modified, with the view's content, mode, owner and times; a
//     directory that was added or moved there, with everything in it;
//   - the directories above them, with the view's mode, owner and times (not made up: applying
//     the layer must not change /tmp's 1777, say);
//   - an empty file .wh.NAME for every shared NAME the view deleted;
//   - an empty file .wh..wh..opq in a directory the view deleted and made again: nothing of the
//     shared directory's listing shows through it.
//
// Sockets and device nodes are not kept.
//
// Beside the changeset, at its root, the record (layer.RecordName) lists the changes and, for each
// shared object modified or deleted, what it was when the view first copied it up or removed it,
// which apply compares with the tree before it changes anything (docs/layers.md).

// checkKeepDir refuses a directory to keep a layer in that exists and is not empty, before the
// command runs: merging into it would mix layers, and a refusal after the run would lose the
// command's work.
func checkKeepDir(dir string) error {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keep directory %s: %w", dir, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		return fmt.Errorf("keep directory %s: not a directory", dir)
	}
	if _, err := f.Readdirnames(1); err != io.EOF {
		return fmt.Errorf("keep directory %s exists and is not empty", dir)
	}
	return nil
}

// keep writes the view's changes to dst (see above), and their record (layer.RecordName). prev,
// if not nil, is the record of the layer the view started from (RunConfig.Layer): what it says
// of a shared object was seen first.
func (v *View) keep(dst string, prev *layer.Record) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := v.writeRecord(dst, prev); err != nil {
		return err
	}
	made := map[string]bool{"/": true} // view directories made in dst, to get their times at the end
	parents := func(p string) error {
		for _, a := range ancestors(path.Dir(p)) {
			if made[a] {
				continue
			}
			if err := v.copyView(a, path.Join(dst, a), false); err != nil {
				return err
			}
			made[a] = true
		}
		return nil
	}
	v.mu.Lock()
	var opaque []string
	for p := range v.removed {
		if e := v.entries[p]; e != nil && e.kind == entryDir {
			opaque = append(opaque, p)
		}
	}
	v.mu.Unlock()
	links := map[devIno]string{} // regular files with several names in the view, kept once
	for _, c := range v.Changes() {
		out := path.Join(dst, c.Path)
		if c.Kind == 'D' {
			if _, st, err := v.locate(path.Dir(c.Path)); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue // its directory is gone too, or now something else: the change there covers it
			}
		}
		if err := parents(c.Path); err != nil {
			return err
		}
		if c.Kind == 'D' {
			if err := os.WriteFile(path.Join(path.Dir(out), ".wh."+path.Base(out)), nil, 0o644); err != nil {
				return err
			}
			continue
		}
		if linked, err := v.keepLink(c.Path, out, links); err != nil || linked {
			if err != nil {
				return err
			}
			continue
		}
		if err := v.copyView(c.Path, out, true); err != nil {
			return err
		}
		made[c.Path] = true
	}
	for _, p := range opaque {
		if err := os.WriteFile(path.Join(dst, p, ".wh..wh..opq"), nil, 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// Directories last: adding their entries changed their times.
	for p := range made {
		if p == "/" {
			continue
		}
		if _, st, err := v.locate(p); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			long.UtimesNanoAt(unix.AT_FDCWD, path.Join(dst, p), []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
	return nil
}

// ancestors returns the directories from "/" down to p, "/" excluded.
func ancestors(p string) []string {
	var out []string
	for a := p; a != "/" && a != "."; a = path.Dir(a) {
		out = append([]string{a}, out...)
	}
	return out
}

// keepLink keeps view path p, a regular file, as a hard link to the kept copy of another of its
// names, where there is one (links, by the object's device and inode in the view); else it notes
// out as that copy, for the names that come later.
func (v *View) keepLink(p, out string, links map[devIno]string) (bool, error) {
	l, st, err := v.locate(p)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil
	}
	if l.ent == nil || !l.ent.own { // a shared file: several names only if the view linked it
		if st.Nlink = v.nlink(l.host, st.Nlink); st.Nlink < 2 {
			return false, nil
		}
	} else if st.Nlink < 2 {
		return false, nil
	}
	key := devIno{st.Dev, st.Ino}
	if first, ok := links[key]; ok {
		os.Remove(out) // copied already with a directory the view added
		return true, os.Link(first, out)
	}
	links[key] = out
	return false, nil
}

// writeRecord writes the record of the view's changes into dst.
func (v *View) writeRecord(dst string, prev *layer.Record) error {
	seen := map[string]*layer.Origin{}
	if prev != nil {
		for _, c := range prev.Changes {
			if c.Origin != nil {
				seen[c.Path] = c.Origin
			}
		}
	}
	changes := v.Changes()
	rec := &layer.Record{Changes: make([]layer.Change, 0, len(changes))}
	for _, c := range changes {
		rc := layer.Change{Kind: layer.KindWord(c.Kind), Path: c.Path}
		if c.Kind != 'A' {
			if rc.Origin = seen[c.Path]; rc.Origin == nil {
				v.mu.Lock()
				st, ok := v.origins[c.Path]
				// Deleted, or removed and made again (opaque): apply removes what is under it.
				whole := c.Kind == 'D' || v.removed[c.Path]
				v.mu.Unlock()
				if ok {
					rc.Origin = layer.Describe(c.Path, &st, whole)
				} else {
					rc.Origin = layer.Describe(c.Path, nil, whole)
				}
			}
		}
		rec.Changes = append(rec.Changes, rc)
	}
	return layer.WriteRecord(dst, rec)
}
