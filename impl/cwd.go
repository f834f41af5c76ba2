package impl

import (
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// virtualCwd is a working directory the kernel cannot hold: a directory that exists only in the
// private layer, or moved there. The kernel's working directory stays where it was (kernel).
type virtualCwd struct {
	path   string // view path; "" once the task's working directory is the kernel's again (clearCwd)
	kernel string // the task's kernel working directory when it was set
	// removed is set once the view removed the directory.
	removed *ghost
	// thread: the working directory is a thread's of this program (a worker's, in thread mode)
	thread bool
	// start is the process's start time (procID), to tell a process that exited from a later one
	// with its pid; 0 for a thread's.
	start uint64
}

// selfPid is this program's process id.
var selfPid = os.Getpid()

// cwdKey says whose working directory t's is, and whether that is a thread's own: in thread mode
// a thread of this program (a worker, which unshared its working directory) has its own; every
// other task shares its process's, in thread mode too (processes a function started).
func (v *View) cwdKey(t tracee) (key int, thread bool, err error) {
	if v.ns.threadMode && unix.Tgkill(selfPid, t.tid, 0) == nil {
		return t.tid, true, nil
	}
	c, err := t.status()
	return c.tgid, false, err
}

// virtualCwd returns t's virtual working directory, if it has one, and its ghost if the view
// removed it. A process started by one that has a virtual working directory inherits it, as long
// as its kernel working directory is still the one it inherited; a process a worker thread
// started inherits the worker's.
func (v *View) virtualCwd(t tracee) (string, *ghost, bool) {
	v.mu.Lock()
	n := len(v.cwds)
	v.mu.Unlock()
	if n == 0 {
		return "", nil, false
	}
	key, thread, err := v.cwdKey(t)
	if err != nil {
		return "", nil, false
	}
	v.mu.Lock()
	c, ok := v.cwds[key]
	if ok && !thread && !v.sameProcessLocked(key, c) {
		ok = false
	}
	v.mu.Unlock()
	if ok || thread {
		return c.path, c.removed, ok && c.path != ""
	}
	kernel, err := readlink(t.procPath("cwd"))
	if err != nil {
		return "", nil, false
	}
	pc, ok := v.inheritedCwd(t, key, kernel)
	v.mu.Lock()
	if ok && pc.path != "" {
		pc.thread, pc.start = false, 0
		v.setCwdLocked(key, pc)
	}
	v.mu.Unlock()
	if !ok || pc.path == "" {
		return "", nil, false
	}
	return pc.path, pc.removed, true
}

// maxAncestors bounds the walk up a process's ancestors.
const maxAncestors = 64

// inheritedLocked returns the working directory process pid inherited, given that it has none of
// its own in the view and that its kernel working directory is kernel: a process a worker thread
// started inherits the worker's; else the nearest ancestor the view knows passes its own down, if
// the kernel's is still the one it passed. An ancestor that has exited breaks the chain: its
// children were reparented (to the run's supervisor, a subreaper, or to init), and an orphan
// inherits what the newest process the view knows that has exited since had, started before it,
// in the same kernel working directory (see settleCwd). Preconditions: v.mu is held.
func (v *View) inheritedLocked(pid int, kernel string) (virtualCwd, bool) {
	ppid, start, err := procStat(pid)
	for range maxAncestors {
		if err != nil {
			return virtualCwd{}, false
		}
		switch {
		case ppid == selfPid && v.ns.threadMode:
			// Forked by a thread of this program: the view's worker thread, whose key is its tid.
			for _, wc := range v.cwds {
				if wc.thread {
					return wc, wc.kernel == kernel
				}
			}
			return virtualCwd{}, false
		case ppid == selfPid && (procID{pid, start}) == v.top:
			// The process the supervisor started, which has no entry: the chain ends at a
			// working directory the kernel holds. (Taken for an orphan, it inherited what a
			// child that had exited had, when the two started in one clock tick.)
			return virtualCwd{}, false
		case ppid == selfPid || ppid <= 1: // reparented: pid's parent has exited
			return v.orphanCwdLocked(start, kernel)
		}
		// The entry under ppid is the parent's only if it was made for a process with the
		// parent's start time: pids are reused (pid_max is 32768 on small machines), and an
		// entry outlives its process, for the orphans it leaves (orphanCwdLocked).
		pppid, pstart, perr := procStat(ppid)
		if perr != nil { // the parent has just exited: pid is being reparented
			return v.orphanCwdLocked(start, kernel)
		}
		if c, ok := v.cwds[ppid]; ok && c.start == pstart {
			return c, c.kernel == kernel
		}
		pid, ppid, start = ppid, pppid, pstart
	}
	return virtualCwd{}, false
}

// sameProcessLocked reports whether c, the entry under key, was made for the process that now has
// pid key, and forgets it if not: the process it was made for has exited and its pid has been
// given to another, which inherits nothing from it. Start times are in clock ticks (10 ms;
// docs/kernel.md, "Start times are clock ticks"): a pid given again within the tick its first
// process started in is not told apart, which takes the pids to wrap (32,768 forks) within that
// tick, or a write to ns_last_pid. Preconditions: v.mu is held.
func (v *View) sameProcessLocked(key int, c virtualCwd) bool {
	if c.thread {
		return true
	}
	if _, start, err := procStat(key); err == nil && start == c.start {
		return true
	}
	delete(v.cwds, key)
	return false
}

// orphanCwdLocked finds what an orphan (started at start, in kernel working directory kernel)
// inherited: the entry of the newest process that started before it in that kernel working
// directory and has exited since. A process without a virtual working directory records one too
// (real, path "") when it executes a program, so that its orphans inherit nothing from an older
// one. What this cannot tell apart: a parent the view never saw (a fork that never executed a
// program nor made a call) from the newest one it saw. Preconditions: v.mu is held.
func (v *View) orphanCwdLocked(start uint64, kernel string) (virtualCwd, bool) {
	var best virtualCwd
	found := false
	for pid, c := range v.cwds {
		if c.thread || c.start == 0 || c.start > start || c.kernel != kernel || found && c.start <= best.start {
			continue
		}
		if alive(procID{pid, c.start}) {
			continue // a live process is still the parent of its children
		}
		best, found = c, true
	}
	return best, found && best.path != ""
}

// settleCwd records, when a process executes a program, the working directory it inherited (or
// that it has none), while the process it inherits from is likely alive: its own children, and
// their orphans, find it there (see orphanCwdLocked); and marks a virtual one in the process
// again where the mark is missing (cwdmark.go).
func (v *View) settleCwd(t tracee) {
	v.mu.Lock()
	n := len(v.cwds)
	v.mu.Unlock()
	if n == 0 {
		return
	}
	key, thread, err := v.cwdKey(t)
	if err != nil || thread {
		return
	}
	v.mu.Lock()
	c, known := v.cwds[key]
	known = known && v.sameProcessLocked(key, c)
	v.mu.Unlock()
	if known {
		// A program that closed every descriptor before it executes this one dropped the mark:
		// put it back, for the children (cwdmark.go).
		if c.path != "" && c.removed == nil && t.call != nil {
			if _, state := v.cwdMark(t); state == markFree {
				t.call.mark = v.upperPath(c.path)
			}
		}
		return
	}
	kernel, err := readlink(t.procPath("cwd"))
	if err != nil {
		return
	}
	c, ok := v.inheritedCwd(t, key, kernel)
	v.mu.Lock()
	defer v.mu.Unlock()
	if !ok {
		c = virtualCwd{kernel: kernel} // real
	}
	c.thread = false
	c.start = 0
	v.setCwdLocked(key, c)
}

// setCwdLocked records task key's working directory, with the process's start time.
// Preconditions: v.mu is held.
func (v *View) setCwdLocked(key int, c virtualCwd) {
	if v.cwds == nil {
		v.cwds = map[int]virtualCwd{}
	}
	if !c.thread && c.start == 0 {
		_, c.start, _ = procStat(key)
	}
	v.cwds[key] = c
}

func (v *View) setCwd(t tracee, p string) error {
	key, thread, err := v.cwdKey(t)
	if err != nil {
		return err
	}
	kernel, err := readlink(t.procPath("cwd"))
	if err != nil {
		return errTraceeGone
	}
	v.mu.Lock()
	v.setCwdLocked(key, virtualCwd{path: p, kernel: kernel, thread: thread})
	v.mu.Unlock()
	if !thread && t.call != nil {
		if _, state := v.cwdMark(t); state != markForeign {
			t.call.mark = v.upperPath(p) // cwdmark.go
		}
	}
	return nil
}

func (v *View) clearCwd(t tracee) {
	v.mu.Lock()
	n := len(v.cwds)
	v.mu.Unlock()
	if n == 0 {
		return
	}
	// Not forgotten but marked real (no path): a process would otherwise inherit its parent's
	// virtual directory again when its kernel one is where the parent's was.
	if key, thread, err := v.cwdKey(t); err == nil {
		kernel, _ := readlink(t.procPath("cwd"))
		v.mu.Lock()
		v.setCwdLocked(key, virtualCwd{thread: thread, kernel: kernel})
		v.mu.Unlock()
		if !thread && t.call != nil {
			if _, state := v.cwdMark(t); state == markOurs {
				t.call.mark = realCwdMark // cwdmark.go
			}
		}
	}
}

// ghost stands for a directory that the view removed while a task still held it as its working
// directory or through a descriptor. The kernel keeps such a directory, empty, unlinked, with its
// metadata: the ghost is a private directory with the same mode and owner, itself removed, held
// open by the supervisor, on which the task's calls on "." act. Nothing can be made in it.
type ghost struct {
	st unix.Stat_t // the view's directory, when it was removed
	fd int         // the removed private directory; -1 until made
}

// host is the ghost's path for the supervisor's calls.
func (g *ghost) host() string { return "/proc/self/fd/" + strconv.Itoa(g.fd) + "/." }

// makeGhost makes g's directory, if not yet made. The caller holds no lock.
func (v *View) makeGhost(g *ghost) error {
	if err := v.ensureDir("/"); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if g.fd >= 0 {
		return nil
	}
	v.ghostSeq++
	dir := v.dir + "/ghost-" + strconv.Itoa(v.ghostSeq)
	if err := long.Mkdir(dir, 0o700); err != nil {
		return err
	}
	fd, err := long.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	opened := err == nil
	if opened {
		if err = unix.Fchown(fd, int(g.st.Uid), int(g.st.Gid)); err == nil {
			err = unix.Fchmod(fd, g.st.Mode&0o7777)
		}
	}
	// Removed in any case: the ghost is a removed directory, and a failed one leaves nothing.
	if rerr := long.Rmdir(dir); err == nil {
		err = rerr
	}
	if err != nil {
		if opened {
			unix.Close(fd)
		}
		return err
	}
	g.fd = fd
	v.ghostFDs = append(v.ghostFDs, fd)
	return nil
}

// removedDir records that the view removed directory p, which stood for shared directory lower
// (if not "") and looked like st: the tasks that hold it as their virtual working directory keep
// a ghost of it, and one that holds the shared directory (a working directory or a descriptor
// the kernel resolves) finds the ghost when it next uses it. Ghosts are made when first used.
func (v *View) removedDir(p, lower string, st *unix.Stat_t) {
	g := &ghost{st: *st, fd: -1}
	v.mu.Lock()
	for k, c := range v.cwds {
		if c.path == p && c.removed == nil {
			c.removed = g
			v.cwds[k] = c
		}
	}
	if lower != "" {
		if v.ghosts == nil {
			v.ghosts = map[string]*ghost{}
		}
		v.ghosts[lower] = g
	}
	v.mu.Unlock()
}

// ghostOfLower returns the ghost of shared directory h, which a task's descriptor or kernel
// working directory holds under view path p, if the view removed it: p no longer leads to it.
func (v *View) ghostOfLower(h, p string) *ghost {
	v.mu.Lock()
	g := v.ghosts[h]
	v.mu.Unlock()
	if g == nil {
		return nil
	}
	if l, _, err := v.locate(p); err == nil && (l.ent == nil && l.host == h || l.ent != nil && l.ent.lower == h) {
		return nil // made again from the shared directory? It is the same one.
	}
	return g
}

// closeGhosts closes the ghosts' descriptors, and the O_PATH proxies', once the view's tasks have
// gone.
func (v *View) closeGhosts() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, fd := range v.ghostFDs {
		unix.Close(fd)
	}
	v.ghostFDs = nil
	for _, fd := range v.proxies {
		unix.Close(fd)
	}
	v.proxies = nil
}

