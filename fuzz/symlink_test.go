package fuzz

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/internal/sysexec"
)

// symlinkBase is the tree that an input's symlinks are added to.
var symlinkBase = []string{
	"dir a",
	"dir a/b",
	"dir d",
	"file f hello",
	"file a/g world",
	"file a/b/h deep down",
	"fifo p",
}

var (
	linkNames  = []string{"s0", "s1", "s2", "s3"}
	linkDirs   = []string{"", "a/", "a/b/"}
	linkTarget = []string{".", "..", "a", "b", "d", "f", "g", "h", "p", "s0", "s1", "s2", "s3", "nothere"}
	// symlinkNames are the path components of ops.
	symlinkNames = []string{".", "..", "a", "b", "d", "f", "g", "h", "p", "n", "s0", "s1", "s2", "s3", "nothere"}
)

// target draws a relative symlink target: one to four names, maybe with
// "./" in front and a trailing slash.
func (p *program) target() string {
	h := p.src.next()
	comps := make([]string, int(h&3)+1)
	for i := range comps {
		comps[i] = pick(p.src, linkTarget)
	}
	t := strings.Join(comps, "/")
	if h&4 != 0 {
		t = "./" + t
	}
	if h&8 != 0 {
		t += "/"
	}
	return t
}

// symlinkTree decodes the input's tree: the base and up to six symlinks:
// chains, loops, targets up and down, with trailing slashes.
func symlinkTree(p *program) fsvirt.Tree {
	tree := fsvirt.MustParseTree(symlinkBase...)
	for range p.src.pick(7) {
		name := pick(p.src, linkDirs) + pick(p.src, linkNames)
		tree[name] = fsvirt.Node{Type: fsvirt.Symlink, Mode: 0o777, Target: p.target()}
	}
	return tree
}

var symlinkActions = []action{
	actOpen, actOpen, actStat, actStat, actReadlink, actAccess, actChdir, actGetcwd, actFdOp, actClose,
	actMkdir, actUnlink, actRename, actLink, actChmod, actUtimens, actTruncate,
	func(p *program) { // a symlink in the view: relative, or absolute (taken from the view's root)
		dirfd, path := p.at()
		target := p.target()
		if p.src.next()&1 != 0 {
			target = "/" + target
		}
		p.do(fsvirt.Op{Kind: fsvirt.OpSymlink, Dirfd: dirfd, Path: path, Data: []byte(target)})
	},
	actAlias, actAlias, actStore,
}

// FuzzSymlinks: symlink chains, loops, absolute and relative targets, ".."
// and trailing slashes; the same paths reached from outside the tree and
// through /proc/self/fd; paths into the store.
func FuzzSymlinks(f *testing.F) {
	v := newEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &program{src: &source{b: data}, names: symlinkNames}
		tree := symlinkTree(p)
		p.session = v.start(t, tree)
		p.logf("tree:\n%s", tree)
		p.run(symlinkActions)
	})
}

// Aliases are ways to name a directory of the view other than its path in
// the tree, from the engine's worker thread.
const (
	aliasIn     = iota // dir/in, a symlink to the tree outside it
	aliasOutIn         // shared/../shared: out of the tree and back in
	aliasProcFd        // /proc/self/fd/N of a directory handle
	aliases
)

