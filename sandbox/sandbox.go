// Package sandbox is fsvirt's Go API: it runs Go functions (a Pool, thread mode) and commands
// (Run, process mode) in private copy-on-write views of the file system, with seccomp user
// notification and no privilege. Nothing a function or command changes reaches the shared tree
// or another view; what it changed can be listed (Changes), kept as a layer, reused by later
// invocations (a named layer) and applied to the real tree (Apply).
//
// It is a thin layer over github.com/fsvirt/fsvirt/impl, the engine, whose documentation has
// the details of views, thread mode and the store.
package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"

	"github.com/fsvirt/fsvirt/impl"
	"github.com/fsvirt/fsvirt/internal/layer"
)

// Config configures a Pool: workers, trees, store, policy, limits per invocation, logger (see
// impl.Config).
type Config = impl.Config

// Limits bound one invocation's private layer (bytes of file data, files); they need root.
type Limits = impl.Limits

// Usage is what a private layer holds.
type Usage = impl.Usage

// Stats counts what a view did.
type Stats = impl.Stats

// Policy chooses how read-only opens of unchanged files are answered: PolicyFast or
// PolicyStrict (see impl.Policy).
type Policy = impl.Policy

const (
	PolicyFast   = impl.PolicyFast
	PolicyStrict = impl.PolicyStrict
)

// Invocation is the handle a function receives (see impl.Invocation): its context, counters,
// and Start, which starts a process in its view.
type Invocation = impl.Invocation

// Kinds of Change.
const (
	Added    = layer.Added
	Modified = layer.Modified
	Deleted  = layer.Deleted
)

// Change is a path an invocation changed; Kind is Added, Modified or Deleted.
type Change struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
}

func changes(cs []impl.Change) []Change {
	out := make([]Change, 0, len(cs))
	for _, c := range cs {
		out = append(out, Change{Kind: layer.KindWord(c.Kind), Path: c.Path})
	}
	return out
}

// Changes lists the paths inv changed so far, sorted.
func Changes(inv *Invocation) []Change { return changes(inv.Changes()) }

// PanicError is what Invoke returns when the function panicked: its message is one line, the
// stack is in Stack.
type PanicError struct {
	Value any    // what the function panicked with
	Stack []byte // the panicking goroutine's stack (runtime/debug.Stack)
}

func (e *PanicError) Error() string {
	return "sandbox: invocation panicked: " + strings.Join(strings.Fields(fmt.Sprint(e.Value)), " ")
}

// Options are per invocation.
type Options struct {
	// Keep, when set, receives the invocation's private layer when the function returns, as an
	// OCI layer changeset with fsvirt's record (docs/layers.md); it must be missing or empty.
	Keep string
	// Layer, when set, is a named layer: the invocation starts from its changes and saves its
	// view's changes back into it when the function returns, whatever it returned. Another
	// invocation or run using it meanwhile is refused. Not with Keep.
	Layer string
	// Limits, when set, bound this invocation's private layer instead of Config.Limits (see
	// impl.Limits): they need root, and Invoke fails before fn runs when they cannot be enforced.
	Limits Limits
}

// Pool runs functions in private views on worker threads.
type Pool struct{ p *impl.Pool }

// NewPool starts cfg.Workers worker threads, each loading the filter once.
func NewPool(cfg Config) (*Pool, error) {
	p, err := impl.NewPool(cfg)
	if err != nil {
		return nil, err
	}
	return &Pool{p}, nil
}

// Close stops the workers and removes the pool's store.
func (p *Pool) Close() error { return p.p.Close() }

