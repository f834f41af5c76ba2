package impl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Policy chooses how read-only opens of files the invocation has not changed are answered.
type Policy uint8

const (
	// PolicyFast lets the kernel perform a read-only open of an unchanged file itself (CONTINUE).
	// The kernel re-reads the path from the caller's memory
	// (docs/kernel.md, "CONTINUE re-reads memory"), so a function that rewrites its own path buffer
	// from another thread at that moment can open, read-only, any file its process could open
	// outside fsvirt, the store included. It can never write through such an open.
	PolicyFast Policy = iota
	// PolicyStrict performs every intercepted open in the supervisor and injects the fd: the path is
	// read from the caller once, and nothing but the view is reachable, at the price of an fd
	// injection (about twice a CONTINUE) per open.
	PolicyStrict
)

func (p Policy) String() string {
	if p == PolicyStrict {
		return "strict"
	}
	return "fast"
}

// ParsePolicy accepts "fast" or "strict".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "fast":
		return PolicyFast, nil
	case "strict":
		return PolicyStrict, nil
	}
	return 0, fmt.Errorf("unknown policy %q (want fast or strict)", s)
}

// namespace is what every view of one pool or run shares: which trees are virtualized, which
// are passed through, and where the user's store root is, which no view can see.
type namespace struct {
	trees       []string // cleaned absolute paths
	passthrough []string // inside a tree, but left to the host (/proc, /sys, /dev)
	store       string   // the user's store root (see store): hidden from every view
	// storeParent is the directory that holds store, whose listing every view shows without it
	// (see View.hideStore).
	storeParent string
	policy      Policy
	// threadMode: each task with a view has a working directory of its own (thread mode's workers
	// unshare CLONE_FS); otherwise the threads of a process share one.
	threadMode bool
	// limits bound each view's private layer (see Limits).
	limits Limits
	// guard keeps free space on the store's file system when limits do not bound the layers
	// (guard.go); nil for none.
	guard *spaceGuard
}