// viewOfLower maps a shared host path that a task's descriptor or working directory names to the
// view path of the object: the same path, unless a directory on the way was renamed in the view.
func (v *View) viewOfLower(h string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.viewOfLowerLocked(h)
}

// viewOfLowerLocked is viewOfLower. Preconditions: v.mu is held.
func (v *View) viewOfLowerLocked(h string) string {
	if !v.renamed {
		return h
	}
	best, bestView := "", ""
	for p, e := range v.entries {
		if e.kind != entryDir || e.lower == "" || e.lower == p || !within(h, e.lower) {
			continue
		}
		if len(e.lower) > len(best) {
			best, bestView = e.lower, p
		}
	}
	if best == "" {
		return h
	}
	return bestView + strings.TrimPrefix(h, best)
}

// sharedAt is the view path that shows shared object h (a host path in a tree, which a task's
// descriptor names), given p, viewOfLower's mapping of h: p itself (h's own path, or where the
// view renamed a directory above it to), where the view renamed h, or a name the view linked it
// to; ok is false when no view path shows it any more: the view removed it, or put another object
// at its name, while the task held it.
func (v *View) sharedAt(h, p string) (string, bool) {
	if v.standsFor(p, h) {
		return p, true
	}
	var names []string
	v.mu.Lock()
	for q, e := range v.entries {
		if e.kind == entryObj && e.lower == h {
			names = append(names, q)
		}
	}
	v.mu.Unlock()
	slices.Sort(names) // the same answer every time
	for _, q := range names {
		if v.standsFor(q, h) {
			return q, true
		}
	}
	return "", false
}

