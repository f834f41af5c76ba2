package propcheck

import (
	"maps"
	"os"
	"path"
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
	pathOp := func(kind fsvirt.OpKind, args func(*rapid.T, *fsvirt.Op)) func(*rapid.T) {
		return func(t *rapid.T) {
			inv := m.pickLive(t, false)
			op := fsvirt.Op{Kind: kind}
			op.Dirfd, op.Path = m.at(t, inv)
			if args != nil {
				args(t, &op)
			}
			m.step(t, inv, op)
		}
	}
	twoPathOp := func(kind fsvirt.OpKind, args func(*rapid.T, *fsvirt.Op)) func(*rapid.T) {
		return func(t *rapid.T) {
			inv := m.pickLive(t, false)
			op := fsvirt.Op{Kind: kind}
			op.Dirfd, op.Path = m.at(t, inv)
			op.NewDirfd, op.NewPath = m.at(t, inv)
			args(t, &op)
			m.step(t, inv, op)
		}
	}
	// cwdOp is an op on a path without a dirfd.
	cwdOp := func(kind fsvirt.OpKind, args func(*rapid.T, *fsvirt.Op)) func(*rapid.T) {
		return func(t *rapid.T) {
			inv := m.pickLive(t, false)
			op := fsvirt.Op{Kind: kind, Dirfd: fsvirt.AtCWD, Path: m.drawPath(t, inv)}
			if args != nil {
				args(t, &op)
			}
			m.step(t, inv, op)
		}
	}
	xattrOp := func(kind fsvirt.OpKind, args func(*rapid.T, *fsvirt.Op)) func(*rapid.T) {
		return cwdOp(kind, func(t *rapid.T, op *fsvirt.Op) {
			op.Name = rapid.SampledFrom([]string{"user.a", "user.b"}).Draw(t, "name")
			if args != nil {
				args(t, op)
			}
		})
	}
	actions := map[string]func(*rapid.T){
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
			m.step(t, inv, m.openOp(t, fsvirt.AtCWD, m.drawPath(t, inv)))
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
		"fstat":    fdOp(fsvirt.OpStat, nil),
		"close":    fdOp(fsvirt.OpClose, nil),
		"getdents": fdOp(fsvirt.OpGetdents, nil),
		"fchdir":   fdOp(fsvirt.OpFchdir, nil),
		"stat": pathOp(fsvirt.OpFstatat, func(t *rapid.T, op *fsvirt.Op) {
			op.Flags = rapid.SampledFrom([]int{0, unix.AT_SYMLINK_NOFOLLOW}).Draw(t, "flags")
		}),
		"stat-empty-path": func(t *rapid.T) {
			inv := m.pickLive(t, false)
			op := fsvirt.Op{Kind: fsvirt.OpFstatat, Dirfd: fsvirt.AtCWD, Flags: unix.AT_EMPTY_PATH}
			if len(m.live[inv]) > 0 && rapid.Bool().Draw(t, "on-handle") {
				op.Dirfd = m.pickHandle(t, inv)
			}
			m.step(t, inv, op)
		},
		"access": pathOp(fsvirt.OpAccess, func(t *rapid.T, op *fsvirt.Op) {
			op.Mode = rapid.SampledFrom([]uint32{unix.F_OK, unix.R_OK, unix.W_OK, unix.X_OK, unix.R_OK | unix.W_OK}).Draw(t, "mode")
		}),
		"readlink": pathOp(fsvirt.OpReadlink, func(t *rapid.T, op *fsvirt.Op) {
			op.Size = rapid.SampledFrom([]int64{2, 64}).Draw(t, "size")
		}),
		"chdir": cwdOp(fsvirt.OpChdir, nil),
		"getcwd": func(t *rapid.T) {
			m.step(t, m.pickLive(t, false), fsvirt.Op{Kind: fsvirt.OpGetcwd})
		},
		"mkdir": pathOp(fsvirt.OpMkdir, func(t *rapid.T, op *fsvirt.Op) {
			op.Mode = rapid.SampledFrom([]uint32{0o755, 0o700}).Draw(t, "mode")
		}),
		"unlink": pathOp(fsvirt.OpUnlink, nil),
		"rmdir": pathOp(fsvirt.OpUnlink, func(t *rapid.T, op *fsvirt.Op) {
			op.Flags = unix.AT_REMOVEDIR
		}),
		"rename": twoPathOp(fsvirt.OpRename, func(t *rapid.T, op *fsvirt.Op) {
			op.Flags = rapid.SampledFrom([]int{0, unix.RENAME_NOREPLACE, unix.RENAME_EXCHANGE}).Draw(t, "flags")
		}),
		"link": twoPathOp(fsvirt.OpLink, func(t *rapid.T, op *fsvirt.Op) {
			op.Flags = rapid.SampledFrom([]int{0, unix.AT_SYMLINK_FOLLOW}).Draw(t, "flags")
		}),
		"symlink": pathOp(fsvirt.OpSymlink, func(t *rapid.T, op *fsvirt.Op) {
			op.Data = []byte(rapid.SampledFrom(symlinkTargets).Draw(t, "target"))
		}),
		"chmod": pathOp(fsvirt.OpChmod, func(t *rapid.T, op *fsvirt.Op) {
			// The owner keeps rwx: lookups and X_OK do not depend on root's powers.
			op.Mode = rapid.SampledFrom([]uint32{0o700, 0o755, 0o750, 0o4755, 0o2755, 0o2745}).Draw(t, "mode")
		}),
		"chown": pathOp(fsvirt.OpChown, func(t *rapid.T, op *fsvirt.Op) {
			uids, gids := []int{-1, os.Getuid()}, []int{-1, os.Getgid()}
			if len(m.creds) > 0 {
				uids, gids = append(uids, int(Nobody.Uid)), append(gids, int(Nobody.Gid), 100)
			}
			op.Uid = rapid.SampledFrom(uids).Draw(t, "uid")
			op.Gid = rapid.SampledFrom(gids).Draw(t, "gid")
			op.Flags = rapid.SampledFrom([]int{0, unix.AT_SYMLINK_NOFOLLOW}).Draw(t, "flags")
		}),
		"truncate": cwdOp(fsvirt.OpTruncatePath, func(t *rapid.T, op *fsvirt.Op) {
			op.Size = rapid.Int64Range(-1, 8).Draw(t, "size")
		}),
		"utimensat": pathOp(fsvirt.OpUtimens, func(t *rapid.T, op *fsvirt.Op) {
			op.Time = 1e9
			op.Flags = rapid.SampledFrom([]int{0, unix.AT_SYMLINK_NOFOLLOW}).Draw(t, "flags")
		}),
		"mknod": pathOp(fsvirt.OpMknod, func(t *rapid.T, op *fsvirt.Op) {
			op.Mode = rapid.SampledFrom([]uint32{unix.S_IFIFO | 0o644, unix.S_IFREG | 0o640, 0o600}).Draw(t, "mode")
		}),
		"setxattr": xattrOp(fsvirt.OpSetxattr, func(t *rapid.T, op *fsvirt.Op) {
			op.Data = []byte(rapid.SampledFrom([]string{"", "v", "value"}).Draw(t, "value"))
			op.Flags = rapid.SampledFrom([]int{0, unix.XATTR_CREATE, unix.XATTR_REPLACE}).Draw(t, "flags")
		}),
		"getxattr": xattrOp(fsvirt.OpGetxattr, func(t *rapid.T, op *fsvirt.Op) {
			op.Size = rapid.SampledFrom([]int64{0, 2, 64}).Draw(t, "size")
		}),
		"listxattr": xattrOp(fsvirt.OpListxattr, func(t *rapid.T, op *fsvirt.Op) {
			op.Name = ""
			op.Size = rapid.SampledFrom([]int64{0, 4, 64}).Draw(t, "size")
		}),
		"removexattr": xattrOp(fsvirt.OpRemovexattr, nil),
		"rm-r": func(t *rapid.T) {
			// What rm -r does: unlink every entry of a directory, deepest
			// first, then rmdir it.
			inv := m.pickLive(t, false)
			var dirs []string
			for _, p := range m.shadow.Paths(inv) {
				if strings.HasSuffix(p, "/") {
					dirs = append(dirs, p)
				}
			}
			if len(dirs) == 0 {
				t.SkipNow()
			}
			dir := rapid.SampledFrom(dirs).Draw(t, "dir")
			var under []string
			for _, p := range m.shadow.Paths(inv) {
				if strings.HasPrefix(p, dir) {
					under = append(under, p)
				}
			}
			slices.Reverse(under) // children before parents
			for _, p := range under {
				op := fsvirt.Op{Kind: fsvirt.OpUnlink, Dirfd: fsvirt.AtCWD, Path: "/" + p}
				if strings.HasSuffix(p, "/") {
					op.Flags = unix.AT_REMOVEDIR
				}
				m.step(t, inv, op)
			}
		},
	}
	if len(m.creds) > 0 {
		actions["setcred"] = func(t *rapid.T) { m.setCred(t, m.pickLive(t, false)) }
	}
	if m.noXattrs {
		for name := range actions {
			if strings.HasSuffix(name, "xattr") {
				delete(actions, name)
			}
		}
	}
	var others []string // what addThenRemove may do in between: an action of one invocation
	for _, name := range slices.Sorted(maps.Keys(actions)) {
		if name != "" && name != "begin" && name != "end" {
			others = append(others, name)
		}
	}
	// The name sorts after every other: rapid draws an action by its index among the sorted names,
	// and a name sorted among them would make the recorded fail files decode to other steps.
	actions["z-add-then-remove"] = func(t *rapid.T) { m.addThenRemove(t, others, actions) }
	return actions
}