// actAlias runs an op, and on an open the ops on the new fd, with a path
// through an alias in the engine and the view's path in the oracle and the
// model: the outcomes must be the same. The alias Exec has handles of its
// own; its new handle stands for the one the oracle gets.
func actAlias(p *program) {
	kind, base := p.src.pick(aliases), ""
	root := filepath.Join(p.v.dir, "in")
	switch kind {
	case aliasOutIn:
		root = p.v.shared + "/../" + filepath.Base(p.v.shared)
	case aliasProcFd:
		base = strings.Trim(p.rel(), "/")
	}
	rest, newRest := p.rel(), p.rel()
	viewPath := func(rest string) string {
		if base == "" {
			return "/" + rest
		}
		return "/" + base + "/" + rest
	}
	var ax *sysexec.Exec
	dirfd := -1
	p.v.engine.call(inv, func(*sysexec.Exec) {
		if kind == aliasProcFd {
			var err error
			if dirfd, err = unix.Open(p.v.shared+"/"+base, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
				return
			}
			root = "/proc/self/fd/" + strconv.Itoa(dirfd)
		}
		ax = sysexec.New(root)
	})
	defer p.v.engine.call(inv, func(*sysexec.Exec) {
		if ax != nil {
			ax.Close()
		}
		if dirfd >= 0 {
			unix.Close(dirfd)
		}
	})
	if kind == aliasProcFd && dirfd < 0 {
		p.logf("alias: no directory %q", base)
		return
	}
	op := fsvirt.Op{Dirfd: fsvirt.AtCWD, Path: "/" + rest}
	switch p.src.pick(9) {
	case 0, 1, 2:
		// No O_NOFOLLOW: the alias Exec would read a symlink's absolute
		// target back with the tree's root in front.
		op.Kind, op.Flags, op.Mode = fsvirt.OpOpen, pick(p.src, []int{unix.O_RDONLY, unix.O_RDONLY | unix.O_DIRECTORY,
			unix.O_PATH, unix.O_WRONLY | unix.O_CREAT, unix.O_RDWR | unix.O_TRUNC, unix.O_RDWR | unix.O_CREAT | unix.O_EXCL}), 0o644
	case 3:
		op.Kind = fsvirt.OpFstatat
	case 4:
		op.Kind, op.Mode = fsvirt.OpAccess, unix.W_OK
	case 5:
		op.Kind, op.Mode = fsvirt.OpMkdir, 0o755
	case 6:
		op.Kind, op.Flags = fsvirt.OpUnlink, pick(p.src, []int{0, unix.AT_REMOVEDIR})
	case 7:
		op.Kind, op.NewDirfd, op.NewPath = fsvirt.OpRename, fsvirt.AtCWD, "/"+newRest
	default:
		op.Kind, op.Data = fsvirt.OpSymlink, []byte(p.target())
	}
	viewOp := op
	viewOp.Path = viewPath(rest)
	if op.Kind == fsvirt.OpRename {
		viewOp.NewPath = viewPath(newRest)
	}
	h := p.free() // the handle the oracle gives a new fd
	fd := -1      // the engine's
	via := func(aop fsvirt.Op) doFS {
		return doFS{do: func(fsvirt.Op) (o fsvirt.Outcome) {
			p.v.engine.call(inv, func(*sysexec.Exec) {
				if o = ax.Do(aop); aop.Kind == fsvirt.OpOpen && o.Errno == 0 {
					fd = ax.FD(fsvirt.Handle(o.Ret))
				}
			})
			if aop.Kind == fsvirt.OpOpen && o.Errno == 0 {
				o.Ret = int64(h)
			}
			return o
		}}
	}
	p.logf("alias %s for %q", root, base)
	o, defined := p.doWith(via(op), viewOp)
	if !defined || op.Kind != fsvirt.OpOpen || o.Errno != 0 {
		return
	}
	kinds := []fsvirt.OpKind{fsvirt.OpStat, fsvirt.OpRead, fsvirt.OpGetdents, fsvirt.OpClose}
	if op.Flags&unix.O_PATH != 0 {
		// Where the kernel does not reach the object by the alias, the engine
		// answers with an ordinary fd, which reads (README, limits; see
		// session.limit); where it does, with an O_PATH fd: see
		// FuzzSymlinks/opath-through-proc-self-fd.
		switch plainOPath(fd, strings.TrimSuffix(root, "/")+op.Path, op.Flags) {
		case opathPlain:
			p.logf("  an ordinary fd: the kernel does not reach the object by this path")
			kinds = []fsvirt.OpKind{fsvirt.OpStat, fsvirt.OpClose}
		case opathProxy:
			p.logf("  a memfd: the kernel does not reach the symlink by this path")
			kinds = []fsvirt.OpKind{fsvirt.OpClose}
		}
	}
	for _, k := range kinds {
		p.doWith(via(fsvirt.Op{Kind: k, Fd: 0, Size: 32}), fsvirt.Op{Kind: k, Fd: h, Size: 32})
	}
}

