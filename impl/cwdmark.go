package impl

import (
	"strconv"
	"strings"

	"github.com/fsvirt/fsvirt/internal/notify"
	"golang.org/x/sys/unix"
)

// A process carries its virtual working directory with it (docs/kernel.md, "Working directories
// the kernel cannot hold"). Forks are not intercepted, so the supervisor first hears of a new
// process at its first call, when its parent may have changed directory since the fork, or exited
// (a subshell's intermediates, `timeout`, `setsid`, double forks): what the view recorded of its
// ancestors then says what it inherited only approximately, and with two process trees in two
// directories the view made, side by side in one kernel working directory, it picked the other
// tree's (orphanCwdLocked). The kernel copies a process's descriptors into every child at the
// fork and keeps them across execve, exactly as it does the working directory; so when chdir
// gives a process a virtual working directory, the supervisor also puts a descriptor of the
// directory's private copy at number cwdMarkFD in the process (ADDFD with SETFD, without
// close-on-exec), and when a process that carries one goes back to a working directory the kernel
// holds, a descriptor of "/" there, which says so. A process the view has no record of inherits
// what its mark names: a directory of the private layer, by its path now (a rename in the view
// renames the private copy, which the descriptor follows), or, when the view has removed it, the
// removed directory itself, which the descriptor still holds. Without a mark of the view's (a
// program closed it, or put another descriptor at its number; a process whose descriptor limit is
// below the number) the view's records decide, as before.

// cwdMarkFD is the descriptor number at which a process of a view carries its virtual working
// directory.
const cwdMarkFD = 1000

// cwdMarkLink is cwdMarkFD's entry under /proc/TID.
var cwdMarkLink = "fd/" + strconv.Itoa(cwdMarkFD)

// realCwdMark is what the mark of a process whose working directory is the kernel's names.
const realCwdMark = "/"

// cwdMarkFlags open a mark: a directory opened for appending, which no program opens so, tells the
// view's marks from a descriptor a program put at cwdMarkFD itself, which the view neither reads
// nor replaces.
const cwdMarkFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_APPEND

// markState is what a task holds at cwdMarkFD.
type markState int

const (
	markFree    markState = iota // nothing
	markOurs                     // a mark of this view, naming target
	markForeign                  // a program's descriptor, or another view's mark
)

// cwdMark reads what t holds at cwdMarkFD; target is the mark's directory, with " (deleted)" when
// the view removed it.
func (v *View) cwdMark(t tracee) (target string, state markState) {
	target, err := readlink(t.procPath(cwdMarkLink))
	if err != nil {
		return "", markFree // ENOENT; or the task has gone, and nothing is put in it either
	}
	_, flags, ok := fdInfo(t, cwdMarkFD)
	if !ok || flags&cwdMarkFlags != cwdMarkFlags {
		return "", markForeign
	}
	if target == realCwdMark {
		return target, markOurs
	}
	if _, ok := v.viewPathOf(strings.TrimSuffix(target, " (deleted)")); !ok {
		return "", markForeign
	}
	return target, markOurs
}

// markCwd puts the mark that the call recorded (t.call.mark) in t, within the view's turn and
// before the call is answered (ADDFD needs the notification). Whoever records a mark has read what
// t holds at cwdMarkFD (cwdMark) and records none over a descriptor of t's own there. A mark that
// cannot be put (the process's descriptor limit is at most cwdMarkFD) is left out: the view's
// records decide then.
func (v *View) markCwd(lfd int, id uint64, t tracee) {
	if t.call == nil || t.call.mark == "" {
		return
	}
	fd, err := long.Open(t.call.mark, cwdMarkFlags|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	notify.ReplaceFD(lfd, id, fd, cwdMarkFD, false)
	unix.Close(fd)
}

// markedCwd returns the working directory that process t, of which the view has no record, carries
// as its mark, given its kernel working directory kernel; ok is false when it carries no mark of
// the view's (state says what it holds). The caller holds no lock.
func (v *View) markedCwd(t tracee, kernel string) (c virtualCwd, state markState, ok bool) {
	target, state := v.cwdMark(t)
	if state != markOurs {
		return virtualCwd{}, state, false
	}
	if target == realCwdMark {
		return virtualCwd{kernel: kernel}, state, true
	}
	h, removed := strings.CutSuffix(target, " (deleted)")
	p, _ := v.viewPathOf(h)
	c = virtualCwd{path: p, kernel: kernel}
	if removed {
		g, err := v.markGhost(t)
		if err != nil {
			return virtualCwd{}, state, false
		}
		c.removed = g
	}
	return c, state, true
}

// markGhost returns the ghost of the removed private directory that t's mark holds: the directory
// itself, which the supervisor opens through the mark, one per directory.
func (v *View) markGhost(t tracee) (*ghost, error) {
	fd, err := long.Open(t.procPath(cwdMarkLink), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// What was opened, which another thread of the task may have put there since the mark was
	// read (dup2): the ghost is acted on, so it must be the removed private directory.
	target, err := readlink(fdPath(fd))
	h, removed := strings.CutSuffix(target, " (deleted)")
	if _, ok := v.viewPathOf(h); err != nil || !removed || !ok {
		unix.Close(fd)
		return nil, unix.ENOENT
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	key := devIno{st.Dev, st.Ino}
	v.mu.Lock()
	defer v.mu.Unlock()
	if g := v.markGhosts[key]; g != nil {
		unix.Close(fd)
		return g, nil
	}
	g := &ghost{st: st, fd: fd}
	if v.markGhosts == nil {
		v.markGhosts = map[devIno]*ghost{}
	}
	v.markGhosts[key] = g
	v.ghostFDs = append(v.ghostFDs, fd)
	return g, nil
}

// inheritedCwd returns the working directory that process key (task t), of which the view has no
// record, inherited, given its kernel working directory: its mark's, else what the view's records
// of its ancestors say (inheritedLocked). A virtual directory found in the records is then marked
// in t (when t holds nothing at the mark's number): a program that closed every descriptor before
// it started t (Python's subprocess does) left t without its parent's mark, and t's own children
// inherit exactly again. The caller holds no lock.
func (v *View) inheritedCwd(t tracee, key int, kernel string) (virtualCwd, bool) {
	c, state, ok := v.markedCwd(t, kernel)
	if ok {
		return c, true
	}
	v.mu.Lock()
	c, ok = v.inheritedLocked(key, kernel)
	v.mu.Unlock()
	if ok && c.path != "" && c.removed == nil && state == markFree && t.call != nil {
		t.call.mark = v.upperPath(c.path)
	}
	return c, ok
}
