package fuzz

import (
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// source hands out a fuzz input's bytes; past the end it gives zeros. Every
// byte means something, so that any mutation makes another valid program.
type source struct{ b []byte }

func (s *source) next() byte {
	if len(s.b) == 0 {
		return 0
	}
	v := s.b[0]
	s.b = s.b[1:]
	return v
}

func (s *source) done() bool { return len(s.b) == 0 }

// pick draws an index below n.
func (s *source) pick(n int) int { return int(s.next()) % n }

func pick[T any](s *source, from []T) T { return from[s.pick(len(from))] }

// maxOps bounds a program, so that an input's run stays short.
const maxOps = 48

// program decodes a session's ops from an input: an action byte, then the
// action's arguments.
type program struct {
	*session
	src   *source
	names []string // path components
}

type action func(p *program)

// run runs actions drawn from the input until it runs out, then finishes.
func (p *program) run(actions []action) {
	for n := 0; n < maxOps && !p.src.done(); n++ {
		pick(p.src, actions)(p)
	}
	p.finish()
}

// path draws a path of one to four names: a header byte (count, absolute,
// trailing slash), then a byte per name.
func (p *program) path() string {
	h := p.src.next()
	comps := make([]string, int(h&3)+1)
	for i := range comps {
		comps[i] = pick(p.src, p.names)
	}
	s := strings.Join(comps, "/")
	if h&4 != 0 {
		s = "/" + s
	}
	if h&8 != 0 {
		s += "/"
	}
	return s
}

// rel is a relative path.
func (p *program) rel() string {
	return strings.TrimPrefix(p.path(), "/")
}

// handle draws an open handle, AtCWD, or the lowest handle that is not open.
func (p *program) handle() fsvirt.Handle {
	open := p.open()
	k := p.src.pick(len(open) + 2)
	switch {
	case k < len(open):
		return open[k]
	case k == len(open):
		return fsvirt.AtCWD
	}
	return p.free()
}

// free is the lowest handle that is not open.
func (p *program) free() fsvirt.Handle {
	h := fsvirt.Handle(0)
	for p.handles[h] {
		h++
	}
	return h
}

// at draws where a path op starts: a handle (or AtCWD) and a relative path,
// or the working directory and any path.
func (p *program) at() (fsvirt.Handle, string) {
	if p.src.next()&1 == 0 {
		return fsvirt.AtCWD, p.path()
	}
	return p.handle(), p.rel()
}

// openFlags are the flags of opens in op sequences; FuzzOpenatFlags tries
// all the others.
var openFlags = []int{
	unix.O_RDONLY, unix.O_RDONLY | unix.O_DIRECTORY, unix.O_PATH, unix.O_PATH | unix.O_DIRECTORY,
	unix.O_PATH | unix.O_NOFOLLOW, unix.O_WRONLY | unix.O_CREAT, unix.O_RDWR | unix.O_CREAT | unix.O_EXCL,
	unix.O_WRONLY | unix.O_TRUNC, unix.O_RDWR | unix.O_APPEND, unix.O_RDONLY | unix.O_NOFOLLOW,
	unix.O_WRONLY | unix.O_CREAT | unix.O_NOFOLLOW, unix.O_RDWR | unix.O_TMPFILE, unix.O_RDONLY | unix.O_CREAT,
	unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW, unix.O_WRONLY, unix.O_RDONLY | unix.O_TRUNC,
}

// Actions common to the op-sequence targets.

func actOpen(p *program) {
	dirfd, path := p.at()
	p.do(fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: dirfd, Path: path, Flags: pick(p.src, openFlags), Mode: 0o644})
}

func actChdir(p *program) { p.do(fsvirt.Op{Kind: fsvirt.OpChdir, Dirfd: fsvirt.AtCWD, Path: p.path()}) }

func actFchdir(p *program) { p.do(fsvirt.Op{Kind: fsvirt.OpFchdir, Fd: p.handle()}) }

func actGetcwd(p *program) { p.do(fsvirt.Op{Kind: fsvirt.OpGetcwd}) }

func actStat(p *program) {
	dirfd, path := p.at()
	flags := pick(p.src, []int{0, unix.AT_SYMLINK_NOFOLLOW, unix.AT_EMPTY_PATH})
	if flags == unix.AT_EMPTY_PATH {
		path = ""
	}
	p.do(fsvirt.Op{Kind: fsvirt.OpFstatat, Dirfd: dirfd, Path: path, Flags: flags})
}

