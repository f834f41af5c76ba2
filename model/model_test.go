package model_test

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/internal/sysexec"
	"github.com/fsvirt/fsvirt/model"
	"github.com/fsvirt/fsvirt/oracle"
)

// step is one op of a case, in invocation inv, with the outcome and mapping
// the model must predict.
type step struct {
	inv     fsvirt.Inv
	op      fsvirt.Op
	want    fsvirt.Outcome
	mapping model.Mapping
	stale   bool
}

func open(path string, flags int) fsvirt.Op {
	op := fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: path, Flags: flags}
	if flags&unix.O_CREAT != 0 || flags&unix.O_TMPFILE == unix.O_TMPFILE {
		op.Mode = 0o644
	}
	return op
}

func openat(dirfd fsvirt.Handle, path string, flags int) fsvirt.Op {
	op := open(path, flags)
	op.Dirfd = dirfd
	return op
}

func read(h fsvirt.Handle, n int64) fsvirt.Op {
	return fsvirt.Op{Kind: fsvirt.OpRead, Fd: h, Size: n}
}

func write(h fsvirt.Handle, data string) fsvirt.Op {
	return fsvirt.Op{Kind: fsvirt.OpWrite, Fd: h, Data: []byte(data)}
}

func pwrite(h fsvirt.Handle, data string, off int64) fsvirt.Op {
	return fsvirt.Op{Kind: fsvirt.OpPwrite, Fd: h, Data: []byte(data), Offset: off}
}

func fstat(h fsvirt.Handle) fsvirt.Op { return fsvirt.Op{Kind: fsvirt.OpStat, Fd: h} }

func ret(n int64) fsvirt.Outcome          { return fsvirt.Outcome{Ret: n} }
func data(s string) fsvirt.Outcome        { return fsvirt.Outcome{Ret: int64(len(s)), Data: []byte(s)} }
func fail(e syscall.Errno) fsvirt.Outcome { return fsvirt.Fail(e) }
func stat(mode uint32, size int64, nlink uint64) fsvirt.Outcome {
	return fsvirt.Outcome{Stat: fsvirt.Stat{Mode: mode, Size: size, Nlink: nlink, Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}}
}

func pathOp(kind fsvirt.OpKind, path string) fsvirt.Op {
	return fsvirt.Op{Kind: kind, Dirfd: fsvirt.AtCWD, Path: path}
}

func lstat(path string) fsvirt.Op {
	op := pathOp(fsvirt.OpFstatat, path)
	op.Flags = unix.AT_SYMLINK_NOFOLLOW
	return op
}

func statat(dirfd fsvirt.Handle, path string) fsvirt.Op {
	return fsvirt.Op{Kind: fsvirt.OpFstatat, Dirfd: dirfd, Path: path}
}

func unlink(path string, flags int) fsvirt.Op {
	op := pathOp(fsvirt.OpUnlink, path)
	op.Flags = flags
	return op
}

func mkdir(path string) fsvirt.Op {
	op := pathOp(fsvirt.OpMkdir, path)
	op.Mode = 0o755
	return op
}

func mkdirat(dirfd fsvirt.Handle, path string) fsvirt.Op {
	op := mkdir(path)
	op.Dirfd = dirfd
	return op
}

func rename(from, to string, flags int) fsvirt.Op {
	return fsvirt.Op{Kind: fsvirt.OpRename, Dirfd: fsvirt.AtCWD, Path: from, NewDirfd: fsvirt.AtCWD, NewPath: to, Flags: flags}
}

func link(from, to string) fsvirt.Op {
	return fsvirt.Op{Kind: fsvirt.OpLink, Dirfd: fsvirt.AtCWD, Path: from, NewDirfd: fsvirt.AtCWD, NewPath: to}
}

func symlink(target, path string) fsvirt.Op {
	op := pathOp(fsvirt.OpSymlink, path)
	op.Data = []byte(target)
	return op
}

func getdents(h fsvirt.Handle) fsvirt.Op { return fsvirt.Op{Kind: fsvirt.OpGetdents, Fd: h} }

