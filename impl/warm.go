package impl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/fsvirt/fsvirt/internal/notify"
	"golang.org/x/sys/unix"
)

// Warm workers: a process started once and kept running, whose file-system view is replaced by a
// fresh one for each request it serves (fsvirt serve). The worker process and everything it starts
// carry a filter of their own, as in process mode; the listener's view is the running request's,
// and between requests the host's fence view: read-only, empty, so that nothing a worker does
// outside a request reaches the shared tree or a later request.
//
// A request ends (WarmWorker.EndRequest) when the worker has answered it. Then:
//   - the worker's calls are answered in the fence view again, and the request's view takes no
//     more calls (View.busy);
//   - processes the worker started that are still running are fenced, as thread mode fences the
//     processes an invocation left running (see lineage), and killed when the next request begins
//     (BeginRequest): by then the one that posted the answer has gone;
//   - the worker's descriptors of files in the request's private layer are revoked, as thread mode
//     revokes them (revokeFDs): each is made a duplicate of an empty, sealed memfd. Another
//     process's descriptor table can only be changed while a task that shares it waits in a
//     notification (ADDFD with SETFD; docs/kernel.md, "Descriptors opened before a copy-up"): that
//     is done at the worker's first notified call after the end (an HTTP client's connect, say),
//     and a worker that has made none by the time it is to begin the next request is refused it
//     (ErrHeld), to be replaced. Its working directory or a mapping in the layer cannot be revoked:
//     EndRequest reports them (Tainted), and the worker is to be replaced likewise;
//   - the private layer is discarded, after its changes were read.
//
// What a worker keeps in memory between requests is its own: the view isolates file-system state,
// not the process's memory.

// WarmConfig configures the workers of a Warm host.
type WarmConfig struct {
	Trees  []string // as Config.Trees
	Store  string   // as Config.Store
	Policy Policy
	Limits Limits // per request, as Config.Limits
	Logger *slog.Logger

	Path string   // the program to execute, already looked up
	Args []string // its argv, Args[0] included
	Env  []string // its environment (nil: this process's); Start's extraEnv is appended
	Dir  string   // its working directory; "" means the current one

	// Stdin nil means /dev/null; Stdout and Stderr nil the corresponding file of this process.
	// Descriptors the workers inherit never follow copy-ups (see followCopyUps).
	Stdin, Stdout, Stderr *os.File

	// Unisolated starts the workers without filter or view: they see and change the host's
	// files. For measuring what isolation costs (fsvirt serve --no-isolation), nothing else.
	Unisolated bool
}

// Warm starts and serves warm worker processes: one store, one namespace, one supervisor.
type Warm struct {
	cfg   WarmConfig
	st    *store
	ns    *namespace
	sup   *supervisor
	fence *View
	// revoked is what the workers' descriptors of an ended request's layer become (newRevoked).
	revoked int

	removing sync.WaitGroup // private layers of ended requests being removed

	mu      sync.Mutex
	workers map[*WarmWorker]bool
	closed  bool
}

// WarmWorker is one warm worker process.
type WarmWorker struct {
	h       *Warm
	proc    *os.Process
	pid     int
	top     procID // the worker process, with its start time: the top of every request's view
	lis     *listener
	lineage *lineage
	view    atomic.Pointer[View]
	exited  chan struct{} // closed once the worker process has been waited for
	status  int           // its exit status, shell-style; set before exited is closed

	mu       sync.Mutex
	leftover []procID // fenced at the last End; killed at the next BeginRequest
	held     []heldFD // to be revoked at the worker's next notification
	holding  atomic.Bool
}

// WarmRequest is what a request left in its view.
type WarmRequest struct {
	Changes []Change
	Stats   Stats
	Usage   Usage
	// Fenced is how many processes the worker started for the request were still running.
	Fenced int
	// Tainted: the worker process still reaches into the request's private layer through what
	// cannot be revoked (its working directory, a mapping) and must not serve another request.
	Tainted string
	// Revoking is how many of the worker's descriptors reach into the layer: they are revoked at
	// its next notified call, before which it cannot begin another request (ErrHeld).
	Revoking int
}