// standsFor reports whether view path p shows shared object h: the name was neither removed nor
// given another object since the view began, or the view renamed or linked h to it.
func (v *View) standsFor(p, h string) bool {
	l, _, err := v.locate(p)
	if err != nil {
		return false
	}
	if l.ent != nil {
		return l.ent.lower == h
	}
	return l.host == h
}

// moveCwds makes virtual working directories follow a rename of from to to (and of to to from,
// with exchange), as the kernel's follow the directory. The caller holds v.mu.
func (v *View) moveCwds(from, to string, exchange bool) {
	for k, c := range v.cwds {
		switch {
		case c.removed != nil && (c.path == from || c.path == to):
			continue // what now has the removed directory's name is another directory
		case within(c.path, from):
			c.path = to + strings.TrimPrefix(c.path, from)
		case exchange && within(c.path, to):
			c.path = from + strings.TrimPrefix(c.path, to)
		default:
			continue
		}
		v.cwds[k] = c
	}
}

// getcwd writes the caller's working directory as a view path.
func (v *View) getcwd(t tracee, o op) (reply, error) {
	cwd, err := v.cwdOf(t)
	if err != nil {
		return reply{}, err
	}
	b := append([]byte(cwd), 0)
	if uint64(len(b)) > o.size {
		return reply{}, unix.ERANGE
	}
	if err := t.write(o.buf, b); err != nil {
		return reply{}, err
	}
	return reply{kind: replyVal, val: int64(len(b))}, nil
}