func listing(names ...string) fsvirt.Outcome {
	var ents []fsvirt.Dirent
	for _, n := range names {
		typ := uint8(unix.DT_REG)
		switch n[len(n)-1] {
		case '/':
			n, typ = n[:len(n)-1], unix.DT_DIR
		case '@':
			n, typ = n[:len(n)-1], unix.DT_LNK
		}
		ents = append(ents, fsvirt.Dirent{Name: n, Type: typ})
	}
	return fsvirt.Outcome{Ret: int64(len(ents)), Dirents: ents}
}

const (
	pass     = model.PassThrough
	redirect = model.Redirect
	copyUp   = model.CopyUp
)

var cases = []struct {
	name    string
	tree    []string
	steps   []step
	copyUps int // of invocation 0, at the end
}{{
	name:  "read-only-open-of-untouched-file-passes-through",
	tree:  []string{"file f hello"},
	steps: []step{{op: open("f", unix.O_RDONLY), want: ret(0)}, {op: read(0, 9), want: data("hello")}},
}, {
	name: "write-open-copies-up-once",
	tree: []string{"dir a", "file a/f hello", "symlink l -> a/f"},
	steps: []step{
		{op: open("a/f", unix.O_WRONLY), want: ret(0), mapping: copyUp},
		{op: open("/l", unix.O_RDWR), want: ret(1), mapping: redirect},
		{op: write(0, "J"), want: ret(1), mapping: redirect},
		{op: read(1, 9), want: data("Jello"), mapping: redirect},
	},
	copyUps: 1,
}, {
	name: "o-trunc-read-only-copies-up-and-truncates",
	tree: []string{"file f hello"},
	steps: []step{
		{op: open("f", unix.O_RDONLY|unix.O_TRUNC), want: ret(0), mapping: copyUp},
		{op: fstat(0), want: stat(unix.S_IFREG|0o644, 0, 1), mapping: redirect},
	},
	copyUps: 1,
}, {
	name: "fd-opened-before-copy-up-keeps-the-shared-file",
	tree: []string{"file f hello"},
	steps: []step{
		{op: open("f", unix.O_RDONLY), want: ret(0)},
		{op: open("f", unix.O_RDWR|unix.O_TRUNC), want: ret(1), mapping: copyUp},
		{op: read(0, 9), want: data("hello"), stale: true},
		{op: fstat(0), want: stat(unix.S_IFREG|0o644, 5, 1), stale: true},
	},
	copyUps: 1,
}, {
	name: "other-invocation-does-not-see-writes",
	tree: []string{"file f hello"},
	steps: []step{
		{op: open("f", unix.O_WRONLY|unix.O_APPEND), want: ret(0), mapping: copyUp},
		{op: write(0, "!"), want: ret(1), mapping: redirect},
		{inv: 1, op: open("f", unix.O_RDONLY), want: ret(0)},
		{inv: 1, op: read(0, 9), want: data("hello")},
	},
	copyUps: 1,
}, {
	name: "create-through-dangling-symlink-makes-the-target",
	tree: []string{"symlink d -> nothere"},
	steps: []step{
		{op: open("d", unix.O_WRONLY|unix.O_CREAT), want: ret(0), mapping: redirect},
		{op: open("nothere", unix.O_RDONLY), want: ret(1), mapping: redirect},
	},
}, {
	name:  "creat-excl-does-not-follow-a-symlink",
	tree:  []string{"symlink d -> nothere"},
	steps: []step{{op: open("d", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL), want: fail(unix.EEXIST)}},
}, {
	name: "trailing-slash",
	tree: []string{"file f hello", "symlink loop -> loop"},
	steps: []step{
		{op: open("f/", unix.O_RDONLY), want: fail(unix.ENOTDIR)},
		{op: open("/loop/", unix.O_WRONLY|unix.O_CREAT), want: fail(unix.EISDIR)},
		{op: open("loop/", unix.O_RDONLY), want: fail(unix.ELOOP)},
	},
}, {
	name: "dotdot-after-a-symlink-is-the-target's-parent",
	tree: []string{"dir a", "dir a/b", "file f top", "symlink lb -> a/b"},
	steps: []step{
		{op: open("lb/../../f", unix.O_RDONLY), want: ret(0)},
		{op: read(0, 9), want: data("top")},
	},
}, {
	name: "dirfd",
	tree: []string{"dir a", "file a/f hello", "file g"},
	steps: []step{
		{op: open("a", unix.O_PATH|unix.O_DIRECTORY), want: ret(0)},
		{op: openat(0, "f", unix.O_RDWR), want: ret(1), mapping: copyUp},
		{op: open("g", unix.O_RDONLY), want: ret(2)},
		{op: openat(2, "f", unix.O_RDONLY), want: fail(unix.ENOTDIR)},
		{op: openat(7, "f", unix.O_RDONLY), want: fail(unix.EBADF)},
		{op: openat(7, "/a/f", unix.O_RDONLY), want: ret(3), mapping: redirect},
	},
	copyUps: 1,
}, {
	name: "tmpfile-is-private-and-unlinked",
	tree: []string{"dir a", "file f"},
	steps: []step{
		{op: open("a", unix.O_TMPFILE|unix.O_RDONLY), want: fail(unix.EINVAL)},
		{op: open("f", unix.O_TMPFILE|unix.O_RDWR), want: fail(unix.ENOTDIR)},
		{op: open("a", unix.O_TMPFILE|unix.O_RDWR), want: ret(0), mapping: redirect},
		{op: pwrite(0, "xy", 3), want: ret(2), mapping: redirect},
		{op: fstat(0), want: stat(unix.S_IFREG|0o644, 5, 0), mapping: redirect},
	},
}, {
	name: "o-path-fd-only-stats",
	tree: []string{"file f hello", "symlink l -> f"},
	steps: []step{
		{op: open("f", unix.O_PATH|unix.O_RDWR|unix.O_TRUNC), want: ret(0)},
		{op: read(0, 9), want: fail(unix.EBADF)},
		{op: fstat(0), want: stat(unix.S_IFREG|0o644, 5, 1)},
		{op: open("l", unix.O_RDONLY|unix.O_NOFOLLOW), want: fail(unix.ELOOP)},
		{op: open("l", unix.O_PATH|unix.O_NOFOLLOW), want: ret(1)},
		{op: fstat(1), want: stat(unix.S_IFLNK|0o777, 1, 1)},
	},
}, {
	name: "pwrite-with-o-append-writes-at-the-end",
	tree: []string{"file f hello"},
	steps: []step{
		{op: open("f", unix.O_WRONLY|unix.O_APPEND), want: ret(0), mapping: copyUp},
		{op: pwrite(0, "!", 0), want: ret(1), mapping: redirect},
		{op: pwrite(0, "!", -1), want: fail(unix.EINVAL)},
		{op: fstat(0), want: stat(unix.S_IFREG|0o644, 6, 1), mapping: redirect},
	},
	copyUps: 1,
}, {
	name: "directories-refuse-writes",
	tree: []string{"dir a"},
	steps: []step{
		{op: open("a", unix.O_RDWR), want: fail(unix.EISDIR)},
		{op: open("a", unix.O_RDONLY|unix.O_TRUNC), want: fail(unix.EISDIR)},
		{op: open(".", unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL), want: fail(unix.EEXIST)},
		{op: open("a", unix.O_RDONLY), want: ret(0)},
		{op: read(0, 1), want: fail(unix.EISDIR)},
	},
}, {
	name: "unlink-of-a-shared-file-hides-it-in-this-view-only",
	tree: []string{"file f hello"},
	steps: []step{
		{op: unlink("f", 0), want: ret(0), mapping: redirect},
		{op: lstat("f"), want: fail(unix.ENOENT)},
		{inv: 1, op: lstat("f"), want: stat(unix.S_IFREG|0o644, 5, 1)},
		{op: open("f", unix.O_RDWR|unix.O_CREAT|unix.O_EXCL), want: ret(0), mapping: redirect},
		{op: fstat(0), want: stat(unix.S_IFREG|0o644, 0, 1), mapping: redirect},
	},
}, {
	name: "rmdir-of-a-directory-that-looks-empty-in-the-view",
	tree: []string{"dir d", "file d/x", "dir d/e"},
	steps: []step{
		{op: unlink("d", unix.AT_REMOVEDIR), want: fail(unix.ENOTEMPTY)},
		{op: unlink("d/x", 0), want: ret(0), mapping: redirect},
		{op: unlink("d/", unix.AT_REMOVEDIR), want: fail(unix.ENOTEMPTY)},
		{op: unlink("d/e/", unix.AT_REMOVEDIR), want: ret(0), mapping: redirect},
		{op: lstat("d"), want: stat(unix.S_IFDIR|0o755, 0, 2), mapping: redirect},
		{op: unlink("d", unix.AT_REMOVEDIR), want: ret(0), mapping: redirect},
		{op: mkdir("d"), want: ret(0), mapping: redirect},
		{op: open("d", unix.O_RDONLY), want: ret(0), mapping: redirect},
		{op: getdents(0), want: listing("./", "../"), mapping: redirect},
		{inv: 1, op: lstat("d/x"), want: stat(unix.S_IFREG|0o644, 0, 1)},
	},
}, {
	name: "unlink-and-rmdir-errors",
	tree: []string{"dir d", "file f", "symlink l -> d"},
	steps: []step{
		{op: unlink("d", 0), want: fail(unix.EISDIR)},
		{op: unlink("f/", 0), want: fail(unix.ENOTDIR)},
		{op: unlink("l/", 0), want: fail(unix.ENOTDIR)},
		{op: unlink("l/", unix.AT_REMOVEDIR), want: fail(unix.ENOTDIR)},
		{op: unlink("d/.", unix.AT_REMOVEDIR), want: fail(unix.EINVAL)},
		{op: unlink("d/..", unix.AT_REMOVEDIR), want: fail(unix.ENOTEMPTY)},
		{op: unlink("d/.", 0), want: fail(unix.EISDIR)},
		{op: unlink("l", 0), want: ret(0), mapping: redirect},
		{op: lstat("d"), want: stat(unix.S_IFDIR|0o755, 0, 2)},
	},
}, {
	name: "rename-of-a-shared-directory-copies-nothing",
	tree: []string{"dir a", "dir a/b", "file a/b/h deep", "file f hello"},
	steps: []step{
		{op: rename("a", "z", 0), want: ret(0), mapping: redirect},
		{op: open("z/b/h", unix.O_RDONLY), want: ret(0)},
		{op: read(0, 9), want: data("deep")},
		{op: lstat("a"), want: fail(unix.ENOENT)},
		{op: rename("z", "z/b/n", 0), want: fail(unix.EINVAL)},
		{op: rename("z/b", "z", 0), want: fail(unix.ENOTEMPTY)},
		{op: rename("f", "z", 0), want: fail(unix.EISDIR)},
		{op: rename("z", "f", 0), want: fail(unix.ENOTDIR)},
		{op: rename("f", "z/b/h", unix.RENAME_NOREPLACE), want: fail(unix.EEXIST)},
		{op: rename("f", "z/b/h", unix.RENAME_EXCHANGE), want: ret(0), mapping: redirect},
		{op: open("f", unix.O_RDONLY), want: ret(1)},
		{op: read(1, 9), want: data("deep")},
		{inv: 1, op: lstat("z"), want: fail(unix.ENOENT)},
	},
}, {
	name: "hard-link-of-a-shared-file-copies-on-write",
	tree: []string{"file f hello"},
	steps: []step{
		{op: open("f", unix.O_RDONLY), want: ret(0)},
		{op: link("f", "g"), want: ret(0), mapping: redirect},
		{op: lstat("g"), want: stat(unix.S_IFREG|0o644, 5, 2), mapping: redirect},
		{op: open("g", unix.O_WRONLY), want: ret(1), mapping: copyUp},
		{op: write(1, "J"), want: ret(1), mapping: redirect},
		{op: lstat("f"), want: stat(unix.S_IFREG|0o644, 5, 2), mapping: redirect},
		{op: read(0, 9), want: data("hello"), stale: true},
		{op: open("f", unix.O_RDONLY), want: ret(2), mapping: redirect},
		{op: read(2, 9), want: data("Jello"), mapping: redirect},
		{op: rename("f", "g", 0), want: ret(0), mapping: redirect},
		{op: lstat("f"), want: stat(unix.S_IFREG|0o644, 5, 2), mapping: redirect},
		{inv: 1, op: open("f", unix.O_RDONLY), want: ret(0)},
		{inv: 1, op: read(0, 9), want: data("hello")},
		{op: link("/", "x"), want: fail(unix.EPERM)},
	},
	copyUps: 1,
}, {
	name: "directory-fd-opened-before-a-change-lists-the-shared-entries",
	tree: []string{"dir a", "file a/g"},
	steps: []step{
		{op: open("a", unix.O_RDONLY), want: ret(0)},
		{op: mkdirat(0, "n"), want: ret(0), mapping: redirect},
		{op: unlink("a/g", 0), want: ret(0), mapping: redirect},
		{op: getdents(0), want: listing("./", "../", "g"), stale: true},
		{op: fstat(0), want: stat(unix.S_IFDIR|0o755, 0, 2), stale: true},
		{op: statat(0, "."), want: stat(unix.S_IFDIR|0o755, 0, 3), mapping: redirect},
		{op: open("a", unix.O_RDONLY|unix.O_DIRECTORY), want: ret(1), mapping: redirect},
		{op: getdents(1), want: listing("./", "../", "n/"), mapping: redirect},
	},
}, {
	name: "dirfd-and-cwd-of-a-removed-directory",
	tree: []string{"dir a", "dir a/d", "file f"},
	steps: []step{
		{op: open("a/d", unix.O_PATH), want: ret(0)},
		{op: pathOp(fsvirt.OpChdir, "a/d"), want: ret(0)},
		{op: unlink("/a/d", unix.AT_REMOVEDIR), want: ret(0), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpGetcwd}, want: fail(unix.ENOENT)},
		{op: mkdirat(0, "x"), want: fail(unix.ENOENT)},
		{op: openat(0, "x", unix.O_RDWR|unix.O_CREAT), want: fail(unix.ENOENT)},
		{op: statat(0, "."), want: stat(unix.S_IFDIR|0o755, 0, 0)},
		{op: statat(0, "../../f"), want: stat(unix.S_IFREG|0o644, 0, 1)},
		{op: pathOp(fsvirt.OpChdir, ".."), want: ret(0), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpGetcwd}, want: fsvirt.Outcome{Ret: 3, Data: []byte("/a")}, mapping: redirect},
	},
}, {
	name: "cwd-follows-a-renamed-directory",
	tree: []string{"dir a", "dir a/b"},
	steps: []step{
		{op: pathOp(fsvirt.OpChdir, "a/b/"), want: ret(0)},
		{op: rename("/a", "/z", 0), want: ret(0), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpGetcwd}, want: fsvirt.Outcome{Ret: 5, Data: []byte("/z/b")}},
		{op: mkdir("../n"), want: ret(0), mapping: redirect},
		{op: lstat("/z/n"), want: stat(unix.S_IFDIR|0o755, 0, 2), mapping: redirect},
	},
}, {
	name: "symlinks-in-the-merged-namespace",
	tree: []string{"dir a", "file a/g world", "symlink loop -> loop"},
	steps: []step{
		{op: symlink("/a/g", "abs"), want: ret(0), mapping: redirect},
		{op: symlink("../abs", "a/rel"), want: ret(0), mapping: redirect},
		{op: open("a/rel", unix.O_RDONLY), want: ret(0)},
		{op: read(0, 9), want: data("world")},
		{op: lstat("abs"), want: stat(unix.S_IFLNK|0o777, 4, 1), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpReadlink, Dirfd: fsvirt.AtCWD, Path: "abs", Size: 64}, want: data("/a/g"), mapping: redirect},
		{op: symlink("x", "loop"), want: fail(unix.EEXIST)},
		{op: symlink("x", "n/"), want: fail(unix.ENOENT)},
		{op: mkdir("loop/"), want: fail(unix.EEXIST)},
		{op: unlink("loop/", 0), want: fail(unix.ENOTDIR)},
		{op: pathOp(fsvirt.OpAccess, "loop"), want: fail(unix.ELOOP)},
	},
}, {
	name: "metadata-changes-copy-up",
	tree: []string{"file 0755 f hello", "symlink l -> f"},
	steps: []step{
		{op: fsvirt.Op{Kind: fsvirt.OpChmod, Dirfd: fsvirt.AtCWD, Path: "l", Mode: 0o4755}, want: ret(0), mapping: copyUp},
		{op: lstat("f"), want: stat(unix.S_IFREG|0o4755, 5, 1), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpChown, Dirfd: fsvirt.AtCWD, Path: "f", Uid: -1, Gid: -1}, want: ret(0), mapping: redirect},
		{op: lstat("f"), want: stat(unix.S_IFREG|0o755, 5, 1), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpTruncatePath, Dirfd: fsvirt.AtCWD, Path: "l", Size: 2}, want: ret(0), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpUtimens, Dirfd: fsvirt.AtCWD, Path: "l", Time: 1e9, Flags: unix.AT_SYMLINK_NOFOLLOW}, want: ret(0), mapping: copyUp},
		{inv: 1, op: lstat("f"), want: stat(unix.S_IFREG|0o755, 5, 1)},
		{op: fsvirt.Op{Kind: fsvirt.OpTruncatePath, Dirfd: fsvirt.AtCWD, Path: "/", Size: 2}, want: fail(unix.EISDIR)},
	},
	copyUps: 2,
}, {
	name: "mknod-makes-fifos-and-files",
	tree: []string{"dir a"},
	steps: []step{
		{op: fsvirt.Op{Kind: fsvirt.OpMknod, Dirfd: fsvirt.AtCWD, Path: "a/p", Mode: unix.S_IFIFO | 0o666}, want: ret(0), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpMknod, Dirfd: fsvirt.AtCWD, Path: "a/r", Mode: 0o600}, want: ret(0), mapping: redirect},
		{op: lstat("a/p"), want: stat(unix.S_IFIFO|0o644, 0, 1), mapping: redirect},
		{op: lstat("a/r"), want: stat(unix.S_IFREG|0o600, 0, 1), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpTruncatePath, Dirfd: fsvirt.AtCWD, Path: "a/p", Size: 1}, want: fail(unix.EINVAL)},
	},
}, {
	name: "xattrs-copy-up-once",
	tree: []string{"file f hello", "symlink l -> f"},
	steps: []step{
		{op: fsvirt.Op{Kind: fsvirt.OpGetxattr, Dirfd: fsvirt.AtCWD, Path: "f", Name: "user.a", Size: 64}, want: fail(unix.ENODATA)},
		{op: fsvirt.Op{Kind: fsvirt.OpSetxattr, Dirfd: fsvirt.AtCWD, Path: "f", Name: "user.a", Data: []byte("v"), Flags: unix.XATTR_REPLACE}, want: fail(unix.ENODATA)},
		{op: fsvirt.Op{Kind: fsvirt.OpSetxattr, Dirfd: fsvirt.AtCWD, Path: "l", Name: "user.a", Data: []byte("v")}, want: ret(0), mapping: copyUp},
		{op: fsvirt.Op{Kind: fsvirt.OpSetxattr, Dirfd: fsvirt.AtCWD, Path: "f", Name: "user.a", Data: []byte("v"), Flags: unix.XATTR_CREATE}, want: fail(unix.EEXIST)},
		{op: fsvirt.Op{Kind: fsvirt.OpGetxattr, Dirfd: fsvirt.AtCWD, Path: "f", Name: "user.a", Size: 64}, want: data("v"), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpListxattr, Dirfd: fsvirt.AtCWD, Path: "f", Size: 2}, want: fail(unix.ERANGE)},
		{op: fsvirt.Op{Kind: fsvirt.OpListxattr, Dirfd: fsvirt.AtCWD, Path: "f", Size: 64}, want: data("user.a\x00"), mapping: redirect},
		{op: fsvirt.Op{Kind: fsvirt.OpRemovexattr, Dirfd: fsvirt.AtCWD, Path: "f", Name: "user.a"}, want: ret(0), mapping: redirect},
		{inv: 1, op: fsvirt.Op{Kind: fsvirt.OpListxattr, Dirfd: fsvirt.AtCWD, Path: "f", Size: 0}, want: ret(0)},
	},
	copyUps: 1,
}}