// ErrHeld is BeginRequest's error for a worker that still holds descriptors of an earlier
// request's private layer: it made no notified call since that request ended. Replace it.
var ErrHeld = errors.New("fsvirt: the warm worker still holds descriptors of an ended request's private layer")

// heldFD is a descriptor of the worker's in a private layer, to be revoked.
type heldFD struct {
	n        int
	dev, ino uint64
	cloexec  bool
}

// NewWarm prepares a host for warm workers of cfg's command. Like Run, it makes this process
// non-dumpable, for good.
func NewWarm(cfg WarmConfig) (*Warm, error) {
	feat, err := engineFeatures()
	if err != nil {
		return nil, err
	}
	if _, err := compiledFilter(); err != nil {
		return nil, err
	}
	if cfg.Path == "" || len(cfg.Args) == 0 {
		return nil, errors.New("fsvirt: warm worker: no command")
	}
	// As in Run: the workers must not reach the supervisor through ptrace or /proc.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	warmPidfd()
	st, err := openStore(cfg.Store)
	if err != nil {
		return nil, err
	}
	ns, err := newNamespace(cfg.Trees, st.root, cfg.Policy)
	if err == nil {
		err = st.limit(ns, cfg.Limits)
	}
	if err != nil {
		st.close()
		return nil, err
	}
	revoked, err := newRevoked()
	if err != nil {
		st.close()
		return nil, err
	}
	sup, err := newSupervisor(cfg.Logger, feat)
	if err != nil {
		unix.Close(revoked)
		st.close()
		return nil, err
	}
	h := &Warm{cfg: cfg, st: st, ns: ns, sup: sup, revoked: revoked, workers: map[*WarmWorker]bool{}}
	h.fence, _ = newView(ns, st.dir+"/fence") // never made: nothing in it can change
	h.fence.readOnly = true
	return h, nil
}

// Start starts one worker process, with extraEnv added to its environment. It returns once the
// command has been executed (or failed to be). Until BeginRequest, its calls are answered in the
// fence view: it reads the shared tree and changes nothing.
func (h *Warm) Start(extraEnv ...string) (*WarmWorker, error) {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, errors.New("fsvirt: warm host is closed")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	sock := fds[0]
	defer unix.Close(sock)
	child := os.NewFile(uintptr(fds[1]), "fsvirt-init-sock")
	proc, err := h.startProcess(child, extraEnv)
	child.Close()
	if err != nil {
		return nil, err
	}
	w := &WarmWorker{h: h, proc: proc, pid: proc.Pid, exited: make(chan struct{})}
	go func() {
		ps, _ := proc.Wait()
		w.status = exitStatus(ps)
		close(w.exited)
	}()
	fail := func(err error) (*WarmWorker, error) {
		proc.Kill()
		<-w.exited
		return nil, fmt.Errorf("start %s: %w", h.cfg.Path, err)
	}
	w.lineage = newLineage(w.pid)
	w.lineage.root = w.pid
	if _, start, err := procStat(w.pid); err == nil {
		w.top = procID{w.pid, start}
	}
	if h.cfg.Unisolated {
		h.mu.Lock()
		h.workers[w] = true
		h.mu.Unlock()
		return w, nil
	}
	lfd, err := recvListener(sock)
	if err != nil {
		return fail(err)
	}
	w.lis = &listener{fd: lfd, view: w.current, lineage: w.lineage, fence: h.fence, owned: true,
		notified: w.revokeHeld}
	if err := h.sup.add(w.lis); err != nil {
		unix.Close(lfd)
		return fail(err)
	}
	// fsvirt-init executes the command: its socket closes on exec, or says what failed.
	failed, err := readInitReport(sock, 0)
	switch {
	case err != nil:
		return fail(err)
	case failed != nil:
		return fail(&fs.PathError{Op: "exec", Path: h.cfg.Path, Err: failed.errno})
	}
	h.mu.Lock()
	h.workers[w] = true
	h.mu.Unlock()
	return w, nil
}

