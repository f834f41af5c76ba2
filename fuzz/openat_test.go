package fuzz

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// openatTree is small, with one of each kind of file.
var openatTree = fsvirt.MustParseTree(
	"dir a",
	"dir 0555 a/b",
	"file f hello",
	"file 0600 a/g world",
	"file 0755 x exec",
	"file 0444 ro read only",
	"file empty",
	"fifo p",
	"symlink l -> a/g",
	"symlink la -> a",
	"symlink dang -> nothere",
	"symlink loop -> loop",
)

// openatSetups put the view in a state before the open; setup's bits pick
// them, in this order.
var openatSetups = []fsvirt.Op{
	{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "f", Flags: unix.O_RDONLY},                    // a read-only fd, made stale by a copy-up
	{Kind: fsvirt.OpTruncatePath, Dirfd: fsvirt.AtCWD, Path: "f", Size: 2},                         // copy f up
	{Kind: fsvirt.OpUnlink, Dirfd: fsvirt.AtCWD, Path: "a/g"},                                      // a whiteout
	{Kind: fsvirt.OpMkdir, Dirfd: fsvirt.AtCWD, Path: "n", Mode: 0o755},                            // a private directory
	{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "a", Flags: unix.O_PATH},                      // a directory handle
	{Kind: fsvirt.OpChdir, Dirfd: fsvirt.AtCWD, Path: "a"},                                         // another working directory
	{Kind: fsvirt.OpRename, Dirfd: fsvirt.AtCWD, Path: "la", NewDirfd: fsvirt.AtCWD, NewPath: "m"}, // a renamed symlink
	{Kind: fsvirt.OpSymlink, Dirfd: fsvirt.AtCWD, Path: "abs", Data: []byte("/a/g")},               // an absolute symlink
}

// maxOpenatPath keeps paths well below PATH_MAX with any root in front:
// the engine's and the oracle's roots differ in length.
const maxOpenatPath = 512

// FuzzOpenatFlags: one openat with any flags, mode, path and dirfd, then
// what the new fd does: fstat, read, write, listing, fchdir.
func FuzzOpenatFlags(f *testing.F) {
	v := newEnv(f)
	f.Fuzz(func(t *testing.T, setup uint8, dirfd int8, flags, mode uint32, path string) {
		if path == "" || len(path) > maxOpenatPath || strings.IndexByte(path, 0) >= 0 {
			t.Skip("not a path: empty, too long or with a NUL")
		}
		s := v.start(t, openatTree)
		for i, op := range openatSetups {
			if setup&(1<<i) != 0 {
				s.do(op)
			}
		}
		o, defined := s.do(fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: fsvirt.Handle(dirfd), Path: path, Flags: int(flags), Mode: mode})
		if defined && o.Errno == 0 {
			h := fsvirt.Handle(o.Ret)
			for _, op := range []fsvirt.Op{
				{Kind: fsvirt.OpStat, Fd: h},
				{Kind: fsvirt.OpFstatat, Dirfd: h, Flags: unix.AT_EMPTY_PATH},
				{Kind: fsvirt.OpRead, Fd: h, Size: 32},
				{Kind: fsvirt.OpWrite, Fd: h, Data: []byte("zz")},
				{Kind: fsvirt.OpPwrite, Fd: h, Data: []byte("Q"), Offset: 1},
				{Kind: fsvirt.OpSeek, Fd: h, Offset: 0, Whence: unix.SEEK_SET},
				{Kind: fsvirt.OpRead, Fd: h, Size: 32},
				{Kind: fsvirt.OpTruncate, Fd: h, Size: 1},
				{Kind: fsvirt.OpGetdents, Fd: h},
				{Kind: fsvirt.OpOpen, Dirfd: h, Path: ".", Flags: unix.O_RDONLY},
				{Kind: fsvirt.OpFchdir, Fd: h},
				{Kind: fsvirt.OpGetcwd},
				{Kind: fsvirt.OpClose, Fd: h},
			} {
				s.do(op)
			}
		}
		s.finish()
	})
}