// addThenRemove is a burst of steps by one invocation with no check in between: it adds a name to a
// directory of the shared tree that the view has not changed, then removes or moves names there (a
// shared one, the new one and the directory, the directory itself) or takes random steps, one to
// three times, then lists the directory. A step that skips (an undefined op, a random step that
// needs a handle the invocation lacks) ends the burst.
//
// A view may complete a directory's listing only when something needs all of it (the engine's
// partial directories, impl/layer.go). The check lists every directory of every view, so without
// such bursts no step would ever meet a directory that the view added to and has not completed.
func (m *machine) addThenRemove(t *rapid.T, others []string, actions map[string]func(*rapid.T)) {
	inv := m.pickLive(t, false)
	tree, view := m.tree.Paths(), m.shadow.Paths(inv)
	var dirs []string
	for _, d := range m.dirs {
		shared := children(tree, d)
		if (d == "." || slices.Contains(view, d+"/")) && len(shared) > 0 && slices.Equal(children(view, d), shared) {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		t.SkipNow()
	}
	dir := rapid.SampledFrom(dirs).Draw(t, "dir")
	shared := children(tree, dir)
	sharedIn := dir // where the shared names are now
	name := rapid.SampledFrom(freshNames).Draw(t, "name")
	other := freshNames[1-slices.Index(freshNames, name)]
	in := func(name string) string { return path.Join("/", sharedIn, name) }
	newIsDir := m.add(t, inv, in(name))

	pick := func() string { return rapid.SampledFrom(shared).Draw(t, "shared") }
	rename := func(from, to string, flags int) {
		m.step(t, inv, fsvirt.Op{Kind: fsvirt.OpRename, Dirfd: fsvirt.AtCWD, Path: from, NewDirfd: fsvirt.AtCWD, NewPath: to, Flags: flags})
	}
	remove := func(p string, dir bool) {
		op := fsvirt.Op{Kind: fsvirt.OpUnlink, Dirfd: fsvirt.AtCWD, Path: p}
		if dir {
			op.Flags = unix.AT_REMOVEDIR
		}
		m.step(t, inv, op)
	}

	m.focus, m.focused = inv, true
	defer func() { m.focused = false }()
	for range rapid.IntRange(1, 3).Draw(t, "changes") {
		switch rapid.IntRange(0, 6).Draw(t, "change") {
		case 0: // remove a shared name
			s := pick()
			remove(in(s), m.tree[path.Join(dir, s)].Type == fsvirt.Dir)
		case 1: // move a shared name away, or to another name in the directory
			s := pick()
			to := path.Join("/", rapid.SampledFrom(m.dirs).Draw(t, "to"), other)
			rename(in(s), to, rapid.SampledFrom([]int{0, unix.RENAME_NOREPLACE}).Draw(t, "flags"))
		case 2: // replace a shared name with the new one
			rename(in(name), in(pick()), 0)
		case 3: // exchange them
			rename(in(name), in(pick()), unix.RENAME_EXCHANGE)
		case 4: // remove the new name, then the directory
			remove(in(name), newIsDir)
			// rmdir of the root fails with EBUSY, but with ENOTEMPTY in the copy oracle, whose
			// root is an ordinary directory.
			if sharedIn != "." {
				remove(in(""), true)
			}
		case 5: // rename the directory
			if sharedIn != "." {
				to := path.Join(path.Dir(sharedIn), other)
				rename(in(""), "/"+to, 0)
				sharedIn = to
			}
		default: // a random step of the invocation's
			actions[rapid.SampledFrom(others).Draw(t, "step")](t)
		}
	}

	open := m.step(t, inv, fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: in(""), Flags: unix.O_RDONLY | unix.O_DIRECTORY})
	if open.Errno == 0 {
		m.step(t, inv, fsvirt.Op{Kind: fsvirt.OpGetdents, Fd: fsvirt.Handle(open.Ret)})
		m.step(t, inv, fsvirt.Op{Kind: fsvirt.OpClose, Fd: fsvirt.Handle(open.Ret)})
	}
}