// startProcess starts a worker process through fsvirt-init, which gets child, its end of the
// socket, with extraEnv added to its environment; unisolated, the command itself.
func (h *Warm) startProcess(child *os.File, extraEnv []string) (*os.Process, error) {
	stdin := h.cfg.Stdin
	if stdin == nil {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		defer devnull.Close()
		stdin = devnull
	}
	files := []*os.File{stdin, orStd(h.cfg.Stdout, os.Stdout), orStd(h.cfg.Stderr, os.Stderr), child}
	env := h.cfg.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(env[:len(env):len(env)], extraEnv...)
	// A process group of its own: a timeout kills the worker and what it started at once.
	prog, argv := "/proc/self/exe", initArgv(h.sup.feat, true, 3, "", h.cfg.Path, h.cfg.Args)
	if h.cfg.Unisolated {
		prog, argv, files = h.cfg.Path, h.cfg.Args, files[:3]
	}
	proc, err := os.StartProcess(prog, argv,
		&os.ProcAttr{Dir: h.cfg.Dir, Env: env, Files: files, Sys: &syscall.SysProcAttr{Setpgid: true}})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", initArg0, err)
	}
	return proc, nil
}

// current is the view the worker's calls are answered in: the request's, else the fence.
func (w *WarmWorker) current() *View {
	if v := w.view.Load(); v != nil {
		return v
	}
	return w.h.fence
}

// Holds reports whether the worker still holds descriptors of an ended request's private layer,
// which BeginRequest refuses (ErrHeld); they are revoked at its next notified call.
func (w *WarmWorker) Holds() bool { return w.holding.Load() }

// Owns reports whether process pid is the worker or one of the processes it started that no ended
// request left behind: those that may speak for it (a shell handler's curl). Processes a request
// left running (fenced, see lineage) and orphans do not.
func (w *WarmWorker) Owns(pid int) bool {
	if pid == w.pid {
		return true
	}
	w.lineage.mu.Lock()
	defer w.lineage.mu.Unlock()
	_, ok := w.lineage.trace(pid, pid)
	return ok
}

// Processes lists the worker's pid and those of its descendants.
func (w *WarmWorker) Processes() []int {
	out := []int{w.pid}
	for _, id := range descendants(procID{w.pid, 0}) {
		out = append(out, id.pid)
	}
	return out
}

// Pid is the worker process's.
func (w *WarmWorker) Pid() int { return w.pid }

// Exited is closed once the worker process has exited; ExitStatus then says how.
func (w *WarmWorker) Exited() <-chan struct{} { return w.exited }

// ExitStatus is the worker's exit code, or 128+N when signal N killed it; valid once Exited is closed.
func (w *WarmWorker) ExitStatus() int { return w.status }

// BeginRequest gives the worker a fresh, empty view: from now on its calls, and those of the
// processes it starts, are answered there. The processes fenced at the previous request's end
// are killed first.
func (w *WarmWorker) BeginRequest() error {
	if w.view.Load() != nil {
		return errors.New("[bug] fsvirt: warm worker: a request is running already")
	}
	if w.holding.Load() {
		return ErrHeld
	}
	w.killLeftover()
	if w.h.cfg.Unisolated {
		w.view.Store(w.h.fence) // only to mark the request as running
		return nil
	}
	v, err := w.h.st.newView(w.h.ns)
	if err != nil {
		return err
	}
	for _, f := range []*os.File{w.h.cfg.Stdin, w.h.cfg.Stdout, w.h.cfg.Stderr} {
		if f != nil {
			v.inherited = append(v.inherited, int(f.Fd()))
		}
	}
	v.top = w.top // the request's processes descend from the worker
	w.view.Store(v)
	return nil
}

