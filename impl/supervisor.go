package impl

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsvirt/fsvirt/internal/notify"
	"golang.org/x/sys/unix"
)

// listener is one seccomp listener fd and the view its notifications are answered in.
type listener struct {
	fd   int
	view func() *View // nil: no invocation is running on the listener's thread
	// hup is called once, from the supervisor, when no task uses the filter any more.
	hup func()
	// lineage, in thread mode, tells which tasks belong to the invocation running on the
	// listener's thread; nil: all of them do (process mode).
	lineage *lineage
	// fence, in thread mode, answers the tasks lineage does not admit, and a call that arrives
	// after its view ended (see View.busy): the pool's read-only, empty view.
	fence *View
	// owned: the supervisor closes fd, at hup or when it stops (Invocation.Start's listeners).
	owned bool
	// notified, when set, is called with every notification before it is answered, while ADDFD
	// can still act on the task (a warm worker's revocations, see warm.go).
	notified func(lfd int, id uint64, tid int)

	id      uint64      // set by add; epoll reports it, since fd numbers are reused after close
	closing atomic.Bool // the receivers are to leave

	mu        sync.Mutex
	receivers int           // started and not yet left
	tids      map[int]bool  // the receivers' threads
	waiting   int           // receivers in SECCOMP_IOCTL_NOTIF_RECV, or about to be
	gone      chan struct{} // closed when the last receiver has left
}

// startReceiver starts a receiver of l, counted as waiting. The caller holds l.mu.
func (s *supervisor) startReceiver(l *listener) {
	l.receivers++
	l.waiting++
	go s.receive(l)
}

// supervisor answers the notifications of all its listeners. No thread of it carries a filter, so
// that nothing it does is trapped (docs/kernel.md, "Supervisor threads carry no filter").
//
// Each listener has receivers: threads that wait in SECCOMP_IOCTL_NOTIF_RECV on it, and answer what
// they receive themselves. A task's call sleeps interruptibly until its notification is received,
// and a signal in that window fails it with EINTR (docs/kernel.md, "EINTR before the receive"); so
// one receiver of every listener is always waiting: the one that receives starts another first when
// none is left waiting. A call that takes long, or waits on what its task controls, holds its own
// receiver only. Two wait while none answers, so that the usual call, one at a time, finds one
// waiting and starts none. Each holds its view's turn (View.turn) while it decides and acts on the
// view, and not while it waits on what a task controls: reading and writing the task's memory,
// connecting to a socket. One stuck call then delays neither another view nor its own view's other
// calls. A listener has at most maxReceivers; a receiver that has answered leaves when two others
// wait.
//
// A receive does not end when the last task using the filter goes: the watcher, one thread
// waiting in epoll on every listener, sees that (EPOLLHUP: docs/kernel.md, "A listener hangs up")
// and ends the receivers.
//
// Lock order: supervisor.mu, then listener.mu, then View.turn, then View.mu.
type supervisor struct {
	epfd int
	wake int // eventfd: stop wakes the watcher
	log  *slog.Logger
	// feat is the kernel's feature set, captured once where the engine started (engineFeatures):
	// it decides how every notification is answered, with no lock taken per call.
	feat notify.FeatureSet
	// slow tracks the mounts of slow file systems (slowfs.go), its descriptor of the mount table
	// closed with the supervisor.
	slow slowMounts

	watcher chan struct{} // closed when the watcher has left

	mu        sync.Mutex
	listeners map[uint64]*listener
	nextID    uint64
	stopping  bool
}

// maxReceivers bounds a listener's receivers: past it, calls stuck at once in one listener's tasks
// delay its other calls.
const maxReceivers = 64

// engineFeatures captures the kernel's feature set where an engine (a pool, a run, a warm host)
// starts, and fails as the engine must when the kernel lacks the floor (ADDFD, 5.9) or
// FSVIRT_DISABLE names an unknown feature. The engine's supervisors keep the set (supervisor.feat).
func engineFeatures() (notify.FeatureSet, error) {
	f := notify.Features()
	if err := f.Require(); err != nil {
		return f, err
	}
	return f, notify.ProbeError()
}

func newSupervisor(log *slog.Logger, feat notify.FeatureSet) (*supervisor, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	s := &supervisor{epfd: epfd, wake: wake, log: log, feat: feat,
		listeners: map[uint64]*listener{}, watcher: make(chan struct{}), slow: slowMounts{fd: -1}}
	s.slow.current() // opens the mount table now: the supervisor's descriptors are all made here
	go s.watch()
	return s, nil
}

