package impl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/fsvirt/fsvirt/internal/notify"
	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"
)

// Config configures a Pool.
type Config struct {
	// Workers is the number of worker threads, each with its own filter; default 1.
	Workers int
	// Trees are the directories to virtualize; default "/", with /proc, /sys and /dev passed
	// through, except /dev/shm. A tree inside one of those (/dev/shm/t) is virtualized whole.
	Trees []string
	// Store is the directory that holds the user's store root, Store/fsvirt-UID, in which every
	// run and pool of the user keeps its private layers; default $TMPDIR, else /var/tmp. The store
	// root is made 0700 if missing, and refused if it is a symlink, not a directory, another
	// user's or writable by others. No view can see it.
	Store string
	// Policy chooses how unchanged files are opened read-only; default PolicyFast.
	Policy Policy
	// Limits bound each invocation's private layer; NewPool fails if they cannot be enforced
	// (see Limits).
	Limits Limits
	// Logger receives supervisor faults; nil discards them.
	Logger *slog.Logger
	// Supervisors is the number of supervisors; default 1. Workers are dealt out among them round
	// robin. Each supervisor answers on as many threads as calls need (see supervisor), so more
	// than one only divides the sharing of its bookkeeping.
	Supervisors int
}

// Pool runs functions in private views on worker threads that carry fsvirt's filter.
type Pool struct {
	prog  []unix.SockFilter
	cwd   int // O_PATH fd of the directory every invocation starts in
	umask int
	ns    *namespace
	store *store
	sups  []*supervisor
	idle  chan *worker
	fence *View // the read-only view of processes invocations left running (see lineage)
	// revoked is what descriptors of an ended invocation's private layer become (see revokeFDs).
	revoked int

	mu      sync.Mutex // guards all and started
	all     []*worker
	started int // workers started so far: picks the next worker's supervisor

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
	closeErr  error
}

type worker struct {
	jobs     chan *job
	job      job      // the one job a worker has at a time, reused: Invoke allocates little
	lineage  *lineage // which tasks of the listener belong to the running invocation
	listener int
	cwd      int // O_PATH fd of the pool's starting directory
	umask    int
	view     atomic.Pointer[View]
	dead     atomic.Bool // the function called runtime.Goexit: the thread is gone
	lis      *listener
	sup      *supervisor // the one that serves lis
}

type job struct {
	ctx    context.Context
	inv    *Invocation
	fn     func(*Invocation) error
	done   chan error
	forked bool // the worker thread had child processes when fn returned (see lineage.end)
}

// Invocation is the handle a function receives: its view's context and counters.
type Invocation struct {
	ctx  context.Context
	view *View
	w    *worker // the one it runs on: Start serves its processes with the worker's supervisor
}

// Context is the context Invoke was called with.
func (inv *Invocation) Context() context.Context { return inv.ctx }

// Stats returns what the view has done so far.
func (inv *Invocation) Stats() Stats { return inv.view.Stats() }

// Usage returns what the invocation's private layer holds now (see Limits).
func (inv *Invocation) Usage() Usage { return inv.view.Usage() }

// LayerDir is the directory in the store that holds the invocation's private layer. It is removed
// when Invoke returns; the function itself cannot see it.
func (inv *Invocation) LayerDir() string { return inv.view.dir }

// Changes lists the paths the invocation changed so far. It may be called from the function
// itself: the comparison with the shared tree runs on another thread, which the filter does not
// trap (on the function's own thread each lstat would be answered in the view, by a supervisor
// waiting for the lock Changes holds).
func (inv *Invocation) Changes() []Change {
	out := make(chan []Change, 1)
	go func() { out <- inv.view.Changes() }()
	return <-out
}

// startSupervisors starts n supervisors, or none.
func startSupervisors(log *slog.Logger, feat notify.FeatureSet, n int) ([]*supervisor, error) {
	var sups []*supervisor
	for range n {
		sup, err := newSupervisor(log, feat)
		if err != nil {
			for _, s := range sups {
				s.stop()
			}
			return nil, err
		}
		sups = append(sups, sup)
	}
	return sups, nil
}