// add makes a new name at p in inv's view, of a drawn kind, and reports whether it is a directory.
func (m *machine) add(t *rapid.T, inv fsvirt.Inv, p string) (isDir bool) {
	op := fsvirt.Op{Dirfd: fsvirt.AtCWD, Path: p}
	switch rapid.IntRange(0, 5).Draw(t, "add") {
	case 0:
		op.Kind, op.Flags, op.Mode = fsvirt.OpOpen, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644
		if open := m.step(t, inv, op); open.Errno == 0 {
			m.step(t, inv, fsvirt.Op{Kind: fsvirt.OpClose, Fd: fsvirt.Handle(open.Ret)})
		}
		return false
	case 1:
		op.Kind, op.Mode = fsvirt.OpMkdir, 0o755
		isDir = true
	case 2:
		op.Kind, op.Data = fsvirt.OpSymlink, []byte(rapid.SampledFrom(symlinkTargets).Draw(t, "target"))
	case 3:
		op.Kind, op.Mode = fsvirt.OpMknod, unix.S_IFIFO|0o644
	case 4: // a new name for a shared file
		op.Kind, op.Path, op.NewDirfd, op.NewPath = fsvirt.OpLink, "/"+rapid.SampledFrom(m.files).Draw(t, "from"), fsvirt.AtCWD, p
	default: // a shared file or directory moved in
		from := rapid.SampledFrom(append(slices.Clone(m.files), m.dirs[1:]...)).Draw(t, "from")
		op.Kind, op.Path, op.NewDirfd, op.NewPath = fsvirt.OpRename, "/"+from, fsvirt.AtCWD, p
		isDir = m.tree[from].Type == fsvirt.Dir
	}
	m.step(t, inv, op)
	return isDir
}

