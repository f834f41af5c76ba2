package propcheck

import (
	"bytes"
	"fmt"
	"path"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// maxProbeDepth bounds the probe's descent; ops make trees a few levels deep.
const maxProbeDepth = 8

// probe reads inv's whole view through fs: its working directory, then from
// the root down, every entry's lstat, a regular file's content and xattrs, a
// symlink's target. It lists directories through fresh handles, which show
// the live view, and closes every handle it opens, so it changes nothing.
func probe(fs fsvirt.FS, inv fsvirt.Inv, xattrs bool) []string {
	do := func(op fsvirt.Op) fsvirt.Outcome { return fs.Do(inv, op) }
	lines := []string{fmt.Sprintf("cwd: %v", do(fsvirt.Op{Kind: fsvirt.OpGetcwd}))}
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		st := do(fsvirt.Op{Kind: fsvirt.OpFstatat, Dirfd: fsvirt.AtCWD, Path: "/" + p, Flags: unix.AT_SYMLINK_NOFOLLOW})
		line := fmt.Sprintf("/%s: %v", p, st)
		switch st.Stat.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			open := do(fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "/" + p, Flags: unix.O_RDONLY | unix.O_NOFOLLOW})
			if open.Errno == 0 {
				h := fsvirt.Handle(open.Ret)
				line += fmt.Sprintf(" %q", do(fsvirt.Op{Kind: fsvirt.OpRead, Fd: h, Size: 1 << 12}).Data)
				do(fsvirt.Op{Kind: fsvirt.OpClose, Fd: h})
			}
			if xattrs {
				line += probeXattrs(do, "/"+p)
			}
		case unix.S_IFLNK:
			line += fmt.Sprintf(" -> %v", do(fsvirt.Op{Kind: fsvirt.OpReadlink, Dirfd: fsvirt.AtCWD, Path: "/" + p, Size: 1 << 10}))
		case unix.S_IFDIR:
			if xattrs {
				line += probeXattrs(do, "/"+p)
			}
			lines = append(lines, line)
			open := do(fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "/" + p, Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW})
			if open.Errno != 0 {
				lines = append(lines, fmt.Sprintf("/%s: open: %v", p, open))
				return
			}
			h := fsvirt.Handle(open.Ret)
			ls := do(fsvirt.Op{Kind: fsvirt.OpGetdents, Fd: h})
			lines = append(lines, fmt.Sprintf("/%s: ls %v", p, ls))
			if p != "" {
				// ".." is the directory's parent, also after a rename.
				up := do(fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: h, Path: "..", Flags: unix.O_RDONLY | unix.O_DIRECTORY})
				if up.Errno == 0 {
					lines = append(lines, fmt.Sprintf("/%s/..: ls %v", p, do(fsvirt.Op{Kind: fsvirt.OpGetdents, Fd: fsvirt.Handle(up.Ret)})))
					do(fsvirt.Op{Kind: fsvirt.OpClose, Fd: fsvirt.Handle(up.Ret)})
				}
			}
			do(fsvirt.Op{Kind: fsvirt.OpClose, Fd: h})
			if depth >= maxProbeDepth {
				return
			}
			for _, e := range ls.Dirents {
				if e.Name != "." && e.Name != ".." {
					walk(path.Join(p, e.Name), depth+1)
				}
			}
			return
		}
		lines = append(lines, line)
	}
	walk("", 0)
	return lines
}

func probeXattrs(do func(fsvirt.Op) fsvirt.Outcome, p string) string {
	list := do(fsvirt.Op{Kind: fsvirt.OpListxattr, Dirfd: fsvirt.AtCWD, Path: p, Size: 1 << 10})
	s := fmt.Sprintf(" xattrs %v", list)
	for _, name := range bytes.Split(list.Data, []byte{0}) {
		if len(name) > 0 {
			s += fmt.Sprintf(" %s=%v", name, do(fsvirt.Op{Kind: fsvirt.OpGetxattr, Dirfd: fsvirt.AtCWD, Path: p, Name: string(name), Size: 1 << 10}))
		}
	}
	return s
}