func within(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// inTree reports whether view path p is virtualized: it lies in a tree, and not in a passed-through
// directory inside that tree. A passed-through directory only carves its part out of a tree that
// contains it ("/" and /dev): a tree inside it (/dev/shm/t) is virtualized like any other.
func (ns *namespace) inTree(p string) bool {
	for _, t := range ns.trees {
		if !within(p, t) {
			continue
		}
		carved := false
		for _, d := range ns.passthrough {
			if d != t && within(d, t) && within(p, d) {
				carved = true
				break
			}
		}
		for _, d := range virtualizedInPassthrough {
			if carved && within(p, d) {
				carved = false
			}
		}
		if !carved {
			return true
		}
	}
	return false
}

// hidden reports whether host path p is in a store root: the user's, or another user's beside it
// (fsvirt-UID in the same directory), which a caller with root's rights could otherwise read. No
// view reaches such a path, but a view's own private layer, which lies there, is reached through
// the view's paths.
func (ns *namespace) hidden(p string) bool {
	if within(p, ns.store) {
		return true
	}
	rest, ok := strings.CutPrefix(p, ns.storeParent+"/")
	if !ok {
		return false
	}
	name, _, _ := strings.Cut(rest, "/")
	return isUserRoot(name)
}

// isUserRoot reports whether name is that of a user's store root: fsvirt-UID.
func isUserRoot(name string) bool {
	uid, ok := strings.CutPrefix(name, userRootPrefix)
	if !ok || uid == "" {
		return false
	}
	for _, c := range uid {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// defaultPassthrough are the pseudo file systems left to the host when "/" is virtualized.
var defaultPassthrough = []string{"/proc", "/sys", "/dev"}

// virtualizedInPassthrough are directories inside those that hold ordinary files programs write
// (shm_open, sem_open): left to the host, they would be one directory every invocation shares.
var virtualizedInPassthrough = []string{"/dev/shm"}

// newNamespace makes the namespace of trees, whose views hide store, the user's store root.
func newNamespace(trees []string, store string, policy Policy) (*namespace, error) {
	if len(trees) == 0 {
		trees = []string{"/"}
	}
	ns := &namespace{store: store, storeParent: filepath.Dir(store), policy: policy}
	for _, t := range trees {
		if !filepath.IsAbs(t) {
			abs, err := filepath.Abs(t)
			if err != nil {
				return nil, err
			}
			t = abs
		}
		real, err := filepath.EvalSymlinks(t)
		if err != nil {
			return nil, fmt.Errorf("tree %s: %w", t, err)
		}
		fi, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("tree %s: %w", t, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("tree %s: not a directory", t)
		}
		if within(real, store) {
			return nil, fmt.Errorf("tree %s is in the store %s, which no view can see", t, store)
		}
		ns.trees = append(ns.trees, real)
	}
	ns.passthrough = defaultPassthrough
	return ns, nil
}

// Stats counts what an invocation's view did.
type Stats struct {
	Calls       map[string]int `json:"calls"`        // notifications handled, per syscall
	CopyUps     int            `json:"copy_ups"`     // files copied into the private layer
	BytesCopied int64          `json:"bytes_copied"` // file data copied by those copy-ups
}

// Change is one path an invocation changed: Kind is 'A' (added), 'M' (modified) or 'D' (deleted).
type Change struct {
	Kind byte   `json:"-"`
	Path string `json:"path"`
}

// View is one invocation's private copy-on-write view.
//
// Lock order: View.turn, then View.mu; mu guards entries, stats and limits. The supervisor is the only
// writer of the private layer; readers (Stats, Changes) run after the invocation's function returned.
type View struct {
	ns       *namespace
	dir      string // the invocation's directory in the store
	upper    string // dir/upper: the private layer, mirroring view paths
	canceled atomic.Bool
	// readOnly: the view cannot change the trees: its private layer is never made, and what would
	// make it fails with EROFS (the view of processes earlier invocations left running, see
	// lineage). Outside the trees, calls are what they are in any view.
	readOnly bool
	// busy counts the notifications of the view's tasks being answered. A task can go on, and its
	// invocation end, as soon as the answer reaches it, before the supervisor has closed its own
	// descriptor of an injected file: the end of an invocation waits for busy, so that nothing
	// of the view stays open once it has ended.
	busy    busy
	created atomic.Bool // dir exists: the invocation changed something
	// hasLinks: linked has an entry; read without the lock on every resolution.
	hasLinks atomic.Bool
	// hasHostLinks: hostLinks has an entry; read without the lock on every resolution.
	hasHostLinks atomic.Bool
	// copyFDs: the view gave a task a descriptor of a copy of a shared object, whose stat must
	// show the shared identity (identity); read without the lock on every stat of a descriptor,
	// which until then the kernel answers alone.
	copyFDs atomic.Bool
	// chdired: a task of the view called chdir or fchdir, so a worker thread's own working
	// directory may have moved (thread mode resets it before the next invocation only then).
	chdired atomic.Bool

	// turn is held by the supervisor thread that decides and acts on the view: the view's calls
	// are answered one at a time, as if by one thread, while the waits a task controls happen
	// outside it (see supervisor and View.waitOutsideTurn).
	turn sync.Mutex

	mu sync.Mutex
	// limits bound the private layer: the namespace's, or the invocation's own (SetLimits).
	limits  Limits
	entries map[string]*entry
	stats   Stats
	cwds    map[int]virtualCwd // by task (thread mode) or process
	// top is the process the supervisor started for the view (process mode), the ancestor of all
	// its others: a process it started whose parent is the supervisor is not an orphan, and
	// inherits nothing (see inheritedLocked).
	top     procID
	removed map[string]bool // shared names the view removed (see noteRemoved)
	// origins are the shared objects the view copied up or removed, by host path, as they were
	// then: the kept layer's record of them (see keep).
	origins map[string]unix.Stat_t
	renamed bool // a directory was renamed: lower paths no longer equal view paths
	// linked: shared files (by host path) that the view gave another name (see linkShared).
	linked map[string]bool
	// hostLinks: the index entry of the copy of each shared file with several names on the host
	// that the view copied up, by the shared file's device and inode; indexed: the copies, by
	// theirs (see indexCopy).
	hostLinks map[devIno]*hostLink
	indexed   map[devIno]*hostLink
	// ghosts are the shared directories the view removed, by host path; ghostFDs the descriptors
	// of the ghosts made (see ghost).
	ghosts   map[string]*ghost
	ghostFDs []int
	// markGhosts are the removed private directories that processes' marks hold, by device and
	// inode (cwdmark.go).
	markGhosts map[devIno]*ghost
	// proxies are the O_PATH proxies the view made (opathProxy), by device and inode, with the
	// supervisor's own descriptor of each, held until the view ends.
	proxies  map[devIno]int
	ghostSeq int

	// dirs remembers shared directories that a walk from "/" reached through directories only:
	// see knownDir.
	dirs dirCache

	// copyGen counts the view's copy-ups of shared objects (files copied up, directories whose
	// listing or metadata became the view's); fdsSeen is, by task, the count when the task's
	// descriptors were last made to follow them; inherited are this process's descriptors of
	// the files the command inherited, which never follow (see followCopyUps).
	copyGen   atomic.Uint64
	fdsSeen   map[int]uint64
	inherited []int
}

// newView returns a view whose private layer will live in dir. Nothing is created until the
// invocation first changes something (ensureDir of "/"): most invocations of a read-only function
// never touch the disk. dir is absolute and clean.
func newView(ns *namespace, dir string) (*View, error) {
	upper := dir + "/upper"
	dir = upper[:len(dir)] // one string for both
	// The maps are made on first use: most invocations of a function that touches no file
	// would allocate them for nothing.
	return &View{ns: ns, dir: dir, upper: upper, limits: ns.limits}, nil
}

// upperPath is where view path p lives in the private layer.
func (v *View) upperPath(p string) string {
	if p == "/" {
		return v.upper
	}
	return v.upper + p
}

// viewPathOf maps a host path inside the private layer back to its view path.
func (v *View) viewPathOf(host string) (string, bool) {
	if host == v.upper {
		return "/", true
	}
	if strings.HasPrefix(host, v.upper+"/") {
		return host[len(v.upper):], true
	}
	return "", false
}

func (v *View) count(sys string) {
	v.mu.Lock()
	if v.stats.Calls == nil {
		v.stats.Calls = map[string]int{}
	}
	v.stats.Calls[sys]++
	v.mu.Unlock()
}

func (v *View) countCopyUp(bytes int64) {
	v.mu.Lock()
	v.stats.CopyUps++
	v.stats.BytesCopied += bytes
	v.mu.Unlock()
}

// Stats returns a snapshot of the view's counters.
func (v *View) Stats() Stats {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.stats
	s.Calls = make(map[string]int, len(v.stats.Calls))
	for k, n := range v.stats.Calls {
		s.Calls[k] = n
	}
	return s
}

// remove deletes the invocation's directory from the store.
func (v *View) remove() error {
	v.closeGhosts()
	if !v.created.Load() {
		return nil
	}
	if v.layerLimits().set() {
		if err := unmountUnder(v.dir); err != nil {
			return err
		}
	}
	return removeLayer(v.dir)
}

// busy counts the notifications of a view being answered, and ends the view once none is.
//
// Not a sync.WaitGroup: a notification is taken up (enter) before the answer that lets the task,
// and so its invocation, go on, but that order is the kernel's, which a WaitGroup cannot know: the
// race detector reports every enter and end as concurrent, and a notification of a task that
// outlives its invocation (a child the function left running) would enter an ended view. Here it
// is refused instead (and answered in the pool's fence view, see lineage).
type busy struct {
	mu    sync.Mutex
	n     int
	ended bool
	idle  chan struct{} // made by end when it has to wait; closed by the last leave
}

// enter takes up one notification, and reports false if the view has ended.
func (b *busy) enter() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return false
	}
	b.n++
	return true
}

// leave ends what enter began.
func (b *busy) leave() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n--
	if b.n == 0 && b.idle != nil {
		close(b.idle)
		b.idle = nil
	}
}

// isEnded reports whether end was called.
func (b *busy) isEnded() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ended
}

// end refuses further notifications and waits for those taken up to be answered.
func (b *busy) end() {
	b.mu.Lock()
	b.ended = true
	if b.n == 0 {
		b.mu.Unlock()
		return
	}
	idle := make(chan struct{})
	b.idle = idle
	b.mu.Unlock()
	<-idle
}

// waitOutsideTurn runs fn, which waits on something the calling task controls (a connect to a
// socket whose backlog is full, say), without the view's turn, which the caller holds: the view's
// other calls are answered meanwhile. fn must not touch the view.
func (v *View) waitOutsideTurn(fn func() error) error {
	v.turn.Unlock()
	defer v.turn.Lock()
	return fn()
}