// children lists the names in directory dir ("." for the root) among paths, relative and sorted as
// [fsvirt.Tree.Paths] or [model.Model.Paths] give them.
func children(paths []string, dir string) []string {
	var names []string
	for _, p := range paths {
		p = strings.TrimSuffix(p, "/")
		if path.Dir(p) == dir {
			names = append(names, path.Base(p))
		}
	}
	slices.Sort(names)
	return names
}

// symlinkTargets are what new symlinks point to: names, paths up and down,
// absolute paths, dots, symlinks.
var symlinkTargets = []string{"f", "a", "n", "nothere", "../f", "a/g", "la/b", "/a", "/f", "/n", ".", "..", "l", "loop"}

// at draws where a path op starts: from the working directory, or one time
// in four from a handle of inv with a relative path.
func (m *machine) at(t *rapid.T, inv fsvirt.Inv) (fsvirt.Handle, string) {
	if len(m.live[inv]) > 0 && rapid.IntRange(0, 3).Draw(t, "at-handle") == 0 {
		return m.pickHandle(t, inv), strings.Join(rapid.SliceOfN(rapid.SampledFrom(m.names), 1, 2).Draw(t, "names"), "/")
	}
	return fsvirt.AtCWD, m.drawPath(t, inv)
}

// pickLive draws a live invocation, one with open handles if withHandles, or
// takes the one that addThenRemove focuses on. It skips before drawing
// anything when there is none, so that rapid tries another action instead of
// rejecting the step.
func (m *machine) pickLive(t *rapid.T, withHandles bool) fsvirt.Inv {
	if m.focused { // within addThenRemove
		if withHandles && len(m.live[m.focus]) == 0 {
			t.SkipNow()
		}
		return m.focus
	}
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

// freshNames are names ops create: the tree has none of them.
var freshNames = []string{"n", "m"}

// drawPath draws a path of inv's view, a fresh name in one of its
// directories, or a path made of names, and makes it absolute or gives it a
// trailing slash now and then.
func (m *machine) drawPath(t *rapid.T, inv fsvirt.Inv) string {
	paths := m.shadow.Paths(inv)
	var p string
	switch rapid.IntRange(0, 2).Draw(t, "kind") {
	case 0:
		if len(paths) > 0 {
			p = strings.TrimSuffix(rapid.SampledFrom(paths).Draw(t, "path"), "/")
			break
		}
		fallthrough
	case 1:
		dirs := []string{"."}
		for _, p := range paths {
			if strings.HasSuffix(p, "/") {
				dirs = append(dirs, strings.TrimSuffix(p, "/"))
			}
		}
		p = path.Join(rapid.SampledFrom(dirs).Draw(t, "dir"), rapid.SampledFrom(freshNames).Draw(t, "name"))
	default:
		p = strings.Join(rapid.SliceOfN(rapid.SampledFrom(m.names), 1, 3).Draw(t, "names"), "/")
	}
	if rapid.IntRange(0, 7).Draw(t, "trailing-slash") == 0 {
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
