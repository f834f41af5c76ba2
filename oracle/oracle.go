package oracle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/internal/sysexec"
)

// Oracle runs each invocation's ops with real syscalls on a private tree of
// its own, made at Begin and removed at End.
type Oracle struct {
	shared, tmp string
	// layout makes the invocation's tree in the empty directory dir and
	// returns its root; unlayout undoes what RemoveAll cannot.
	layout   func(dir string) (root string, err error)
	unlayout func(dir string) error
	// overlay: the tree is an overlayfs mount; see [sysexec.Exec]'s
	// CountDirLinks and FilteredListxattr.
	overlay bool
	invs    map[fsvirt.Inv]*session
}

// session is one invocation: its ops run on a thread of its own, which can take other
// credentials ([Oracle.SetCred]) and has its private tree as working directory.
type session struct {
	dir    string
	thread *sysexec.Thread
	x      *sysexec.Exec
}

var (
	_ fsvirt.FS         = (*Oracle)(nil)
	_ fsvirt.CredSetter = (*Oracle)(nil)
)

// NewCopy returns an oracle that gives each invocation a full copy of the
// tree at shared, made under tmp: the isolation a per-invocation chroot gives.
func NewCopy(shared, tmp string) *Oracle {
	o := &Oracle{shared: shared, tmp: tmp, invs: map[fsvirt.Inv]*session{}}
	o.layout = func(dir string) (string, error) {
		t, err := sysexec.Walk(shared)
		if err != nil {
			return "", err
		}
		return dir, sysexec.Build(dir, t)
	}
	o.unlayout = func(string) error { return nil }
	return o
}

// Begin implements [fsvirt.FS].
func (o *Oracle) Begin(inv fsvirt.Inv) error {
	if o.invs[inv] != nil {
		return fmt.Errorf("oracle: invocation %d is live", inv)
	}
	dir, err := os.MkdirTemp(o.tmp, fmt.Sprintf("inv%d-", inv))
	if err != nil {
		return err
	}
	root, err := o.layout(dir)
	if err == nil {
		err = os.Chmod(dir, 0o755) // any caller may reach the tree
	}
	if err != nil {
		return errors.Join(err, o.unlayout(dir), os.RemoveAll(dir))
	}
	s := &session{dir: dir}
	if s.thread, err = sysexec.NewThread(); err != nil {
		return errors.Join(err, o.unlayout(dir), os.RemoveAll(dir))
	}
	s.thread.Run(func() { s.x, err = sysexec.NewInCwd(root) })
	if err != nil {
		s.thread.Close()
		return errors.Join(err, o.unlayout(dir), os.RemoveAll(dir))
	}
	s.x.CountDirLinks, s.x.FilteredListxattr = o.overlay, o.overlay
	o.invs[inv] = s
	return nil
}

// SetCred implements [fsvirt.CredSetter]: the invocation's thread takes c (see
// [sysexec.SetCred]). It needs root.
func (o *Oracle) SetCred(inv fsvirt.Inv, c fsvirt.Cred) error {
	var err error
	o.invs[inv].thread.Run(func() { err = sysexec.SetCred(c) })
	return err
}

// Do implements [fsvirt.FS].
func (o *Oracle) Do(inv fsvirt.Inv, op fsvirt.Op) fsvirt.Outcome {
	if op.Kind == fsvirt.OpOpen && creatDirectory(op.Flags) {
		return fsvirt.Fail(unix.EINVAL)
	}
	s := o.invs[inv]
	var out fsvirt.Outcome
	s.thread.Run(func() { out = s.x.Do(op) })
	return out
}

// creatDirectory reports whether open flags ask for O_CREAT|O_DIRECTORY once openat has dropped
// what O_PATH ignores. Linux 6.4 (43b450632676, backported to some stable kernels: Debian's 6.1
// has it, its 5.10 not) fails such an open with EINVAL before it reads the path; older kernels
// resolve the path and fail with ENOENT, EISDIR or ENOTDIR, or create a regular file. The oracle
// answers as 6.4 does on every kernel, as the model and the engine do.
func creatDirectory(flags int) bool {
	if flags&unix.O_PATH != 0 {
		flags &= unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	}
	return flags&(unix.O_CREAT|unix.O_DIRECTORY) == unix.O_CREAT|unix.O_DIRECTORY
}

// End implements [fsvirt.FS]: it closes the invocation's fds and removes its
// tree, and fails if the tree is still there.
func (o *Oracle) End(inv fsvirt.Inv) error {
	s := o.invs[inv]
	if s == nil {
		return fmt.Errorf("oracle: invocation %d is not live", inv)
	}
	delete(o.invs, inv)
	var err error
	s.thread.Run(func() { err = errors.Join(s.x.Close(), unix.Chdir("/")) }) // the tree is not busy
	s.thread.Close()
	if err := errors.Join(err, o.unlayout(s.dir)); err != nil {
		return err // the tree may still be mounted: leave it alone
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return err
	}
	if _, err := os.Lstat(s.dir); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("oracle: %s left behind (%v)", s.dir, err)
	}
	return nil
}

// Shared implements [fsvirt.FS].
func (o *Oracle) Shared() (fsvirt.Tree, error) {
	return sysexec.Walk(o.shared)
}
