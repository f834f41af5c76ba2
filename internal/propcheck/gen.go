package propcheck

import (
	"maps"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"

	"github.com/fsvirt/fsvirt"
)

// actions are the steps of the state machine; "" is the invariant check.
func (m *machine) actions() map[string]func(*rapid.T) {
	fdOp := func(kind fsvirt.OpKind, args func(*rapid.T, *fsvirt.Op)) func(*rapid.T) {
		return func(t *rapid.T) {
			inv := m.pickLive(t, true /* with handles */)
			op := fsvirt.Op{Kind: kind, Fd: m.pickHandle(t, inv)}
			if args != nil {
				args(t, &op)
			}
			m.step(t, inv, op)
		}
	}
	return map[string]func(*rapid.T){
		"": m.Check,
		"begin": func(t *rapid.T) {
			var idle []fsvirt.Inv
			for inv := range fsvirt.Inv(m.slots) {
				if _, ok := m.live[inv]; !ok {
					idle = append(idle, inv)
				}
			}
			if len(idle) == 0 {
				t.SkipNow() // all invocations are live
			}
			m.begin(t, rapid.SampledFrom(idle).Draw(t, "inv"))
		},
		"end": func(t *rapid.T) { m.end(t, m.pickLive(t, false)) },
		"open": func(t *rapid.T) {
			inv := m.pickLive(t, false)
			m.step(t, inv, m.openOp(t, fsvirt.AtCWD, m.drawPath(t)))
		},
		"open-file": func(t *rapid.T) {
			inv := m.pickLive(t, false)
			op := fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: rapid.SampledFrom(m.files).Draw(t, "path")}
			op.Flags = rapid.SampledFrom([]int{unix.O_RDONLY, unix.O_WRONLY, unix.O_RDWR}).Draw(t, "access")
			for _, f := range []int{unix.O_CREAT, unix.O_TRUNC, unix.O_APPEND} {
				if rapid.IntRange(1, 3).Draw(t, fsvirt.FormatFlags(f)) == 1 {
					op.Flags |= f
				}
			}
			op.Mode = 0o644 * uint32(op.Flags&unix.O_CREAT/unix.O_CREAT)
			m.step(t, inv, op)
		},
		"opendir": func(t *rapid.T) {
			inv := m.pickLive(t, false)
			op := fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: rapid.SampledFrom(m.dirs).Draw(t, "path")}
			op.Flags = rapid.SampledFrom([]int{unix.O_RDONLY, unix.O_DIRECTORY, unix.O_PATH}).Draw(t, "flags")
			m.step(t, inv, op)
		},
		"reopen-for-writing": func(t *rapid.T) {
			// Copy up a file the invocation may still have open read-only.
			inv := m.pickLive(t, true)
			op := m.live[inv][m.pickHandle(t, inv)]
			if op.Kind != fsvirt.OpOpen {
				return // the handle that is not open
			}
			op.Flags = rapid.SampledFrom([]int{unix.O_WRONLY, unix.O_RDWR | unix.O_APPEND, unix.O_RDONLY | unix.O_TRUNC}).Draw(t, "flags")
			op.Mode = 0
			m.step(t, inv, op)
		},
		"openat": func(t *rapid.T) {
			inv := m.pickLive(t, true)
			dirfd := m.pickHandle(t, inv)
			path := strings.Join(rapid.SliceOfN(rapid.SampledFrom(m.names), 1, 2).Draw(t, "names"), "/")
			m.step(t, inv, m.openOp(t, dirfd, path))
		},
		"read": fdOp(fsvirt.OpRead, func(t *rapid.T, op *fsvirt.Op) {
			op.Size = rapid.Int64Range(0, 16).Draw(t, "size")
		}),
		"write": fdOp(fsvirt.OpWrite, func(t *rapid.T, op *fsvirt.Op) {
			op.Data = drawData(t)
		}),
		"pwrite": fdOp(fsvirt.OpPwrite, func(t *rapid.T, op *fsvirt.Op) {
			op.Data = drawData(t)
			op.Offset = rapid.Int64Range(-1, 20).Draw(t, "offset")
		}),
		"lseek": fdOp(fsvirt.OpSeek, func(t *rapid.T, op *fsvirt.Op) {
			op.Offset = rapid.Int64Range(-4, 12).Draw(t, "offset")
			op.Whence = rapid.SampledFrom([]int{unix.SEEK_SET, unix.SEEK_CUR, unix.SEEK_END}).Draw(t, "whence")
		}),
		"ftruncate": fdOp(fsvirt.OpTruncate, func(t *rapid.T, op *fsvirt.Op) {
			op.Size = rapid.Int64Range(-1, 12).Draw(t, "size")
		}),
		"fstat": fdOp(fsvirt.OpStat, nil),
		"close": fdOp(fsvirt.OpClose, nil),
	}
}