func TestModel(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := model.New(fsvirt.MustParseTree(tc.tree...), 0o022).WithOwner(uint32(os.Getuid()), uint32(os.Getgid()))
			for inv := range fsvirt.Inv(2) {
				if err := m.Begin(inv); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range tc.steps {
				got, dec := m.Apply(s.inv, s.op)
				if !got.Equal(s.want) || dec != (model.Decision{Mapping: s.mapping, Stale: s.stale}) {
					t.Errorf("inv %d: %v = %v %+v, want %v %+v", s.inv, s.op, got, dec, s.want, model.Decision{Mapping: s.mapping, Stale: s.stale})
				}
			}
			if got := m.CopyUps(0); got != tc.copyUps {
				t.Errorf("%d copy-ups, want %d", got, tc.copyUps)
			}
			for inv := range fsvirt.Inv(2) {
				if err := m.End(inv); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestCasesOnOracles runs the cases on the oracles: the kernel agrees with
// them, but for stale fds, where the view differs on purpose (see the oracle
// package).
func TestCasesOnOracles(t *testing.T) {
	umask, err := sysexec.Umask()
	if err != nil || umask != 0o022 {
		t.Skipf("the cases assume umask 022, not %#o (%v)", umask, err)
	}
	oracles := map[string]func(shared, tmp string) *oracle.Oracle{"copy": oracle.NewCopy}
	if oracle.HaveOverlay() == nil {
		oracles["overlay"] = oracle.NewOverlay
	}
	for name, newOracle := range oracles {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				shared, tmp := t.TempDir(), t.TempDir()
				if strings.HasPrefix(tc.name, "xattrs") {
					if err := sysexec.HaveUserXattrs(shared); err != nil {
						t.Skipf("user xattrs are not supported here (tmpfs before Linux 6.6): %v", err)
					}
				}
				if err := sysexec.Build(shared, fsvirt.MustParseTree(tc.tree...)); err != nil {
					t.Fatal(err)
				}
				o := newOracle(shared, tmp)
				for inv := range fsvirt.Inv(2) {
					if err := o.Begin(inv); err != nil {
						t.Fatal(err)
					}
					defer func() {
						if err := o.End(inv); err != nil {
							t.Error(err)
						}
					}()
				}
				for _, s := range tc.steps {
					if got := o.Do(s.inv, s.op); got.Equal(s.want) == s.stale {
						t.Errorf("inv %d: %v = %v, want %v (stale: %v)", s.inv, s.op, got, s.want, s.stale)
					}
				}
			})
		}
	}
}

func TestDefined(t *testing.T) {
	m := model.New(fsvirt.MustParseTree("dir a", "symlink up -> ..", "symlink a/up -> .."), 0o022)
	if err := m.Begin(0); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"a/..":      true,
		"a/up/a":    true,
		"..":        false,
		"/a/../../": false,
		"up":        false,
	} {
		if got := m.Defined(0, open(path, unix.O_RDONLY)); got != want {
			t.Errorf("Defined(open %q) = %v, want %v", path, got, want)
		}
	}
	if !m.Defined(0, open("up", unix.O_PATH|unix.O_NOFOLLOW)) {
		t.Errorf("an unfollowed symlink to .. does not climb")
	}
}