// add starts answering l's notifications.
func (s *supervisor) add(l *listener) error {
	if s.feat.SyncWakeUp {
		if err := notify.SetSyncWakeUp(l.fd); err != nil {
			return fmt.Errorf("SECCOMP_IOCTL_NOTIF_SET_FLAGS: %w", err)
		}
	}
	l.gone, l.tids = make(chan struct{}), map[int]bool{}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return fmt.Errorf("the supervisor has stopped")
	}
	s.nextID++ // starts at 1: id 0 is the wake eventfd
	l.id = s.nextID
	s.listeners[l.id] = l
	s.mu.Unlock()
	// Events 0: epoll reports EPOLLHUP and EPOLLERR whatever is asked for.
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, l.fd, epollData(l.id)); err != nil {
		s.mu.Lock()
		delete(s.listeners, l.id)
		s.mu.Unlock()
		return fmt.Errorf("epoll_ctl(ADD listener): %w", err)
	}
	l.mu.Lock()
	s.startReceiver(l)
	s.startReceiver(l)
	l.mu.Unlock()
	return nil
}

// epollData stores a listener id in the event's 64-bit user data (the Fd and Pad fields).
func epollData(id uint64) *unix.EpollEvent {
	return &unix.EpollEvent{Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// remove stops answering l's notifications and waits for its receivers to leave; the caller closes
// l's fd afterwards. Removing twice, or after the listener's hup, is harmless.
func (s *supervisor) remove(l *listener) { s.detach(l.id) }

// detach stops answering the listener with id, if it is still served, and returns it once its
// receivers have left; nil when remove or the watcher detached it first.
func (s *supervisor) detach(id uint64) *listener {
	s.mu.Lock()
	l := s.listeners[id]
	delete(s.listeners, id)
	s.mu.Unlock()
	if l != nil {
		unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, l.fd, nil)
		s.endReceivers(l)
	}
	return l
}

// endReceivers makes l's receivers leave and waits for them: a signal interrupts a receiver's
// wait in SECCOMP_IOCTL_NOTIF_RECV (the runtime's handler of SIGURG takes it for a spurious
// preemption request); one that is answering leaves when it has answered.
//
// A receiver still waiting after receiverGrace is left behind, logged: the supervisor must not
// hang on it. It holds its own reference to the listener, and leaves, without touching the fd,
// if its wait ever ends.
func (s *supervisor) endReceivers(l *listener) {
	l.closing.Store(true)
	deadline := time.Now().Add(receiverGrace)
	for {
		l.mu.Lock()
		var stuck []int
		for tid := range l.tids {
			if err := unix.Tgkill(os.Getpid(), tid, unix.SIGURG); err != nil {
				s.log.Warn("cannot signal a receiver", "tid", tid, "err", err)
			}
			stuck = append(stuck, tid)
		}
		l.mu.Unlock()
		select {
		case <-l.gone:
			return
		case <-time.After(time.Millisecond): // a signal came before the wait
		}
		if time.Now().After(deadline) {
			// A receiver may be waiting on a file system whose server has stopped (slowfs.go).
			s.log.Warn("receivers did not leave their wait or their answer; left behind",
				"tids", stuck)
			return
		}
	}
}

// receiverGrace is how long endReceivers signals receivers before it leaves them behind.
const receiverGrace = 5 * time.Second

// stop ends the watcher and every receiver, which finish the answers they are giving, and closes
// the listeners it owns.
func (s *supervisor) stop() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	one := [8]byte{1}
	unix.Write(s.wake, one[:])
	<-s.watcher
	s.mu.Lock()
	ls := make([]*listener, 0, len(s.listeners))
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	for _, l := range ls {
		s.endReceivers(l)
	}
	for _, l := range ls {
		if l.owned { // its tasks' intercepted calls fail with ENOSYS from now on
			unix.Close(l.fd)
		}
	}
	unix.Close(s.epfd)
	unix.Close(s.wake)
	s.slow.close()
}

// watch waits for listeners that no task uses any more (docs/kernel.md, "A listener hangs up"), and
// ends their receivers.
func (s *supervisor) watch() {
	defer close(s.watcher)
	events := make([]unix.EpollEvent, 32)
	for {
		k, err := unix.EpollWait(s.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			s.log.Error("epoll_wait failed; supervisor stops", "err", err)
			return
		}
		for i := range events[:k] {
			id := eventID(&events[i])
			if id == 0 {
				s.mu.Lock()
				stopping := s.stopping
				s.mu.Unlock()
				if stopping {
					return
				}
				continue
			}
			l := s.detach(id)
			if l == nil {
				continue
			}
			if l.hup != nil {
				l.hup()
			}
			if l.owned {
				unix.Close(l.fd)
			}
		}
	}
}

