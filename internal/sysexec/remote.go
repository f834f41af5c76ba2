package sysexec

import (
	"errors"
	"fmt"

	"github.com/fsvirt/fsvirt"
)

// Remote is an [fsvirt.FS] that runs each invocation's ops with an [Exec] on
// the shared tree, on one goroutine per invocation that the caller provides:
// for the engine, the function of a long-lived pool.Invoke, whose worker
// thread is the only one virtualized.
type Remote struct {
	// OwnCwd says that run calls serve on a thread with a working directory of its own (the
	// engine's workers unshare CLONE_FS): serve then changes it to the root, and relative paths
	// resolve against it for real rather than by prefixing the root. Set it before Begin.
	OwnCwd bool
	root   string
	run    func(inv fsvirt.Inv, serve func() error) error
	invs   map[fsvirt.Inv]*remoteInv
}

type remoteInv struct {
	x       *Exec // set before Begin returns
	ops     chan remoteOp
	results chan remoteResult
	done    chan error
}

// remoteOp is an op, or with cred set a change of credentials.
type remoteOp struct {
	op   fsvirt.Op
	cred *fsvirt.Cred
}

type remoteResult struct {
	o   fsvirt.Outcome
	err error
}

var (
	_ fsvirt.FS         = (*Remote)(nil)
	_ fsvirt.CredSetter = (*Remote)(nil)
)

// NewRemote returns a Remote on the tree at root. At Begin, it calls run on a
// new goroutine; run must call serve once, on the goroutine whose syscalls
// are to be tested, and return what serve returns after its own checks (for
// the engine: that the invocation left nothing in the store). serve executes
// ops until End.
func NewRemote(root string, run func(inv fsvirt.Inv, serve func() error) error) *Remote {
	return &Remote{root: root, run: run, invs: map[fsvirt.Inv]*remoteInv{}}
}

// Begin implements [fsvirt.FS]. It returns once serve runs, or with run's
// error if run returns first.
func (r *Remote) Begin(inv fsvirt.Inv) error {
	if r.invs[inv] != nil {
		return fmt.Errorf("remote: invocation %d is live", inv)
	}
	ri := &remoteInv{ops: make(chan remoteOp), results: make(chan remoteResult), done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		ri.done <- r.run(inv, func() error {
			x := New(r.root)
			if r.OwnCwd {
				var err error
				if x, err = NewInCwd(r.root); err != nil {
					return err
				}
			}
			ri.x = x
			close(ready)
			var own *fsvirt.Cred // the thread's credentials before the first SetCred
			for req := range ri.ops {
				if req.cred == nil {
					ri.results <- remoteResult{o: x.Do(req.op)}
					continue
				}
				var err error
				if own == nil {
					var c fsvirt.Cred
					c, err = ThreadCred()
					own = &c
				}
				if err == nil {
					err = SetCred(*req.cred)
				}
				ri.results <- remoteResult{err: err}
			}
			err := x.Close()
			if own != nil {
				err = errors.Join(err, SetCred(*own))
			}
			return err
		})
	}()
	select {
	case <-ready:
		r.invs[inv] = ri
		return nil
	case err := <-ri.done:
		return errors.Join(fmt.Errorf("remote: invocation %d did not start", inv), err)
	}
}

// Do implements [fsvirt.FS].
func (r *Remote) Do(inv fsvirt.Inv, op fsvirt.Op) fsvirt.Outcome {
	ri := r.invs[inv]
	ri.ops <- remoteOp{op: op}
	return (<-ri.results).o
}

// SetCred implements [fsvirt.CredSetter] with [SetCred] on the thread that serves inv: run must
// call serve on a goroutine locked to its thread, and the process must run as root. serve gives
// the thread its own credentials back before it returns.
func (r *Remote) SetCred(inv fsvirt.Inv, c fsvirt.Cred) error {
	ri := r.invs[inv]
	ri.ops <- remoteOp{cred: &c}
	return (<-ri.results).err
}

// End implements [fsvirt.FS]: serve closes the invocation's fds and returns,
// and End returns what run returns.
func (r *Remote) End(inv fsvirt.Inv) error {
	ri := r.invs[inv]
	if ri == nil {
		return fmt.Errorf("remote: invocation %d is not live", inv)
	}
	delete(r.invs, inv)
	close(ri.ops)
	return <-ri.done
}

// Shared implements [fsvirt.FS].
func (r *Remote) Shared() (fsvirt.Tree, error) { return Walk(r.root) }

// FD is the descriptor behind inv's handle h, or -1: the descriptors of an invocation run on a
// thread of this process are this process's. Call it between Do calls.
func (r *Remote) FD(inv fsvirt.Inv, h fsvirt.Handle) int {
	ri := r.invs[inv]
	if ri == nil || ri.x == nil {
		return -1
	}
	return ri.x.FD(h)
}