// cwdOf is the caller's working directory in the view: ENOENT once the view removed it.
func (v *View) cwdOf(t tracee) (string, error) {
	p, g, ok := v.virtualCwd(t)
	if g != nil {
		return "", unix.ENOENT
	}
	if !ok {
		target, err := readlink(t.procPath("cwd"))
		if err != nil {
			return "", errTraceeGone
		}
		if strings.HasSuffix(target, " (deleted)") {
			return "", unix.ENOENT
		}
		if p, ok = v.viewPathOf(target); !ok {
			p = v.viewOfLower(target)
			if v.ghostOfLower(target, p) != nil {
				return "", unix.ENOENT
			}
		}
	}
	if v.ns.inTree(p) && !v.ns.isTreeRoot(p) {
		if _, st, err := v.locate(p); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return "", unix.ENOENT
		}
	}
	return p, nil
}

// chdir changes the caller's working directory. A directory the kernel can reach under its view
// path is left to the kernel, also when the view materialized it or changed its metadata: the
// kernel's working directory is then the shared directory, which the view maps back to the
// view's (startDir), and a relative path that the kernel resolves from there to a shared object
// stays pure. One that exists only in the private layer, or moved there, becomes the caller's
// virtual working directory: the kernel's stays where it was, and the supervisor, which resolves
// every relative path, starts from the virtual one.
func (v *View) chdir(t tracee, o op) (reply, error) {
	r, _, err := v.lookup(t, o, true)
	if err != nil {
		return reply{}, err
	}
	if r.mode != unix.S_IFDIR {
		return reply{}, unix.ENOTDIR
	}
	// Search permission, the caller's (access(2) would check the supervisor's).
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	if r.kind == resGone { // "." in a removed working directory: it stays
		if err := hostMay(c, r.host, unix.X_OK); err != nil {
			return reply{}, err
		}
		return okReply, nil
	}
	// The kernel checks the shared directory's permissions: when the view changed them, both
	// must let the caller in.
	if r.reachesLower && r.kind != resFDObject &&
		(r.ent == nil || !r.ent.own || hostMay(c, r.host, unix.X_OK) == nil && hostMay(c, r.ent.lower, unix.X_OK) == nil) {
		v.clearCwd(t)
		return reply{kind: replyContinue}, nil
	}
	if err := hostMay(c, r.host, unix.X_OK); err != nil {
		return reply{}, err
	}
	return okReply, v.setCwd(t, r.path)
}