// receive is one of l's receivers (see startReceiver): it waits for a notification, makes sure
// another receiver waits while it answers, and answers, until told to leave or two others wait.
func (s *supervisor) receive(l *listener) {
	runtime.LockOSThread() // asCaller changes this thread's credentials; see also below
	// No signal may interrupt this thread while it answers. SECCOMP_IOCTL_NOTIF_ADDFD with
	// SECCOMP_ADDFD_FLAG_SEND marks the notification answered, then waits, interruptibly, for the
	// task to install the fd. A signal in that window (Go's SIGURG preemption, most often) makes
	// the kernel withdraw the fd but not the answer: the task's syscall returns 0, the ioctl
	// restarts and fails with EINPROGRESS, or ENOENT once the task has gone on with fd 0 as "its"
	// file (docs/kernel.md, "Signals withdraw notifications"; measured by
	// TestSupervisorInjectionUnderSignals: 170 of 600 invocations broken). Blocked signals stay
	// pending for other threads of the process; SIGKILL and SIGSTOP cannot be blocked. While it
	// waits for a notification, SIGURG is let through, so that endReceivers can interrupt the wait.
	restore, err := blockSignals()
	if err != nil {
		s.log.Error("cannot block signals on a supervisor thread; fd injection may fail",
			"err", err)
		// The thread's signal mask is unknown: it must not go back to the runtime.
	} else {
		defer runtime.UnlockOSThread()
		defer restore()
	}
	tid := unix.Gettid()
	l.mu.Lock()
	l.tids[tid] = true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.tids, tid)
		l.receivers--
		if l.receivers == 0 {
			close(l.gone)
		}
		l.mu.Unlock()
	}()
	var n notify.Notif
	var urg unix.Sigset_t
	urg.Val[(unix.SIGURG-1)/64] = 1 << ((unix.SIGURG - 1) % 64)
	for !l.closing.Load() {
		unix.PthreadSigmask(unix.SIG_UNBLOCK, &urg, nil)
		err := notify.RecvWait(l.fd, &n)
		unix.PthreadSigmask(unix.SIG_BLOCK, &urg, nil)
		switch err {
		case nil:
		case unix.EINTR, unix.ENOENT:
			// ENOENT: a signal withdrew it, and the call will notify again.
			continue
		default:
			s.log.Error(
				"seccomp notification receive failed; the listener's calls are no longer answered",
				"err", err)
			l.mu.Lock()
			l.waiting--
			l.mu.Unlock()
			return
		}
		l.mu.Lock()
		l.waiting--
		if l.waiting == 0 && l.receivers < maxReceivers && !l.closing.Load() {
			s.startReceiver(l)
		}
		l.mu.Unlock()
		s.serve(l, &n)
		l.mu.Lock()
		if l.waiting >= 2 { // not needed
			l.mu.Unlock()
			return
		}
		l.waiting++
		l.mu.Unlock()
	}
}

// threadIDs returns the supervisor's receiver threads, for tests that signal them.
func (s *supervisor) threadIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var tids []int
	for _, l := range s.listeners {
		l.mu.Lock()
		for tid := range l.tids {
			tids = append(tids, tid)
		}
		l.mu.Unlock()
	}
	return tids
}

// serve answers notification n, received from l.
func (s *supervisor) serve(l *listener, n *notify.Notif) {
	var v *View
	if l.view != nil {
		v = l.view()
	}
	if l.lineage != nil && int(n.Pid) != l.lineage.worker &&
		(v == nil || !l.lineage.admit(v, int(n.Pid))) {
		v = l.fence // a process an earlier invocation left running (see lineage)
	}
	// Until respond has closed the supervisor's own descriptors: the task can run on, and its
	// invocation end, before that (see View.busy).
	if v != nil && !v.busy.enter() {
		// The invocation ended while this call was on its way: the task outlived it (the
		// worker thread cannot: it is in this call).
		v = l.fence
		if v != nil {
			v.busy.enter()
		}
	}
	if v != nil {
		defer v.busy.leave()
	}
	if l.notified != nil {
		l.notified(l.fd, n.ID, int(n.Pid))
	}
	r := s.answer(l.fd, v, n)
	s.respond(l.fd, n, r)
}

