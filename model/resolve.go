package model

import (
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// maxSymlinks is the kernel's MAXSYMLINKS: the 41st symlink fails with ELOOP.
const maxSymlinks = 40

// walk is where a path led.
type walk struct {
	dir      *node  // the directory holding the final component
	name     string // the final component; "" when the path is "/", "." or ".." for dots
	node     *node  // what the path names; nil when dir has no entry name
	trailing bool   // the path ends in '/'
}

// dot says the path ends in ".", ".." or is "/": there is no name to create
// or remove.
func (w walk) dot() bool { return w.name == "" || w.name == "." || w.name == ".." }

// resolver resolves paths in one invocation's view, as the kernel's path walk
// does, counting symlinks across nested targets.
type resolver struct {
	iv    *invocation
	links int
}

// start returns the directory a relative path starts from.
func (iv *invocation) start(dirfd fsvirt.Handle, unsafePath string) (*node, syscall.Errno) {
	switch {
	case strings.HasPrefix(unsafePath, "/"):
		return iv.root, 0
	case dirfd == fsvirt.AtCWD:
		return iv.cwd, 0
	}
	f := iv.fd(dirfd)
	switch {
	case f == nil:
		return nil, unix.EBADF
	case f.node.typ != fsvirt.Dir:
		return nil, unix.ENOTDIR
	}
	return f.node, 0
}

// at resolves unsafePath from dirfd; see [resolver.lookup].
func (iv *invocation) at(dirfd fsvirt.Handle, unsafePath string, follow bool) (walk, syscall.Errno) {
	dir, errno := iv.start(dirfd, unsafePath)
	if errno != 0 {
		return walk{}, errno
	}
	r := resolver{iv: iv}
	return r.lookup(dir, unsafePath, follow)
}

// parentAt walks all but the final component of unsafePath from dirfd; see
// [resolver.parent].
func (iv *invocation) parentAt(dirfd fsvirt.Handle, unsafePath string) (walk, syscall.Errno) {
	dir, errno := iv.start(dirfd, unsafePath)
	if errno != 0 {
		return walk{}, errno
	}
	r := resolver{iv: iv}
	return r.parent(dir, unsafePath)
}

// parent walks all but the final component of unsafePath from dir, following
// every symlink on the way, and looks the final one up without following it.
func (r *resolver) parent(dir *node, unsafePath string) (walk, syscall.Errno) {
	if unsafePath == "" {
		return walk{}, unix.ENOENT
	}
	if strings.HasPrefix(unsafePath, "/") {
		dir = r.iv.root
	}
	comps := strings.FieldsFunc(unsafePath, func(c rune) bool { return c == '/' })
	w := walk{trailing: strings.HasSuffix(unsafePath, "/") && len(comps) > 0}
	if len(comps) == 0 {
		w.dir, w.node = r.iv.root, r.iv.root
		return w, 0
	}
	for _, c := range comps[:len(comps)-1] {
		var errno syscall.Errno
		if dir, errno = r.step(dir, c); errno != 0 {
			return walk{}, errno
		}
	}
	if !r.iv.may(dir, unix.X_OK) { // may_lookup, before every component
		return walk{}, unix.EACCES
	}
	w.dir, w.name = dir, comps[len(comps)-1]
	switch w.name {
	case ".", "..":
		if w.name == "." {
			w.node = dir
		} else {
			w.node = r.dotdot(dir)
		}
		if w.node.dead {
			// The engine names a removed directory by the path it had, which no longer resolves:
			// it answers ENOENT where the kernel still finds the directory (README, limits).
			r.iv.undefined = "a path that ends at a removed directory"
		}
	default:
		w.node = dir.entries[w.name]
	}
	return w, 0
}

// lookup resolves unsafePath from dir. The final symlink is followed when
// follow is set; the caller sets it for a path ending in '/' unless the op
// fails on that first. A path ending in '/' must name a directory.
func (r *resolver) lookup(dir *node, unsafePath string, follow bool) (walk, syscall.Errno) {
	w, errno := r.parent(dir, unsafePath)
	if errno != 0 {
		return w, errno
	}
	if w.node != nil && w.node.typ == fsvirt.Symlink && follow {
		t, errno := r.follow(w.dir, w.node)
		if errno != 0 {
			return walk{}, errno
		}
		t.trailing = t.trailing || w.trailing
		w = t
	}
	if follow && w.trailing && w.node != nil && w.node.typ != fsvirt.Dir {
		return walk{}, unix.ENOTDIR
	}
	return w, 0
}

// step takes one non-final component from dir.
func (r *resolver) step(dir *node, c string) (*node, syscall.Errno) {
	if !r.iv.may(dir, unix.X_OK) { // may_lookup
		return nil, unix.EACCES
	}
	switch c {
	case ".":
		return dir, 0
	case "..":
		return r.dotdot(dir), 0
	}
	n := dir.entries[c]
	if n != nil && n.typ == fsvirt.Symlink {
		t, errno := r.follow(dir, n)
		if errno != 0 {
			return nil, errno
		}
		n = t.node
	}
	switch {
	case n == nil:
		return nil, unix.ENOENT
	case n.typ != fsvirt.Dir:
		return nil, unix.ENOTDIR
	}
	return n, 0
}

// follow resolves the target of link, an entry of dir.
func (r *resolver) follow(dir, link *node) (walk, syscall.Errno) {
	if r.links++; r.links > maxSymlinks {
		return walk{}, unix.ELOOP
	}
	if errno := r.iv.mayFollow(dir, link); errno != 0 {
		return walk{}, errno
	}
	return r.lookup(dir, link.target, true /* follow */)
}

// dotdot is dir's parent. At the root it stays, as in a chroot, but the op
// is not defined: the engine would leave the tree.
func (r *resolver) dotdot(dir *node) *node {
	if dir.parent == nil {
		r.iv.undefined = "'..' at the root"
		return dir
	}
	return dir.parent
}
