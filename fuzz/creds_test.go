package fuzz

import (
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/internal/propcheck"
	"github.com/fsvirt/fsvirt/internal/sysexec"
)

// SetCred implements [fsvirt.CredSetter]: the worker thread itself takes c, as a caller of that
// user would have it, and the engine reads it as it reads any caller's.
func (e *engine) SetCred(inv fsvirt.Inv, c fsvirt.Cred) (err error) {
	e.call(inv, func(*sysexec.Exec) { err = sysexec.SetCred(c) })
	return err
}

// as makes the program's invocation run as c in the engine, the oracle and the model.
func (p *program) as(c fsvirt.Cred) {
	p.t.Helper()
	p.logf("as %v", c)
	for _, fs := range []fsvirt.CredSetter{p.v.engine, p.v.ref, p.shadow} {
		if err := fs.SetCred(inv, c); err != nil {
			p.fail("as %v: %v", c, err)
		}
	}
}

func actAs(p *program) { p.as(pick(p.src, []fsvirt.Cred{propcheck.Root, propcheck.Nobody})) }

func actChown(p *program) {
	dirfd, path := p.at()
	p.do(fsvirt.Op{Kind: fsvirt.OpChown, Dirfd: dirfd, Path: path, Uid: pick(p.src, []int{-1, 0, 65534}),
		Gid: pick(p.src, []int{-1, 0, 65534, 100}), Flags: pick(p.src, []int{0, unix.AT_SYMLINK_NOFOLLOW})})
}

func actCredChmod(p *program) {
	dirfd, path := p.at()
	p.do(fsvirt.Op{Kind: fsvirt.OpChmod, Dirfd: dirfd, Path: path, Mode: pick(p.src, []uint32{0o700, 0o755, 0o777, 0o1777, 0o2775, 0o4755, 0o2745, 0o640})})
}

func actCreate(p *program) {
	dirfd, path := p.at()
	op := fsvirt.Op{Dirfd: dirfd, Path: path, Mode: 0o664}
	switch p.src.pick(4) {
	case 0:
		op.Kind, op.Flags = fsvirt.OpOpen, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL
	case 1:
		op.Kind, op.Mode = fsvirt.OpMkdir, 0o775
	case 2:
		op.Kind, op.Mode = fsvirt.OpMknod, unix.S_IFIFO|0o644
	default:
		op.Kind, op.Data = fsvirt.OpSymlink, []byte(pick(p.src, []string{"r", "../t/o", "/u/p", "s"}))
	}
	p.do(op)
}

func actXattr(p *program) {
	op := fsvirt.Op{Dirfd: fsvirt.AtCWD, Path: p.path(), Name: pick(p.src, []string{"user.a", "trusted.a"}), Size: 64}
	switch p.src.pick(3) {
	case 0:
		op.Kind, op.Data = fsvirt.OpSetxattr, []byte("v")
	case 1:
		op.Kind = fsvirt.OpGetxattr
	default:
		op.Kind = fsvirt.OpRemovexattr
	}
	p.do(op)
}

// credActions are the op-sequence actions, with more ways to create, chmod and chown, and a
// switch between root and nobody.
var credActions = append(slices.Clone(dirfdActions), actTruncate, actChown, actCredChmod, actCreate, actCreate, actAs)

// FuzzCreds: op sequences of an unprivileged caller, nobody with a supplementary group (and,
// after a switch, root), over a tree of root's and nobody's files with modes that let some
// callers in and keep others out (propcheck.CredTree): every refusal must be the kernel's, and
// every new file's owner too. The engine's worker thread itself holds the credentials. Needs root.
func FuzzCreds(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("the tree holds root's and nobody's files, and the worker thread switches credentials: needs root")
	}
	own, err := sysexec.ThreadCred() // this thread's are the process's: nothing changes them
	if err != nil {
		f.Fatal(err)
	}
	v := newEnv(f)
	propcheck.Reachable(f, v.dir)
	f.Add([]byte{})
	f.Add([]byte{26, 0, 3, 4, 0, 7, 25, 1, 0, 2})
	f.Add([]byte{28, 0, 2, 1, 4, 6, 7, 29, 1, 15, 0, 4, 6, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &program{session: v.start(t, propcheck.CredTree), src: &source{b: data}, names: propcheck.CredNames}
		p.shadow.WithSysctls(propcheck.HostSysctls())
		t.Cleanup(func() { // before the session ends: the worker thread serves the next input too
			if p.live {
				p.v.engine.SetCred(inv, own)
			}
		})
		p.as(propcheck.Nobody)
		for n := 0; n < maxOps && !p.src.done(); n++ {
			pick(p.src, credActions)(p)
		}
		p.as(own) // the views are compared as root: all of them
		p.finish()
	})
}