// uncheckedForTest makes every supervisor answer every notification with CONTINUE: the kernel
// then performs each call itself, as if fsvirt had decided nothing. Only tests set it, to show
// that Landlock refuses what a supervisor would let through by mistake (landlock_test.go).
var uncheckedForTest atomic.Bool

// panicOnPathForTest makes answering a call on exactly this path panic (TestPanicAnsweredEIO).
var panicOnPathForTest atomic.Pointer[string]

// answer decides the reply to notification n in view v.
func (s *supervisor) answer(lfd int, v *View, n *notify.Notif) reply {
	if uncheckedForTest.Load() {
		return reply{kind: replyContinue}
	}
	e := byNr[int(n.Data.Nr)]
	if e == nil || e.handling != Virtualized {
		s.log.Error("[bug] notification for a syscall the table does not virtualize",
			"nr", n.Data.Nr)
		return errnoReply(unix.EIO)
	}
	t := tracee{tid: int(n.Pid), call: &callState{}, pidfdGetfd: s.feat.PidfdGetfd}
	defer t.call.release()
	o, err := e.decode(t, &n.Data)
	if v == nil { // a worker thread outside any invocation: read-only opens only
		if err == nil && o.readOnly(false) {
			return reply{kind: replyContinue}
		}
		return errnoReply(unix.EPERM)
	}
	v.count(e.name)
	if err == nil {
		if v.canceled.Load() {
			return errnoReply(unix.ECANCELED)
		}
		if o.kind == opChdir || o.kind == opFchdir {
			v.chdired.Store(true)
		}
		s.slow.prefetch(t, &o) // outside the turn: see slowfs.go
		var r reply
		var stale bool
		r, stale, err = s.decide(lfd, v, t, o, n)
		if stale {
			return reply{kind: replyNone}
		}
		if err == nil {
			return r
		}
	}
	return s.errReply(e.name, err)
}

// decide acts on o in view v within the view's turn. stale: the call is no longer waiting.
func (s *supervisor) decide(lfd int, v *View, t tracee, o op, n *notify.Notif) (
	r reply, stale bool, err error) {
	v.turn.Lock()
	defer v.turn.Unlock()
	// A panic in answering is a supervisor fault like any other: the task gets EIO, the turn is
	// given back, and the other calls go on.
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("[bug] panic answering a call; answering EIO",
				"panic", p, "stack", string(debug.Stack()))
			r, stale, err = reply{}, false, unix.EIO
		}
	}()
	if !o.readOnly(true) && s.feat.IDValid(lfd, n.ID) != nil {
		// The call is no longer waiting: the task died, and its TID may have been reused, while
		// its memory was read, or a signal withdrew the call while it waited for the turn
		// (docs/kernel.md, "Signals withdraw notifications"), and the task has made it again,
		// perhaps answered already. Checked within the turn, before acting: what a view does
		// follows the order of the calls it answers. A lookup acts on nothing; its answer to a dead
		// notification is refused by the kernel (docs/kernel.md, "Notification IDs"). (One ioctl
		// fewer on the commonest calls.)
		return reply{}, true, nil
	}
	if p := panicOnPathForTest.Load(); p != nil && o.unsafePath == *p {
		panic("planted by a test: " + *p)
	}
	r, err = v.do(t, o)
	if err == nil {
		v.markCwd(lfd, n.ID, t)
	}
	v.followCopyUps(lfd, n.ID, t)
	if err == nil && r.kind == replyFD {
		// Injected within the turn: a task whose call a signal withdrew after the file was made
		// restarts it (docs/kernel.md, "Signals withdraw notifications"), and its next notification
		// must find the file rolled back (r.undo), not be rolled back after it. An injection waits
		// for the task only to take the descriptor, which a sleeping task does at once.
		s.respond(lfd, n, r)
		r = reply{kind: replyNone}
	}
	return r, false, err
}

// errReply is the one boundary where an error becomes the errno the task sees. Anything that is not
// an errno is a supervisor fault: logged, answered with EIO, never with CONTINUE.
func (s *supervisor) errReply(sys string, err error) reply {
	if errors.Is(err, errTraceeGone) {
		return reply{kind: replyNone}
	}
	var errno unix.Errno
	if errors.As(err, &errno) && errno != 0 {
		return errnoReply(errno)
	}
	s.log.Error("supervisor fault; answering EIO", "syscall", sys, "err", err)
	return errnoReply(unix.EIO)
}