// pickLive draws a live invocation, one with open handles if withHandles.
// It skips before drawing anything when there is none, so that rapid tries
// another action instead of rejecting the step.
func (m *machine) pickLive(t *rapid.T, withHandles bool) fsvirt.Inv {
	var invs []fsvirt.Inv
	for _, inv := range slices.Sorted(maps.Keys(m.live)) {
		if !withHandles || len(m.live[inv]) > 0 {
			invs = append(invs, inv)
		}
	}
	if len(invs) == 0 {
		t.SkipNow()
	}
	return rapid.SampledFrom(invs).Draw(t, "inv")
}

// pickHandle draws an open handle of inv or, one time in eight, the lowest
// one that is not open.
func (m *machine) pickHandle(t *rapid.T, inv fsvirt.Inv) fsvirt.Handle {
	open := slices.Sorted(maps.Keys(m.live[inv]))
	if rapid.IntRange(0, 7).Draw(t, "bad-fd") < 7 {
		return rapid.SampledFrom(open).Draw(t, "fd")
	}
	closed := fsvirt.Handle(0)
	for slices.Contains(open, closed) {
		closed++
	}
	return closed
}

// drawPath draws a path of the tree, or one made of
// names, and makes it absolute or gives it a trailing slash now and then.
func (m *machine) drawPath(t *rapid.T) string {
	var p string
	if rapid.Bool().Draw(t, "known") {
		p = rapid.SampledFrom(m.tree.Paths()).Draw(t, "path")
	} else {
		p = strings.Join(rapid.SliceOfN(rapid.SampledFrom(m.names), 1, 3).Draw(t, "names"), "/")
	}
	if rapid.IntRange(0, 5).Draw(t, "trailing-slash") == 0 {
		p += "/"
	}
	if rapid.Bool().Draw(t, "absolute") {
		p = "/" + p
	}
	return p
}

// rare flags come with one open in eight, the others with one in four.
var rare = map[int]bool{unix.O_TMPFILE: true, unix.O_PATH: true, unix.O_DIRECTORY: true}

func (m *machine) openOp(t *rapid.T, dirfd fsvirt.Handle, path string) fsvirt.Op {
	op := fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: dirfd, Path: path}
	op.Flags = rapid.SampledFrom([]int{unix.O_RDONLY, unix.O_WRONLY, unix.O_RDWR}).Draw(t, "access")
	for _, f := range fsvirt.FlagNames {
		odds := 4
		if rare[f.Flag] {
			odds = 8
		}
		if rapid.IntRange(1, odds).Draw(t, f.Name) == 1 {
			op.Flags |= f.Flag
		}
	}
	if op.Flags&unix.O_CREAT != 0 || op.Flags&unix.O_TMPFILE == unix.O_TMPFILE {
		op.Mode = rapid.SampledFrom([]uint32{0o644, 0o600, 0o755, 0o640}).Draw(t, "mode")
	}
	return op
}

func drawData(t *rapid.T) []byte {
	return []byte(rapid.StringOfN(rapid.RuneFrom([]rune("xyz01")), 0, 12, -1).Draw(t, "data"))
}
