package propcheck

import (
	"fmt"
	"path"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// probePaths are the paths an invocation's ops can create or change: those
// of the tree, and every name in every directory. Ops create no
// directories, so this is all.
func probePaths(tree fsvirt.Tree, names []string) []string {
	dirs, files := []string{""}, map[string]bool{}
	for p, n := range tree {
		files[p] = true
		if n.Type == fsvirt.Dir {
			dirs = append(dirs, p+"/")
		}
		names = append(names, path.Base(p), path.Base(n.Target))
	}
	for _, d := range dirs {
		for _, name := range names {
			if name != "." && name != ".." {
				files[d+name] = true
			}
		}
	}
	return slices.Sorted(func(yield func(string) bool) {
		for p := range files {
			if !yield(p) {
				return
			}
		}
	})
}

// probe reads inv's view of paths through fs: what opening each path without
// following symlinks gives, its fstat, and a regular file's content. The
// handles it opens are closed again, so the probe changes nothing.
func probe(fs fsvirt.FS, inv fsvirt.Inv, paths []string) []string {
	var lines []string
	for _, p := range paths {
		open := fs.Do(inv, fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "/" + p, Flags: unix.O_RDONLY | unix.O_NOFOLLOW})
		if open.Errno != 0 {
			lines = append(lines, fmt.Sprintf("%s: %v", p, open))
			continue
		}
		h := fsvirt.Handle(open.Ret)
		st := fs.Do(inv, fsvirt.Op{Kind: fsvirt.OpStat, Fd: h})
		line := fmt.Sprintf("%s: %v", p, st.Stat)
		if st.Stat.Mode&unix.S_IFMT == unix.S_IFREG {
			line += fmt.Sprintf(" %q", fs.Do(inv, fsvirt.Op{Kind: fsvirt.OpRead, Fd: h, Size: 1 << 12}).Data)
		}
		fs.Do(inv, fsvirt.Op{Kind: fsvirt.OpClose, Fd: h})
		lines = append(lines, line)
	}
	return lines
}