// NewPool starts cfg.Workers worker threads, each loading the filter once.
func NewPool(cfg Config) (*Pool, error) {
	feat, err := engineFeatures()
	if err != nil {
		return nil, err
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	prog, err := workerFilter()
	if err != nil {
		return nil, err
	}
	warmPidfd()
	st, err := openStore(cfg.Store)
	if err != nil {
		return nil, err
	}
	ns, err := newNamespace(cfg.Trees, st.root, cfg.Policy)
	if ns != nil {
		ns.threadMode = true
	}
	if err == nil {
		err = st.limit(ns, cfg.Limits)
	}
	if err != nil {
		st.close()
		return nil, err
	}
	sups, err := startSupervisors(log, feat, max(cfg.Supervisors, 1))
	if err != nil {
		st.close()
		return nil, err
	}
	stopAll := func() {
		for _, s := range sups {
			s.stop()
		}
	}
	cwd, err := long.Open(".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		stopAll()
		st.close()
		return nil, fmt.Errorf("open working directory: %w", err)
	}
	revoked, err := newRevoked()
	if err != nil {
		stopAll()
		unix.Close(cwd)
		st.close()
		return nil, err
	}
	umask := unix.Umask(0)
	unix.Umask(umask)
	p := &Pool{prog: prog, cwd: cwd, umask: umask, ns: ns, store: st, sups: sups, revoked: revoked,
		idle: make(chan *worker, cfg.Workers), closed: make(chan struct{})}
	p.fence, _ = newView(ns, st.dir+"/fence") // never made: nothing in it can change
	p.fence.readOnly = true
	for i := 0; i < cfg.Workers; i++ {
		w, err := p.startWorker()
		if err != nil {
			p.Close()
			return nil, err
		}
		p.mu.Lock()
		p.all = append(p.all, w)
		p.mu.Unlock()
		p.idle <- w
	}
	return p, nil
}

// startWorker starts one worker goroutine, locked for life to a thread with its own filter.
func (p *Pool) startWorker() (*worker, error) {
	dup, err := unix.FcntlInt(uintptr(p.cwd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	sup := p.sups[p.started%len(p.sups)]
	p.started++
	p.mu.Unlock()
	w := &worker{jobs: make(chan *job), cwd: dup, umask: p.umask, sup: sup}
	w.job.done = make(chan error, 1)
	ready := make(chan error, 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		// Never unlocked: when this goroutine returns, the thread exits and takes its filter
		// (docs/kernel.md, "Supervisor threads carry no filter") and its private fs_struct with it.
		// Locked twice so that a function calling runtime.UnlockOSThread once cannot move other
		// goroutines onto this thread.
		runtime.LockOSThread()
		runtime.LockOSThread()
		// A cwd and umask of its own, so invocations on different workers do not share them.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			ready <- fmt.Errorf("unshare(CLONE_FS): %w", err)
			return
		}
		// Into the pool's directory while nothing intercepts it: the process's may have moved
		// since the pool started (a worker that replaces a lost one starts later).
		if err := unix.Fchdir(dup); err != nil {
			ready <- fmt.Errorf("fchdir to the pool's working directory: %w", err)
			return
		}
		// Landlock first: once the filter is loaded, the calls that set it up would be the
		// supervisor's to answer. It restricts this thread only (docs/kernel.md, "Landlock
		// underneath").
		if err := restrictThread(landlockABI(sup.feat)); err != nil {
			ready <- err
			return
		}
		fd, err := notify.LoadFilter(p.prog, sup.feat.WaitKillableRecv)
		if err != nil {
			ready <- err
			return
		}
		w.listener = fd
		w.lineage = newLineage(unix.Gettid())
		ready <- nil
		w.run()
	}()
	if err := <-ready; err != nil {
		unix.Close(dup)
		return nil, err
	}
	w.lis = &listener{fd: w.listener, view: w.view.Load, lineage: w.lineage, fence: p.fence}
	if err := w.sup.add(w.lis); err != nil {
		close(w.jobs)
		unix.Close(w.listener)
		unix.Close(dup)
		return nil, err
	}
	return w, nil
}

// run executes jobs on the worker's thread until the pool closes.
func (w *worker) run() {
	moved := false // startWorker put the thread in the pool's directory
	for j := range w.jobs {
		// Start each invocation where the pool started, with the pool's umask: nothing of the
		// previous invocation carries over. The fchdir is itself intercepted (a notification round
		// trip, most of an empty invocation's cost), so it is made only when the previous
		// invocation changed directory: the thread's cwd moves by no other means.
		if moved {
			unix.Fchdir(w.cwd)
			j.inv.view.chdired.Store(false) // that was the reset, not the function
		}
		unix.Umask(w.umask)
		err := w.call(j)
		j.forked = hasChildren()
		moved = j.inv.view.chdired.Load()
		j.done <- err // j is Invoke's again
	}
}

// call runs the function, turning a panic or runtime.Goexit into an error.
func (w *worker) call(j *job) (err error) {
	returned := false
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fsvirt: invocation panicked: %v\n%s", r, debug.Stack())
		} else if !returned {
			// runtime.Goexit cannot be stopped: the goroutine, and with it the thread, ends.
			w.dead.Store(true)
			j.done <- errors.New("fsvirt: invocation called runtime.Goexit; its worker thread was replaced")
		}
	}()
	err = j.fn(j.inv)
	returned = true
	return err
}

