package impl

import (
	"github.com/fsvirt/fsvirt/internal/notify"
	"golang.org/x/sys/unix"
)

// Working directories across process trees. A process whose working directory the kernel cannot
// hold (a virtual one: see virtualCwd) passes it to the processes it starts, and they to theirs,
// as the kernel passes its own. The supervisor learns of a new process only at its first call, and
// finds its inheritance then by walking up its ancestors to the nearest one it knows. That walk
// breaks where an ancestor has exited: the process was reparented (to the run's supervisor, a
// subreaper, or to init), and `cd dir && timeout 5 sh -c '...'`, xargs, make's recipes, setsid
// and nohup chains all have such short-lived intermediates.
//
// So the filter notifies every call that makes a process (fork, vfork, clone without
// CLONE_THREAD, and clone3, whose flags the filter cannot read), and the supervisor records, before
// the kernel makes the child, which working directory the forking process has (forkRecord). An
// orphan inherits from the newest record, made before it started, of a parent that has exited
// since and whose kernel working directory is the orphan's: the kernel's own working directory,
// which every process inherits too, ties them together. A record of a parent without a virtual
// working directory says so, so that an orphan of such a parent inherits nothing.
//
// What this cannot tell apart: two processes that fork within the same clock tick (10 ms), both
// from the same kernel working directory with different virtual ones, and both exit before their
// children's first calls. The newest record wins.

// maxForkRecords bounds the records kept; the oldest go first.
const maxForkRecords = 4096

// forkRecord is what the supervisor knows of one fork when the kernel makes it.
type forkRecord struct {
	parent procID
	at     uint64     // clock ticks after boot, like procID.start
	cwd    virtualCwd // the parent's; path "" when it has none
}

// opFork is fork, vfork, clone (making a process) and clone3.
const opFork = opIoctl + 1

func decodeFork(t tracee, d *notify.Data) (op, error) {
	return op{kind: opFork, dirfd: unix.AT_FDCWD}, nil
}

// fork records the forking task's working directory for the child to inherit, and lets the kernel
// make the child.
func (v *View) fork(t tracee) (reply, error) {
	v.mu.Lock()
	n := len(v.cwds)
	v.mu.Unlock()
	if n == 0 {
		return reply{kind: replyContinue}, nil // no virtual working directory to inherit
	}
	key, thread, err := v.cwdKey(t)
	if err != nil || thread {
		// A worker thread's children have it as their parent for as long as it lives: its
		// process, this one.
		return reply{kind: replyContinue}, nil
	}
	p, g, ok := v.virtualCwd(t)
	kernel, err := readlink(t.procPath("cwd"))
	if err != nil {
		return reply{kind: replyContinue}, nil
	}
	_, start, err := procStat(key)
	if err != nil {
		return reply{kind: replyContinue}, nil
	}
	rec := forkRecord{parent: procID{key, start}, at: bootTicks(), cwd: virtualCwd{kernel: kernel}}
	if ok {
		rec.cwd.path, rec.cwd.removed = p, g
	}
	v.mu.Lock()
	if len(v.forks) >= maxForkRecords {
		v.forks = append(v.forks[:0], v.forks[maxForkRecords/2:]...)
	}
	v.forks = append(v.forks, rec)
	v.mu.Unlock()
	return reply{kind: replyContinue}, nil
}

// forkOfLocked returns parent's newest record of a fork made before start (the child's start
// time): the fork that made the child. Preconditions: v.mu is held.
func (v *View) forkOfLocked(parent int, start uint64) (forkRecord, bool) {
	for i := len(v.forks) - 1; i >= 0; i-- {
		r := &v.forks[i]
		if r.parent.pid == parent && r.at <= start+1 && alive(r.parent) {
			return *r, true
		}
	}
	return forkRecord{}, false
}

// orphanCwdLocked finds the working directory that an orphan process (started at start, with
// kernel working directory kernel) inherited from a parent that has exited: see forkRecord.
// Preconditions: v.mu is held.
func (v *View) orphanCwdLocked(start uint64, kernel string) (virtualCwd, bool) {
	for i := len(v.forks) - 1; i >= 0; i-- {
		r := &v.forks[i]
		if r.at > start+1 || r.cwd.kernel != kernel { // made after the orphan, or elsewhere
			continue
		}
		if alive(r.parent) {
			continue // a live parent is still the parent of its children
		}
		return r.cwd, true
	}
	return virtualCwd{}, false
}

// bootTicks is the time since boot in clock ticks (USER_HZ, 100 a second), the unit of
// /proc/PID/stat's starttime.
func bootTicks() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Sec)*100 + uint64(ts.Nsec)/10_000_000
}