// Invoke runs fn on a worker thread in a fresh private view, as impl.Pool.Invoke does (only
// fn's own goroutine is in the view; processes go through inv.Start), with opts: its limits,
// the named layer it starts from and is saved into, or where its layer is kept. A panic in fn
// is returned as a *PanicError.
func (p *Pool) Invoke(ctx context.Context, opts Options, fn func(inv *Invocation) error) error {
	if opts.Keep != "" && opts.Layer != "" {
		return fmt.Errorf("sandbox: Keep and Layer together: a layer is saved in its own directory")
	}
	var named *impl.Layer
	if opts.Layer != "" {
		var err error
		if named, err = impl.OpenLayer(opts.Layer); err != nil {
			return err
		}
		defer named.Close()
	}
	return p.p.Invoke(ctx, func(inv *Invocation) (err error) {
		if opts.Limits != (Limits{}) {
			if err := inv.SetLimits(opts.Limits); err != nil {
				return err
			}
		}
		if named != nil {
			if err := inv.LoadLayer(named); err != nil {
				return err
			}
		}
		err = call(fn, inv)
		var serr error
		switch {
		case named != nil:
			serr = inv.SaveLayer(named)
		case opts.Keep != "":
			serr = inv.Keep(opts.Keep)
		}
		if serr != nil && err == nil {
			err = serr
		} else if serr != nil {
			err = fmt.Errorf("%w (and the layer: %v)", err, serr)
		}
		return err
	})
}

// call runs fn, turning a panic into a *PanicError.
func call(fn func(*Invocation) error, inv *Invocation) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return fn(inv)
}

// RunOptions configure one command run in a view of its own (process mode).
type RunOptions struct {
	Trees  []string // virtualized trees; default "/" (see impl.Config)
	Store  string   // the directory of the user's store root; default $TMPDIR, else /var/tmp
	Policy Policy
	Limits Limits
	Keep   string // as Options.Keep
	Layer  string // as Options.Layer
	Dir    string // the command's working directory; default the current one
	Env    []string
	// Stdin, Stdout, Stderr: nil means this process's.
	Stdin, Stdout, Stderr *os.File
}

// Result is how a command ended and what it changed.
type Result struct {
	ExitStatus int      `json:"exit_status"`      // its exit code, 128+N if signal N killed it
	Signal     int      `json:"signal,omitempty"` // the signal that killed it
	NotRun     string   `json:"not_run,omitempty"`
	Changes    []Change `json:"changes"`
	Stats      Stats    `json:"stats"`
	Usage      Usage    `json:"usage"`
}

// Run runs argv (looked up in PATH) and every process it starts in one fresh private view, and
// returns once all of them have ended. The calling process becomes non-dumpable (see impl.Run).
func Run(ctx context.Context, argv []string, opts RunOptions) (*Result, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("sandbox: Run: no command")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("sandbox: Run: %w", err)
	}
	res, err := impl.Run(ctx, impl.RunConfig{
		Trees: opts.Trees, Store: opts.Store, Policy: opts.Policy, Limits: opts.Limits,
		Path: path, Args: argv, Env: opts.Env, Dir: opts.Dir,
		Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr,
		Keep: opts.Keep, Layer: opts.Layer,
	})
	if res == nil {
		return nil, err
	}
	return &Result{ExitStatus: res.ExitStatus, Signal: res.Signal, NotRun: res.NotRun,
		Changes: changes(res.Changes), Stats: res.Stats, Usage: res.Usage}, err
}

// ApplyOptions say how Apply writes a layer.
type ApplyOptions struct {
	Root   string // apply under Root instead of "/"
	DryRun bool   // check and list, change nothing
}

// ConflictError is Apply's refusal: the paths that changed in the tree since the layer's view
// saw them. Nothing was changed.
type ConflictError = layer.ConflictError

// Conflict is one path of a ConflictError, and why.
type Conflict = layer.Conflict

// Apply writes a kept or named layer into the real tree, each file replaced atomically, and
// refuses with a *ConflictError when a file it modifies or deletes changed since (see
// docs/layers.md). It returns the layer's changes.
func Apply(dir string, opts ApplyOptions) ([]Change, error) {
	rec, err := layer.Apply(dir, layer.Options{Root: opts.Root, DryRun: opts.DryRun})
	if rec == nil {
		return nil, err
	}
	out := make([]Change, 0, len(rec.Changes))
	for _, c := range rec.Changes {
		out = append(out, Change{Kind: c.Kind, Path: c.Path})
	}
	return out, err
}
