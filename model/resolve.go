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
	path string // canonical path of the final component, or of the file O_CREAT would make
	node *node  // nil when the final component does not exist
	dot  bool   // the path ended in ".", ".." or at "/": nothing can be created there
}

// resolver resolves paths in one invocation's view, as the kernel's path walk
// does, counting symlinks across nested targets.
type resolver struct {
	m       *Model
	iv      *invocation
	links   int
	escaped bool // ".." was taken at the root
}

// resolve walks unsafePath from the canonical directory dir. A final symlink
// is followed when follow is set; a symlink elsewhere always is.
func (r *resolver) resolve(dir, unsafePath string, follow bool) (walk, syscall.Errno) {
	if strings.HasPrefix(unsafePath, "/") {
		dir = ""
	}
	comps := strings.FieldsFunc(unsafePath, func(c rune) bool { return c == '/' })
	w := walk{path: dir, node: r.m.lookup(r.iv, dir), dot: true}
	for i, c := range comps {
		last := i == len(comps)-1
		switch c {
		case ".":
		case "..":
			if dir == "" {
				r.escaped = true
			} else {
				dir = parent(dir)
			}
		default:
			p := join(dir, c)
			n := r.m.lookup(r.iv, p)
			if n != nil && n.typ == fsvirt.Symlink && (follow || !last) {
				if r.links++; r.links > maxSymlinks {
					return walk{}, unix.ELOOP
				}
				target, errno := r.resolve(dir, n.target, true /* follow */)
				if errno != 0 || last {
					return target, errno
				}
				p, n = target.path, target.node
			}
			if last {
				return walk{path: p, node: n}, 0
			}
			switch {
			case n == nil:
				return walk{}, unix.ENOENT
			case n.typ != fsvirt.Dir:
				return walk{}, unix.ENOTDIR
			}
			dir = p
			continue
		}
		w = walk{path: dir, node: r.m.lookup(r.iv, dir), dot: true}
	}
	return w, 0
}