// EndRequest ends the running request (see the comment at the top of this file) and returns what it
// did; its changes and usage (which cost a comparison with the shared tree and a walk of the layer)
// only when report is set. The private layer is removed in the background (Close waits for it; a
// failure goes to the logger): no view reaches it any more. It may be called after the worker has
// exited.
func (w *WarmWorker) EndRequest(report bool) (*WarmRequest, error) {
	v := w.view.Swap(nil)
	if v == nil {
		return nil, errors.New("[bug] fsvirt: warm worker: no request is running")
	}
	if w.h.cfg.Unisolated {
		return &WarmRequest{}, nil
	}
	v.busy.end()
	fenced := w.lineage.endWarm(v)
	w.mu.Lock()
	w.leftover = append(w.leftover, fenced...)
	w.mu.Unlock()
	res := &WarmRequest{Stats: v.Stats(), Fenced: len(fenced)}
	if v.created.Load() {
		if report {
			res.Changes, res.Usage = v.Changes(), v.Usage()
		}
		res.Tainted = reachesInto(w.pid, v.dir)
		if held := heldIn(w.pid, v.dir); len(held) > 0 {
			w.mu.Lock()
			w.held = held
			w.holding.Store(true)
			w.mu.Unlock()
			res.Revoking = len(held)
		}
	}
	w.h.removing.Add(1)
	go func() {
		defer w.h.removing.Done()
		if err := v.remove(); err != nil {
			w.h.cfg.Logger.Error("remove private layer", "dir", v.dir, "err", err)
		}
	}()
	return res, nil
}

// Kill kills the worker, every process it started that can still be found, and waits for the worker.
// A request still running must be ended afterwards.
func (w *WarmWorker) Kill() {
	w.mu.Lock()
	ids := append(w.leftover, w.lineage.fencedIDs()...)
	w.leftover = nil
	w.mu.Unlock()
	// Its descendants are listed first: once it is dead, its children are reparented. Then the
	// process group (one signal for the usual case), then what left it.
	ids = append(ids, descendants(procID{w.pid, 0})...)
	unix.Kill(-w.pid, unix.SIGKILL)
	for _, id := range ids {
		killProc(id)
	}
	w.proc.Kill()
	<-w.exited
	w.h.mu.Lock()
	delete(w.h.workers, w)
	w.h.mu.Unlock()
}

// killLeftover kills the processes fenced at earlier ends, and their descendants.
func (w *WarmWorker) killLeftover() {
	w.mu.Lock()
	ids := w.leftover
	w.leftover = nil
	w.mu.Unlock()
	var all []procID
	for _, id := range ids {
		all = append(all, id)
		all = append(all, descendants(id)...)
	}
	for _, id := range all {
		killProc(id)
	}
}

// Close kills every worker still running, stops the supervisor and removes the store.
func (h *Warm) Close() error {
	h.mu.Lock()
	h.closed = true
	ws := make([]*WarmWorker, 0, len(h.workers))
	for w := range h.workers {
		ws = append(ws, w)
	}
	h.mu.Unlock()
	for _, w := range ws {
		w.Kill()
		if w.view.Load() != nil {
			w.EndRequest(false)
		}
	}
	h.removing.Wait()
	h.sup.stop()
	unix.Close(h.revoked)
	return h.st.close()
}

// endWarm fences, at the end of v's request, the processes of the worker (root) other than the
// worker itself that are still running: those seen during it, and the worker's children. It
// returns them, to be killed.
func (l *lineage) endWarm(v *View) []procID {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.fenced {
		if !alive(id) {
			delete(l.fenced, id)
		}
	}
	if l.fenced == nil {
		l.fenced = map[procID]bool{}
	}
	var out []procID
	fence := func(id procID) {
		if id.pid != l.root && !l.fenced[id] {
			l.fenced[id] = true
			out = append(out, id)
		}
	}
	if l.view == v {
		for _, id := range l.seen {
			if alive(id) {
				fence(id)
			}
		}
	}
	for _, pid := range children(l.root) {
		if _, start, err := procStat(pid); err == nil {
			fence(procID{pid, start})
		}
	}
	l.view, l.seen = nil, nil
	return out
}

// fencedIDs returns the processes fenced so far.
func (l *lineage) fencedIDs() []procID {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]procID, 0, len(l.fenced))
	for id := range l.fenced {
		out = append(out, id)
	}
	return out
}