// actStore runs an op on a path into the store, from the engine's worker
// thread: the store does not exist in the view, so the op must do what it
// does on a path through a directory that does not exist (dir/ghost), or
// fail with ENOENT, and change nothing.
func actStore(p *program) {
	storeBase, ghost := filepath.Base(p.v.store), filepath.Join(p.v.dir, "ghost")
	// The store proper relative to the store directory: fsvirt-UID/store-*.
	storeRel, _ := filepath.Rel(p.v.storeRoot, p.v.store)
	roots := [][2]string{ // into the store, and the same way to the ghost
		{p.v.store, ghost},
		{filepath.Join(p.v.dir, "st"), filepath.Join(p.v.dir, "gst")},
		{p.v.shared + "/../store/" + storeRel, p.v.shared + "/../ghost"},
		{p.v.shared + "/../st", p.v.shared + "/../gst"},
	}
	root := pick(p.src, roots)
	suffix := pick(p.src, []string{"/", "/lock", "/x", "/inv-1", "/../" + storeBase + "/y", "/."})
	op := fsvirt.Op{Dirfd: fsvirt.AtCWD}
	var path, newPath string
	switch p.src.pick(8) {
	case 0, 1:
		op.Kind, op.Flags, op.Mode = fsvirt.OpOpen, pick(p.src, []int{unix.O_RDONLY, unix.O_PATH, unix.O_RDONLY | unix.O_DIRECTORY,
			unix.O_WRONLY | unix.O_CREAT, unix.O_RDWR | unix.O_TRUNC, unix.O_RDWR | unix.O_TMPFILE}), 0o644
	case 2:
		op.Kind = fsvirt.OpFstatat
	case 3:
		op.Kind, op.Mode, suffix = fsvirt.OpMkdir, 0o755, suffix+"/m"
	case 4:
		op.Kind, op.Data, suffix = fsvirt.OpSymlink, []byte("t"), suffix+"/m"
	case 5:
		op.Kind, path, newPath = fsvirt.OpRename, p.v.shared+"/f", suffix+"/m"
	case 6:
		op.Kind, path, newPath = fsvirt.OpLink, p.v.shared+"/f", suffix+"/m"
	default:
		op.Kind = fsvirt.OpTruncatePath
	}
	at := func(root string) fsvirt.Op {
		o := op
		if newPath != "" {
			o.Path, o.NewDirfd, o.NewPath = path, fsvirt.AtCWD, root+newPath
		} else {
			o.Path = root + suffix
		}
		return o
	}
	before, err := sysexec.Walk(p.v.store)
	if err != nil {
		p.t.Fatal(err)
	}
	host := func(op fsvirt.Op) fsvirt.Outcome {
		x := sysexec.New("/")
		defer x.Close()
		return x.Do(op)
	}
	var got fsvirt.Outcome
	p.v.engine.call(inv, func(*sysexec.Exec) { got = host(at(root[0])) })
	want := host(at(root[1]))
	p.logf("store: %v = %v", at(root[0]), got)
	// ENOENT is fine too: the engine refuses a path into the store as soon as
	// it reaches the store, where the kernel may first refuse a trailing
	// slash with O_CREAT (EISDIR; regression FuzzSymlinks/store-trailing-slash-creat).
	if !got.Equal(want) && !got.Equal(fsvirt.Fail(unix.ENOENT)) {
		p.fail("store: %v = %v, want %v as for %v, or ENOENT", at(root[0]), got, want, at(root[1]))
	}
	if after, err := sysexec.Walk(p.v.store); err != nil || after.Hash() != before.Hash() {
		p.fail("store: %v changed the store:\n%s(%v), was:\n%s", op, after, err, before)
	}
	p.checkOutside()
}