// Invoke runs fn on a worker thread in a fresh private view and removes the view afterwards.
//
// If ctx is done before a worker is free, fn does not run and Invoke returns ctx.Err(). Once fn
// runs, Invoke waits for it to return (a thread cannot be preempted safely); from the moment ctx is
// done, every file-system call fn makes on its thread fails with ECANCELED, and Invoke returns
// ctx.Err() joined to fn's error. A panic in fn is recovered and returned as an error.
//
// Only fn's own goroutine is virtualized: goroutines it starts run on other threads and see, and
// change, the shared tree. Invoke must not be called from inside fn.
func (p *Pool) Invoke(ctx context.Context, fn func(inv *Invocation) error) error {
	if err := ctx.Err(); err != nil { // select would pick at random if a worker is free too
		return err
	}
	var w *worker
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closed:
		return errPoolClosed
	case w = <-p.idle:
	}
	defer func() { p.idle <- p.replaceIfDead(w) }()
	if w.dead.Load() {
		return errors.New("fsvirt: worker thread lost and could not be replaced")
	}
	v, err := p.store.newView(p.ns)
	if err != nil {
		return err
	}
	inv := &Invocation{ctx: ctx, view: v, w: w}
	w.view.Store(v)
	j := &w.job
	j.ctx, j.inv, j.fn = ctx, inv, fn
	w.jobs <- j
	var fnErr, ctxErr error
	select {
	case fnErr = <-j.done:
	case <-ctx.Done():
		v.canceled.Store(true)
		ctxErr = ctx.Err()
		fnErr = <-j.done
	}
	forked := j.forked
	*j = job{done: j.done} // keep nothing of fn's alive
	w.view.Store(nil)
	v.busy.end()
	w.lineage.end(v, forked)
	var result *multierror.Error
	if ctxErr != nil {
		result = multierror.Append(result, ctxErr)
	}
	if fnErr != nil {
		result = multierror.Append(result, fnErr)
	}
	if v.created.Load() {
		// Descriptors of files in the private layer that fn left open in this process, which
		// shares them with later invocations. Without a private layer there are none.
		v.closeGhosts() // the supervisor's own, in it
		if _, err := revokeFDs(v.dir, p.revoked); err != nil {
			result = multierror.Append(result, err)
		}
	}
	if err := v.remove(); err != nil {
		result = multierror.Append(result, fmt.Errorf("remove private layer: %w", err))
	}
	if result == nil {
		return nil
	}
	if len(result.Errors) == 1 {
		return result.Errors[0]
	}
	return result
}

// replaceIfDead returns w, or a new worker in its place if w's thread has exited.
func (p *Pool) replaceIfDead(w *worker) *worker {
	if !w.dead.Load() {
		return w
	}
	w.sup.remove(w.lis)
	unix.Close(w.listener)
	unix.Close(w.cwd)
	nw, err := p.startWorker()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.all {
		if x == w {
			if err != nil { // keep the dead worker's slot; Invoke on it fails cleanly
				nw = w
			}
			p.all[i] = nw
		}
	}
	return nw
}

var errPoolClosed = errors.New("fsvirt: pool is closed")

// Close stops the workers (their threads exit, and their filters with them), the supervisor, and
// removes the store. It waits for running invocations to finish.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		var result *multierror.Error
		p.mu.Lock()
		n := len(p.all)
		p.mu.Unlock()
		for i := 0; i < n; i++ {
			w := <-p.idle // waits for running invocations
			if !w.dead.Load() {
				close(w.jobs)
			}
		}
		p.wg.Wait()
		for _, w := range p.all {
			if w.lis != nil {
				w.sup.remove(w.lis)
			}
			unix.Close(w.listener)
			unix.Close(w.cwd)
		}
		for _, s := range p.sups {
			s.stop()
		}
		unix.Close(p.cwd)
		unix.Close(p.revoked)
		if err := p.store.close(); err != nil {
			result = multierror.Append(result, err)
		}
		p.closeErr = result.ErrorOrNil()
	})
	return p.closeErr
}