func actAccess(p *program) {
	dirfd, path := p.at()
	p.do(fsvirt.Op{Kind: fsvirt.OpAccess, Dirfd: dirfd, Path: path, Mode: pick(p.src, []uint32{unix.F_OK, unix.R_OK | unix.W_OK, unix.X_OK})})
}

func actReadlink(p *program) {
	dirfd, path := p.at()
	p.do(fsvirt.Op{Kind: fsvirt.OpReadlink, Dirfd: dirfd, Path: path, Size: 64})
}

func actFdOp(p *program) {
	op := fsvirt.Op{Fd: p.handle()}
	switch p.src.pick(6) {
	case 0:
		op.Kind = fsvirt.OpGetdents
	case 1:
		op.Kind = fsvirt.OpStat
	case 2:
		op.Kind, op.Size = fsvirt.OpRead, 16
	case 3:
		op.Kind, op.Data = fsvirt.OpWrite, []byte("xy")
	case 4:
		op.Kind, op.Offset, op.Whence = fsvirt.OpSeek, 0, unix.SEEK_SET
	default:
		op.Kind = fsvirt.OpClose
	}
	p.do(op)
}

func actClose(p *program) { p.do(fsvirt.Op{Kind: fsvirt.OpClose, Fd: p.handle()}) }

func actMkdir(p *program) {
	dirfd, path := p.at()
	p.do(fsvirt.Op{Kind: fsvirt.OpMkdir, Dirfd: dirfd, Path: path, Mode: 0o755})
}

func actUnlink(p *program) {
	dirfd, path := p.at()
	p.do(fsvirt.Op{Kind: fsvirt.OpUnlink, Dirfd: dirfd, Path: path, Flags: pick(p.src, []int{0, unix.AT_REMOVEDIR})})
}

func actRename(p *program) {
	op := fsvirt.Op{Kind: fsvirt.OpRename}
	op.Dirfd, op.Path = p.at()
	op.NewDirfd, op.NewPath = p.at()
	op.Flags = pick(p.src, []int{0, unix.RENAME_NOREPLACE, unix.RENAME_EXCHANGE})
	p.do(op)
}

func actLink(p *program) {
	op := fsvirt.Op{Kind: fsvirt.OpLink}
	op.Dirfd, op.Path = p.at()
	op.NewDirfd, op.NewPath = p.at()
	op.Flags = pick(p.src, []int{0, unix.AT_SYMLINK_FOLLOW})
	p.do(op)
}

func actChmod(p *program) {
	dirfd, path := p.at()
	p.do(fsvirt.Op{Kind: fsvirt.OpChmod, Dirfd: dirfd, Path: path, Mode: pick(p.src, []uint32{0o700, 0o755})})
}

func actUtimens(p *program) {
	dirfd, path := p.at()
	p.do(fsvirt.Op{Kind: fsvirt.OpUtimens, Dirfd: dirfd, Path: path, Time: 1e9, Flags: pick(p.src, []int{0, unix.AT_SYMLINK_NOFOLLOW})})
}

func actTruncate(p *program) {
	p.do(fsvirt.Op{Kind: fsvirt.OpTruncatePath, Dirfd: fsvirt.AtCWD, Path: p.path(), Size: 1})
}

// actRmR removes a directory of the view and everything under it, deepest
// first, as rm -r does.
func actRmR(p *program) {
	var dirs []string
	paths := p.shadow.Paths(inv)
	for _, q := range paths {
		if strings.HasSuffix(q, "/") {
			dirs = append(dirs, q)
		}
	}
	if len(dirs) == 0 {
		return
	}
	dir := pick(p.src, dirs)
	var under []string
	for _, q := range paths {
		if strings.HasPrefix(q, dir) {
			under = append(under, q)
		}
	}
	slices.Reverse(under)
	for _, q := range under {
		op := fsvirt.Op{Kind: fsvirt.OpUnlink, Dirfd: fsvirt.AtCWD, Path: "/" + q}
		if strings.HasSuffix(q, "/") {
			op.Flags = unix.AT_REMOVEDIR
		}
		p.do(op)
	}
}
