package impl

import (
	"bytes"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// In thread mode a worker thread's filter, and with it its listener, is inherited by every process
// the function forks on its thread (C code's fork or posix_spawn; Go's own vfork is refused there,
// see vfork.go, and Invocation.Start gives its processes a listener of their own), and by threads
// it starts outside the Go runtime (docs/kernel.md, "Supervisor threads carry no filter"), and
// outlives the invocation: a process left running after its function returned would otherwise be
// answered in whatever view the worker runs next, another invocation's. A lineage tells, for the
// tasks of a worker's listener other than the worker thread itself, which of them belong to the
// running invocation.
//
// A task belongs to the running invocation when its process descends from this one (the chain of
// parents reaches it) and neither it nor a process on the way was left running by an earlier
// invocation. At the end of an invocation the processes that notified during it and are still alive
// are fenced: they, and anything they start, get the pool's fence view from then on, an empty view
// in which every change to the trees fails with EROFS: they read the shared tree, can change
// nothing in it, and see nothing of any invocation's. So does a process that was orphaned, whose
// chain of parents no longer reaches this one, and a task other than the worker thread that
// notifies between invocations. Processes are told apart by their start time, so a reused pid is a
// new process.
//
// A process the worker thread forked, and that is still alive when the invocation ends, is fenced
// too, whether it made a call during the invocation or not (a fork from C, whose child execs only
// after the function returned): the worker tells whether it has children (hasChildren), and end
// reads which from /proc.
//
// What this cannot see: a thread started on the worker thread outside the Go runtime that outlives
// the invocation is taken for the next invocation's.
//
// Fenced tasks are answered in the listener's fence view (listener.fence): read-only, empty, the
// pool's, so the store stays out of their reach as it does for any view.
type lineage struct {
	worker int // the worker thread's tid: its own calls are always the invocation's
	// root, for a warm worker process (warm.go), is its pid: its threads and its descendants are
	// the request's; 0 in thread mode, where they are this process's.
	root int

	mu     sync.Mutex
	view   *View           // the view seen holds the tasks of
	seen   map[int]procID  // tasks admitted into view, by tid, with their process
	fenced map[procID]bool // left running by earlier invocations
}

// procID identifies a process (or a thread of this one) across pid reuse.
type procID struct {
	pid   int
	start uint64 // starttime in /proc/PID/stat, clock ticks after boot
}

func newLineage(worker int) *lineage { return &lineage{worker: worker} }

// admit reports whether task tid, not the worker thread, which notified while v runs on the
// worker, belongs to v's invocation.
func (l *lineage) admit(v *View, tid int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	// A view that has ended takes no more tasks: end, which follows, might not see this one.
	if v.busy.isEnded() {
		return false
	}
	if l.view != v {
		l.view, l.seen = v, nil
	}
	if _, ok := l.seen[tid]; ok {
		return true
	}
	c, err := tracee{tid: tid}.status()
	if err != nil {
		return false
	}
	id, ok := l.trace(c.tgid, tid)
	if !ok {
		return false
	}
	if l.seen == nil {
		l.seen = map[int]procID{}
	}
	l.seen[tid] = id
	return true
}

// trace returns the identity of task tid of process tgid, and whether it descends from this process
// without passing a fenced one. Preconditions: l.mu is held.
func (l *lineage) trace(tgid, tid int) (procID, bool) {
	if tgid == selfPid { // a thread started on the worker thread outside the Go runtime
		_, start, err := procStat(tid)
		id := procID{tid, start}
		return id, err == nil && !l.fenced[id]
	}
	if l.root != 0 && tgid == l.root { // a thread of the warm worker
		_, start, err := procStat(tgid)
		return procID{tgid, start}, err == nil
	}
	top := selfPid
	if l.root != 0 {
		top = l.root
	}
	var first procID
	for p, depth := tgid, 0; depth < 64; depth++ {
		ppid, start, err := procStat(p)
		if err != nil {
			return first, false
		}
		id := procID{p, start}
		if depth == 0 {
			first = id
		}
		if l.fenced[id] {
			return first, false
		}
		switch ppid {
		case top:
			return first, true
		case 0, 1, selfPid: // selfPid: reparented to this process, a subreaper (warm workers)
			return first, false // orphaned: where it came from is lost
		}
		p = ppid
	}
	return first, false
}

// end fences the processes of v that are still running, once v's invocation has ended, and forgets
// fenced ones that have exited. forked says whether the worker thread had child processes then.
func (l *lineage) end(v *View, forked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.fenced {
		if !alive(id) {
			delete(l.fenced, id)
		}
	}
	fence := func(id procID) {
		if l.fenced == nil {
			l.fenced = map[procID]bool{}
		}
		l.fenced[id] = true
	}
	if l.view == v {
		for _, id := range l.seen {
			if alive(id) {
				fence(id)
			}
		}
	}
	if forked {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(selfPid) + "/task/" + strconv.Itoa(l.worker) + "/children")
		for _, f := range bytes.Fields(b) {
			pid, err := strconv.Atoi(string(f))
			if err != nil {
				continue
			}
			if _, start, err := procStat(pid); err == nil {
				fence(procID{pid, start})
			}
		}
	}
	l.view, l.seen = nil, nil
}

// hasChildren reports whether the calling thread has child processes, running or exited and not
// waited for, without waiting for any: one system call, which the filter lets through.
func hasChildren() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info,
		unix.WEXITED|unix.WSTOPPED|unix.WCONTINUED|unix.WNOHANG|unix.WNOWAIT|unix.WNOTHREAD|unix.WALL, nil)
	return err != unix.ECHILD
}

func alive(id procID) bool {
	_, start, err := procStat(id.pid)
	return err == nil && start == id.start
}

// procStat reads the parent and start time of task pid from /proc/PID/stat.
func procStat(pid int) (ppid int, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses; it ends at the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errTraceeGone
	}
	f := bytes.Fields(b[i+1:])
	// After comm: state is field 3 of stat(5), ppid 4, starttime 22.
	if len(f) < 20 {
		return 0, 0, errTraceeGone
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	start, err2 := strconv.ParseUint(string(f[19]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, errTraceeGone
	}
	return ppid, start, nil
}
