package model_test

import (
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
	return fsvirt.Outcome{Stat: fsvirt.Stat{Mode: mode, Size: size, Nlink: nlink}}
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
}}

func TestModel(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := model.New(fsvirt.MustParseTree(tc.tree...), 0o022)
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