// children lists the child processes of process pid, of all its threads.
func children(pid int) []int {
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
		for _, f := range bytes.Fields(b) {
			if c, err := strconv.Atoi(string(f)); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// descendants lists the descendants of process id (any start time when id.start is 0) that are
// still its descendants: an orphan has left the tree.
func descendants(id procID) []procID {
	if id.start != 0 && !alive(id) {
		return nil
	}
	var out []procID
	queue := []int{id.pid}
	for len(queue) > 0 && len(out) < 4096 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children(p) {
			if _, start, err := procStat(c); err == nil {
				out = append(out, procID{c, start})
				queue = append(queue, c)
			}
		}
	}
	return out
}

// killProc sends SIGKILL to process id, through a pidfd checked to name that process: its pid may
// have been reused.
func killProc(id procID) {
	fd, err := unix.PidfdOpen(id.pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if _, start, err := procStat(id.pid); err != nil || start != id.start {
		return
	}
	unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// reachesInto says what of process pid, other than its descriptors, still reaches into directory
// dir ("" for nothing): its working directory or root, a file mapping.
func reachesInto(pid int, dir string) string {
	proc := "/proc/" + strconv.Itoa(pid)
	in := func(target string) bool { return within(strings.TrimSuffix(target, " (deleted)"), dir) }
	for _, name := range []string{"cwd", "root"} {
		if t, err := os.Readlink(proc + "/" + name); err == nil && in(t) {
			return "its working directory " + t
		}
	}
	maps, _ := os.ReadFile(proc + "/maps")
	for _, line := range strings.Split(string(maps), "\n") {
		// address perms offset dev inode path: the path is everything after the fifth field.
		f := strings.Fields(line)
		if len(f) >= 6 {
			if i := strings.Index(line, "/"); i >= 0 && in(line[i:]) {
				return "a mapping of " + line[i:]
			}
		}
	}
	return ""
}

// heldIn lists the descriptors of process pid whose files lie in directory dir, deleted or not.
func heldIn(pid int, dir string) []heldFD {
	proc := "/proc/" + strconv.Itoa(pid)
	fds, _ := os.ReadDir(proc + "/fd")
	var out []heldFD
	for _, e := range fds {
		link := filepath.Join(proc, "fd", e.Name())
		t, err := os.Readlink(link)
		if err != nil || !within(strings.TrimSuffix(t, " (deleted)"), dir) {
			continue
		}
		n, err1 := strconv.Atoi(e.Name())
		var st unix.Stat_t
		if err1 != nil || unix.Stat(link, &st) != nil {
			continue
		}
		_, flags, ok := fdInfo(tracee{tid: pid}, n)
		out = append(out, heldFD{n: n, dev: st.Dev, ino: st.Ino, cloexec: ok && flags&unix.O_CLOEXEC != 0})
	}
	return out
}

// revokeHeld revokes the worker's held descriptors while task tid, which shares its descriptor
// table, waits in notification id: each becomes a duplicate of the host's revoked memfd, as
// revokeFDs makes them in thread mode. A descriptor closed or replaced since it was found is left.
func (w *WarmWorker) revokeHeld(lfd int, id uint64, tid int) {
	if !w.holding.Load() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.holding.Load() || (tid != w.pid && !sameFiles(w.pid, tid)) {
		return
	}
	var left []heldFD
	for _, h := range w.held {
		var st unix.Stat_t
		link := "/proc/" + strconv.Itoa(tid) + "/fd/" + strconv.Itoa(h.n)
		if unix.Stat(link, &st) != nil || st.Dev != h.dev || st.Ino != h.ino {
			continue // closed, or another file now
		}
		if err := notify.ReplaceFD(lfd, id, w.h.revoked, h.n, h.cloexec); err != nil {
			left = append(left, h) // the call was withdrawn: at the next one
		}
	}
	w.held = left
	w.holding.Store(len(left) > 0)
}

// sameFiles reports whether tasks a and b share one descriptor table (kcmp KCMP_FILES;
// docs/kernel.md, "Comparing tasks with kcmp").
func sameFiles(a, b int) bool {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(a), uintptr(b), kcmpFiles, 0, 0, 0)
	return errno == 0 && r == 0
}
