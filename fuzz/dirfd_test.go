package fuzz

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// dirfdTree has directories to open at every depth, files to copy up in
// them, a symlink to a directory and one up to the root.
var dirfdTree = fsvirt.MustParseTree(
	"dir a",
	"dir a/b",
	"dir d",
	"dir d/e",
	"file d/x",
	"file d/e/y why",
	"file f hello",
	"file 0600 a/g world",
	"file a/b/h deep down",
	"symlink la -> a",
	"symlink a/b/up -> ../..",
)

var dirfdNames = []string{".", "..", "a", "b", "d", "e", "x", "y", "f", "g", "h", "n", "la", "up"}

// dirfdActions open directories (shared ones, ones the invocation made or
// changed), move the working directory, and operate relative to both; the
// directories change and go away in between.
var dirfdActions = []action{
	func(p *program) { // opendir
		p.do(fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: p.path(),
			Flags: pick(p.src, []int{unix.O_RDONLY | unix.O_DIRECTORY, unix.O_PATH | unix.O_DIRECTORY, unix.O_RDONLY, unix.O_PATH})})
	},
	func(p *program) { // openat a handle
		p.do(fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: p.handle(), Path: p.rel(), Flags: pick(p.src, openFlags), Mode: 0o600})
	},
	func(p *program) { // copy a file up through a handle
		p.do(fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: p.handle(), Path: p.rel(), Flags: unix.O_RDWR})
	},
	actOpen, actChdir, actFchdir, actFchdir, actGetcwd, actStat, actAccess, actFdOp, actFdOp, actClose,
	actMkdir, actMkdir, actUnlink, actRename, actRmR, actChmod, actLink, actUtimens, actReadlink,
	func(p *program) { // symlink
		dirfd, path := p.at()
		p.do(fsvirt.Op{Kind: fsvirt.OpSymlink, Dirfd: dirfd, Path: path, Data: []byte(pick(p.src, []string{"a", "..", "../d", "/d/e", "n"}))})
	},
}

// FuzzRelativeDirfds: directory handles and working directories, in every
// state a directory can be in, as the starting points of path ops.
func FuzzRelativeDirfds(f *testing.F) {
	v := newEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &program{session: v.start(t, dirfdTree), src: &source{b: data}, names: dirfdNames}
		p.run(dirfdActions)
	})
}