func (s *supervisor) respond(lfd int, n *notify.Notif, r reply) {
	id := n.ID
	var err error
	switch r.kind {
	case replyNone:
		return
	case replyContinue:
		err = notify.Continue(lfd, id)
	case replyErrno:
		err = notify.Send(lfd, id, 0, r.errno)
	case replyVal:
		err = notify.Send(lfd, id, r.val, 0)
	case replyExec:
		var newfd int
		newfd, err = notify.InstallFD(lfd, id, r.fd, r.cloexec)
		unix.Close(r.fd)
		if err != nil && err != unix.ENOENT {
			// Every notification gets an answer: a full descriptor table (EMFILE) says so.
			err = notify.Send(lfd, id, 0, injectErrno(err))
		} else if err == nil {
			if rerr := r.rewrite(newfd); rerr != nil {
				var errno unix.Errno
				if !errors.As(rerr, &errno) {
					s.log.Error("exec path rewrite failed; answering EIO", "err", rerr)
					errno = unix.EIO
				}
				err = notify.Send(lfd, id, 0, errno)
			} else {
				err = notify.Continue(lfd, id)
			}
		}
	case replyFD:
		var orphan int
		orphan, err = s.feat.AddFD(lfd, id, r.fd, r.cloexec)
		unix.Close(r.fd)
		if err != nil && orphan >= 0 {
			// Injected, then the answer failed (before 5.14 only): the task will retry
			// (docs/kernel.md, "Signals withdraw notifications").
			if sharesFiles(int(n.Pid)) { // thread mode: the task's table is ours
				unix.Close(orphan)
			} else {
				s.log.Warn("an injected fd was left in the task: "+
					"a signal withdrew its syscall between ADDFD and SEND (kernel before 5.14)",
					"fd", orphan, "err", err)
			}
		}
		if err != nil && r.undo != nil {
			r.undo() // the task will retry, or is gone: either way the file must not stay
		}
		if err != nil && err != unix.ENOENT {
			// The task is still waiting: fail closed rather than leave it blocked.
			errno := injectErrno(err)
			if errno == unix.EIO {
				s.log.Error("fd injection failed; answering EIO", "err", err)
			}
			err = notify.Send(lfd, id, 0, errno)
		}
	}
	if err != nil && err != unix.ENOENT {
		s.log.Warn("seccomp answer failed", "err", err)
	}
}

// injectErrno is what a task whose descriptor could not be injected is told: EMFILE for a full
// descriptor table (RLIMIT_NOFILE), as the kernel's own open would say; EIO for anything else,
// which is the supervisor's fault (docs/kernel.md, "Injected descriptors").
func injectErrno(err error) unix.Errno {
	if err == unix.EMFILE {
		return unix.EMFILE
	}
	return unix.EIO
}

// mayWrite reports whether open flags can change a file: a write access mode, O_CREAT, O_TRUNC or
// O_TMPFILE, unless O_PATH makes the kernel ignore them.
func mayWrite(flags uint64) bool {
	f := int(uint32(flags))
	if f&unix.O_PATH != 0 {
		return false
	}
	return f&unix.O_ACCMODE != unix.O_RDONLY || f&(unix.O_CREAT|unix.O_TRUNC|flagTmpfile) != 0
}

// blockSignals blocks every signal on the calling OS thread and returns a function that restores
// the previous mask. The caller must be locked to its thread.
func blockSignals() (restore func(), err error) {
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &all, &old); err != nil {
		return nil, fmt.Errorf("rt_sigprocmask: %w", err)
	}
	return func() { unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil) }, nil
}

// sharesFiles reports whether task tid uses the supervisor's own file descriptor table (kcmp(2)
// KCMP_FILES; docs/kernel.md, "Comparing tasks with kcmp"), as the worker threads of thread mode do
// unless they unshared it.
func sharesFiles(tid int) bool {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(unix.Getpid()), uintptr(tid), kcmpFiles,
		0, 0, 0)
	return errno == 0 && r == 0
}

// sharesMemory reports whether tasks a and b use one address space (kcmp(2) KCMP_VM;
// docs/kernel.md, "Comparing tasks with kcmp"): a child of vfork and its parent.
func sharesMemory(a, b int) bool {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(a), uintptr(b), kcmpVM, 0, 0, 0)
	return errno == 0 && r == 0
}

// KCMP_FILE, KCMP_VM and KCMP_FILES, <linux/kcmp.h>; not in x/sys/unix.
const (
	kcmpFile  = 0
	kcmpVM    = 1
	kcmpFiles = 2
)
