package impl

import (
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// maxSymlinks is the kernel's limit on symlinks followed in one lookup (MAXSYMLINKS).
const maxSymlinks = 40

// resolved is where a path leads in a view.
type resolved struct {
	kind resultKind // which of the exclusive outcomes
	// path is the cleaned absolute view path of the final object (or where it would be created);
	// for resFDObject, the magic link.
	path   string
	mode   uint32 // S_IFMT bits when exists
	host   string // where the final object is on the host: its upper path or a shared path
	own    bool   // the final object is the view's own (created, copied up, materialized)
	ent    *entry // the entry at the final path, if any
	inTree bool   // the final path is virtualized
	// pure: the kernel, resolving the same string from the caller, reaches the same object without
	// any help: nothing in the private layer, no magic link to a private object or to one without a
	// path, nothing hidden was on the way. Only a pure resolution may be answered with CONTINUE.
	pure bool
	// reachesLower: the kernel, resolving the same string, reaches the shared object at path: the
	// view's object, or the shared directory that a directory the view materialized, or changed
	// the metadata of, stands for. Implied by pure.
	reachesLower  bool
	trailingSlash bool
	// alias: the final object is a shared file that the view copied up by another of its names;
	// this is the copy's index entry (hostlinks.go).
	alias string
}

// resultKind is which of a resolution's exclusive outcomes it had.
type resultKind uint8

const (
	// resMissing: the final name is not there: path is where it would be made. The zero kind,
	// that of a resolved made without a walk.
	resMissing resultKind = iota
	// resFound: the final component names an object: path, mode, host and ent are its.
	resFound
	// resDot: the path ended in ".", ".." or "/" (directly or through a symlink), where nothing
	// can be created: path is the directory it reached.
	resDot
	// resGone: the path named a directory the view removed that the caller still holds (see
	// ghost), ending as resDot does: host is the ghost, and inTree is false, so that calls act on
	// it directly.
	resGone
	// resFDObject: the path named a magic link to an object the view cannot name by path (a
	// pipe, a socket, a deleted file), path: the supervisor reopens /proc/TID/fd/N itself.
	resFDObject
	// resLongName: with deferLong, the final component is longer than NAME_MAX: its lookup fails
	// with ENAMETOOLONG, which the caller reports where the kernel looks the final name up.
	resLongName
	// resDeadDir: the final name is in such a removed directory: it does not exist, and cannot be
	// made (ENOENT).
	resDeadDir
)

// exists reports whether the path leads to an object: one it named, a directory it ended in, or
// an object without a path.
func (r resolved) exists() bool {
	return r.kind == resFound || r.kind == resDot || r.kind == resGone || r.kind == resFDObject
}

// dot reports whether the path ended in ".", ".." or "/", in a directory the view removed or
// not.
func (r resolved) dot() bool { return r.kind == resDot || r.kind == resGone }

// resolveOpts carries the lookup rules of one call.
type resolveOpts struct {
	followFinal bool
	resolve     uint64 // openat2 RESOLVE_* flags
	// creat: the caller creates the final component (O_CREAT). A trailing slash then neither
	// follows a final symlink nor requires a directory: open fails with EISDIR instead.
	creat bool
	// deferLong: a final component longer than NAME_MAX does not fail the walk but ends it in
	// resLongName, for a call that makes other checks before it looks the final name up
	// (rename; open with O_CREAT, which refuses a trailing slash first).
	deferLong bool
	// named: the caller named the object itself (AT_EMPTY_PATH): the kernel walks nothing, and
	// checks no search permission on the way the view resolves.
	named bool
}

// magicLink matches /proc entries whose "symlinks" jump to an object rather than to a path.
var magicLink = regexp.MustCompile(
	`^/proc/[0-9]+(/task/[0-9]+)?/(cwd|root|exe|fd/[0-9]+|map_files/[^/]+)$`)

// walkDeps are what a walk reads outside its own state: of the caller, where a relative path
// starts and its credentials; of the view and the host, what is at a path and what a symlink
// says. The supervisor's (traceeDeps) reads the tracee's /proc entries; a test's reads a plain
// tree for a caller it makes up, so that the walk's rules can be checked against the kernel's
// without a seccomp notification.
type walkDeps interface {
	// startDir is where a relative path starts: the caller's working directory or its dirfd.
	startDir(dirfd int) (start, error)
	// status is the caller's credentials and thread group, as /proc/TID/status gives them.
	status() (creds, error)
	// tid is the caller's thread: /proc/thread-self's, and whose access to the supervisor's own
	// /proc entries is refused (supervisorOnly).
	tid() int
	// locate looks view path p up, given that its parent directory exists in the view.
	locate(p string) (loc, unix.Stat_t, error)
	// readlink reads the symlink at host path h.
	readlink(h string) (string, error)
}

// traceeDeps are the walk's dependencies while the supervisor answers a call of t in view v.
type traceeDeps struct {
	v *View
	t tracee
}

func (d traceeDeps) startDir(dirfd int) (start, error)         { return d.v.startDir(d.t, dirfd) }
func (d traceeDeps) status() (creds, error)                    { return d.t.status() }
func (d traceeDeps) tid() int                                  { return d.t.tid }
func (d traceeDeps) locate(p string) (loc, unix.Stat_t, error) { return d.v.locate(p) }
func (d traceeDeps) readlink(h string) (string, error)         { return readlink(h) }

// resolve walks unsafePath component by component in the view, starting at the caller's cwd or
// dirfd, with the kernel's rules for "..", symlinks (ELOOP after maxSymlinks) and trailing slashes.
// It never reads through the user's store root: a step into it fails with ENOENT, and a final name
// that would find it finds nothing (see hides).
// A final object that is another name of a shared file the view copied up (aliasOf) is made a link
// to the copy first (linkAlias), and the path resolved again; should that fail, the call sees the
// shared file.
func (v *View) resolve(t tracee, dirfd int, unsafePath string, o resolveOpts) (resolved, error) {
	r, err := v.resolveWith(traceeDeps{v, t}, dirfd, unsafePath, o)
	if err == nil && r.alias != "" && v.linkAlias(r.path, r.alias, r.host) == nil {
		r, err = v.resolveWith(traceeDeps{v, t}, dirfd, unsafePath, o)
	}
	return r, err
}

// resolveWith is resolve for the caller that deps describe.
func (v *View) resolveWith(deps walkDeps, dirfd int, unsafePath string, o resolveOpts) (
	resolved, error) {
	w := walk{v: v, deps: deps, o: o, r: resolved{pure: true}}
	if err := w.begin(dirfd, unsafePath); err != nil {
		return w.r, err
	}
	for len(w.rest) > 0 {
		if done, err := w.step(); err != nil || done {
			return w.r, err
		}
	}
	return w.finish()
}

// walk is one resolution under way: where it stands, what is left of the path, and what it has
// found out on the way. Its methods are the walk's steps: a component (step, lookup, enter),
// "..", a symlink, a magic link of /proc, and the end of the path (finish).
type walk struct {
	v    *View
	deps walkDeps
	o    resolveOpts
	// r is the outcome so far: pure and trailingSlash change on the way, the rest is set where the
	// walk ends.
	r resolved
	// beneath: RESOLVE_BENEATH or RESOLVE_IN_ROOT keeps the walk under root.
	beneath bool
	// root is where ".." stops and an absolute symlink leads: "/", or with beneath, the
	// directory the walk started from.
	root  string
	cur   string       // the directory the walk has reached (the final object, once found)
	curSt *unix.Stat_t // cur's, when known
	// rest are the components still to walk, those of the symlinks followed included.
	rest []string
	// gone: cur is a directory the view removed, which the caller still holds (see start); ghost
	// is then its host path, "" when it has none.
	gone  bool
	ghost string
	// plain: cur was reached from "/" through directories only, each looked up at its own path.
	plain bool
	links int // symlinks followed, of maxSymlinks
	// creds are read from /proc/TID/status only when /proc/self is walked, or a search needs them.
	creds *creds
}

// begin places the walk where unsafePath starts: at "/" for an absolute path, else at the caller's
// working directory or dirfd, which RESOLVE_BENEATH and RESOLVE_IN_ROOT also make its root.
func (w *walk) begin(dirfd int, unsafePath string) error {
	if unsafePath == "" {
		return unix.ENOENT
	}
	w.r.trailingSlash = strings.HasSuffix(unsafePath, "/")
	w.beneath = w.o.resolve&(unix.RESOLVE_BENEATH|unix.RESOLVE_IN_ROOT) != 0
	if strings.HasPrefix(unsafePath, "/") && w.o.resolve&unix.RESOLVE_IN_ROOT == 0 {
		if w.o.resolve&unix.RESOLVE_BENEATH != 0 {
			return unix.EXDEV
		}
		w.root, w.cur = "/", "/"
	} else {
		s, err := w.deps.startDir(dirfd)
		if err != nil {
			return err
		}
		w.r.pure = w.r.pure && s.pure
		w.cur, w.gone, w.ghost = s.path, s.gone, s.ghost
		w.root = "/"
		if w.beneath {
			w.root = w.cur
		}
	}
	w.rest = splitPath(unsafePath)
	w.plain = w.cur == "/" && !w.beneath
	if w.plain {
		// The lstat that found the known directory is also what maySearch would look at: the
		// view has not changed the directory (no entry at or above it), so it is the shared one.
		if n, dir, st := w.v.knownDir(w.rest); n > 0 {
			w.cur, w.rest, w.curSt = dir, w.rest[n:], st
		}
	}
	return nil
}

// step walks the next component, once the caller may search the directory it is in. It reports
// done when the outcome is known before the end of the path: a final name that is not there (or
// cannot be), or an object without a path.
func (w *walk) step() (done bool, err error) {
	name := w.rest[0]
	w.rest = w.rest[1:]
	last := len(w.rest) == 0
	if err := w.search(); err != nil {
		return false, err
	}
	switch name {
	case ".":
		return false, nil
	case "..":
		return false, w.dotDot()
	}
	if w.gone {
		return w.inRemoved(name, last)
	}
	if w.cur == "/proc" && (name == "self" || name == "thread-self") {
		return false, w.procSelf(name)
	}
	return w.lookup(path.Join(w.cur, name), last)
}

// search checks that the caller may search cur, before the walk looks a component up in it,
// unless the caller named the object itself.
func (w *walk) search() error {
	switch {
	case w.o.named:
		return nil
	case !w.gone:
		return w.maySearch(w.cur, w.curSt)
	case w.ghost != "":
		// A removed directory keeps its mode: the kernel checks it before it finds
		// nothing there.
		return w.maySearchHost(w.cur, w.ghost)
	}
	return nil
}

// dotDot is "..": the parent of cur, which at the walk's root is the root itself (EXDEV with
// RESOLVE_BENEATH).
func (w *walk) dotDot() error {
	w.gone = false
	w.plain = false
	w.curSt = nil
	if w.cur == w.root {
		if w.o.resolve&unix.RESOLVE_BENEATH != 0 {
			return unix.EXDEV
		}
		return nil
	}
	w.cur = path.Dir(w.cur)
	return nil
}

// inRemoved is a name in a directory the view removed (gone): nothing is in it, nor can be made
// there.
func (w *walk) inRemoved(name string, last bool) (done bool, err error) {
	// Not even a name longer than NAME_MAX: the file system's lookup, which refuses
	// it, is not asked.
	if !last {
		return false, unix.ENOENT
	}
	// The final name is not there; a call that would make it fails with ENOENT, after
	// the checks the kernel makes before it looks the name up (open's EISDIR for a
	// trailing slash with O_CREAT).
	w.r.path, w.r.inTree = path.Join(w.cur, name), w.v.ns.inTree(w.cur)
	w.r.pure, w.r.kind = false, resDeadDir
	return true, nil
}

// procSelf steps from /proc into "self" or "thread-self": the supervisor's own /proc/self is not
// the caller's.
func (w *walk) procSelf(name string) error {
	c, err := w.caller()
	if err != nil {
		return err
	}
	// The kernel takes the caller's own: a resolution through it stays pure.
	next := "/proc/" + strconv.Itoa(c.tgid)
	if name == "thread-self" {
		next += "/task/" + strconv.Itoa(w.deps.tid())
	}
	w.plain = false
	w.cur, w.curSt = next, nil
	return nil
}

// caller returns the caller's credentials, read once per walk.
func (w *walk) caller() (*creds, error) {
	if w.creds == nil {
		c, err := w.deps.status()
		if err != nil {
			return nil, err
		}
		w.creds = &c
	}
	return w.creds, nil
}

// lookup looks next up, a name in cur, and goes on from what it finds: a symlink to follow, a
// directory to enter, or the final object.
func (w *walk) lookup(next string, last bool) (done bool, err error) {
	if supervisorOnly(tracee{tid: w.deps.tid()}, next) {
		return false, unix.EACCES
	}
	l, st, err := w.deps.locate(next)
	if err == nil && w.v.hides(l.host) {
		// The store root is not in any view. In a tree its name is free, as in a
		// directory the view removed it from; outside the trees, where a new name is
		// made on the host, it is not.
		if !last || !w.v.ns.inTree(next) {
			return false, unix.ENOENT
		}
		err, w.r.pure = unix.ENOENT, false // the kernel would find the store root
	}
	if err == unix.ENAMETOOLONG && last && w.o.deferLong {
		w.r.path, w.r.inTree, w.r.kind = next, w.v.ns.inTree(next), resLongName
		return true, nil
	}
	if err == unix.ENOENT {
		if !last {
			return false, unix.ENOENT
		}
		w.r.path = next
		w.r.inTree = w.v.ns.inTree(next)
		return true, nil
	}
	if err != nil {
		return false, err
	}
	w.checkPure(next, l.ent, &st)
	// With O_CREAT a final name followed by a slash is never followed, also when the slash
	// ends a symlink's target (s -> s/): open then fails with EISDIR.
	creatSlash := w.o.creat && w.r.trailingSlash
	if st.Mode&unix.S_IFMT == unix.S_IFLNK &&
		(!last || w.o.followFinal && !creatSlash || w.r.trailingSlash && !w.o.creat) {
		return w.symlink(next, l.host, &st, last)
	}
	if !last {
		return false, w.enter(next, l.ent, &st)
	}
	w.cur = next
	w.r.kind, w.r.mode = resFound, st.Mode&unix.S_IFMT
	w.r.host, w.r.ent = l.host, l.ent
	return false, nil
}

// checkPure clears r.pure when what the view has at next (its entry e, and status st) is not
// what the kernel would find there.
func (w *walk) checkPure(next string, e *entry, st *unix.Stat_t) {
	if e != nil && e.lower != next {
		w.r.pure = false // the kernel would find another object at this path
	} else if w.r.pure && e != nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && metaDiffers(next, st) {
		// The view changed the directory's mode or owner: the kernel would check the caller's
		// rights on the shared one instead.
		w.r.pure = false
	}
}

// enter steps into next, a component that is not the last one, which must be a directory.
func (w *walk) enter(next string, e *entry, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.ENOTDIR
	}
	// Only directories that every caller may search are known (knownDir skips them).
	w.plain = w.plain && st.Mode&0o111 == 0o111
	if w.plain && e.transparent(next) {
		w.v.dirs.add(next, st)
	}
	w.cur, w.curSt = next, st
	return nil
}

// symlink follows the symlink at view path next, host path h (st its status): the walk goes on
// with its target's components, from the root for an absolute target.
func (w *walk) symlink(next, h string, st *unix.Stat_t, last bool) (done bool, err error) {
	if w.o.resolve&unix.RESOLVE_NO_SYMLINKS != 0 {
		return false, unix.ELOOP
	}
	w.plain = false
	w.links++
	if w.links > maxSymlinks {
		return false, unix.ELOOP
	}
	target, err := w.deps.readlink(h)
	if err != nil {
		return false, err
	}
	if magicLink.MatchString(next) {
		if target, done, err = w.magicLink(next, target, h, st, last); err != nil || done {
			return done, err
		}
	}
	if strings.HasPrefix(target, "/") {
		w.curSt = nil
		if w.beneath {
			if w.o.resolve&unix.RESOLVE_BENEATH != 0 {
				return false, unix.EXDEV
			}
			w.cur = w.root
		} else {
			w.cur = "/"
		}
	}
	w.rest = append(splitPath(target), w.rest...)
	if strings.HasSuffix(target, "/") && last {
		w.r.trailingSlash = true
	}
	return false, nil
}

// magicLink follows a /proc magic link (next, at host path h, st its status), which readlink
// said leads to target: it returns the view path the walk goes on with, or done when the link
// leads to an object without a path in the view.
func (w *walk) magicLink(next, target, h string, st *unix.Stat_t, last bool) (string, bool, error) {
	if w.o.resolve&(unix.RESOLVE_NO_MAGICLINKS|unix.RESOLVE_BENEATH|unix.RESOLVE_IN_ROOT) != 0 {
		return "", false, unix.ELOOP
	}
	mapped, ok, err := w.v.magicTarget(target, h)
	if err != nil {
		return "", false, err
	}
	if !ok { // an object without a path in the view
		if !last {
			return "", false, unix.ENOTDIR
		}
		w.r.path, w.r.kind = next, resFDObject
		w.r.inTree, w.r.pure = false, false
		w.r.mode = st.Mode & unix.S_IFMT
		return "", true, nil
	}
	// The kernel jumps to the object itself. The view walks the target from the root
	// instead, which for a shared object at its own path finds what the kernel finds
	// (the walk checks the rest); an object in the private layer, or the symlink an
	// O_PATH proxy stands for, the kernel would not find by the view path.
	if mapped != target {
		w.r.pure = false
	}
	return mapped, false, nil
}

// finish completes a walk that reached the end of the path: cur is the final object, or the
// directory the path ended in.
func (w *walk) finish() (resolved, error) {
	r := &w.r
	if w.gone { // the path was "." in a removed directory: the supervisor acts on its ghost
		if w.ghost == "" {
			return *r, unix.ENOENT
		}
		r.path, r.kind, r.mode = w.cur, resGone, unix.S_IFDIR
		r.host, r.pure, r.inTree = w.ghost, false, false
		return *r, nil
	}
	if r.kind != resFound {
		// The path ended in ".", ".." or a symlink to a directory: cur is a directory.
		r.kind, r.mode = resDot, unix.S_IFDIR
		l, _, err := w.deps.locate(w.cur)
		if err != nil {
			return *r, err
		}
		r.host, r.ent = l.host, l.ent
	}
	if r.mode == unix.S_IFDIR && r.host == w.v.ns.storeParent {
		// The view shows the shared listing of the directory that holds the store root, which
		// lists the store root: a listing of the view's own copy will not.
		if ok, err := w.v.hideStore(w.cur); err != nil {
			return *r, err
		} else if ok {
			l, _, err := w.deps.locate(w.cur)
			if err != nil {
				return *r, err
			}
			r.host, r.ent = l.host, l.ent
		}
	}
	w.finalPurity()
	r.path = w.cur
	r.inTree = w.v.ns.inTree(w.cur)
	if r.trailingSlash && r.mode != unix.S_IFDIR && !w.o.creat {
		return *r, unix.ENOTDIR
	}
	return *r, nil
}

// finalPurity sets what the kernel would reach of the final object, cur: r.reachesLower, and
// r.pure and r.own from the view's entry there.
func (w *walk) finalPurity() {
	r := &w.r
	r.reachesLower = r.pure && (r.ent == nil || r.ent.lower == w.cur)
	if r.ent != nil {
		r.own = r.ent.viewsOwn()
		if r.own || r.ent.lower != w.cur {
			r.pure = false
		}
	}
	if r.pure && r.mode != unix.S_IFDIR && w.v.isLinked(r.host) {
		r.pure = false // the kernel would not count the view's names of it (see linkShared)
	}
	if !r.own && r.kind == resFound && r.mode == unix.S_IFREG && w.v.ns.inTree(w.cur) {
		if r.alias = w.v.aliasOf(r.host); r.alias != "" {
			r.pure = false // another name of a shared file the view copied up (hostlinks.go)
		}
	}
}

// metaDiffers reports whether the view's status st of the shared object at host path lower has
// another mode or owner than the object itself.
func metaDiffers(lower string, st *unix.Stat_t) bool {
	var lst unix.Stat_t
	if long.Lstat(lower, &lst) != nil {
		return true
	}
	return lst.Mode != st.Mode || lst.Uid != st.Uid || lst.Gid != st.Gid
}

// maySearch checks that the walk's caller may search view directory dir (st, when known, its
// status), as may_lookup does before each component of a walk: the supervisor resolves with its
// own credentials, and a call it answers itself would otherwise reach what the caller cannot. A
// directory every class may search (a+x) is not looked at further (an ACL entry of a named user
// that refuses it is not seen); for another, the caller's credentials are read into w.creds once
// per walk (by a supervisor that is root: another checks as itself), and the kernel checks as the
// caller (hostMay), unless the caller holds CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE, which
// search every directory. A dir that cannot be located is left to the lookup in it, which fails
// as it would.
func (w *walk) maySearch(dir string, st *unix.Stat_t) error {
	if st != nil && st.Mode&0o111 == 0o111 || w.creds != nil && w.creds.searchesAll() {
		return nil
	}
	located := false
	var l loc
	if st == nil {
		var lst unix.Stat_t
		var err error
		if l, lst, err = w.deps.locate(dir); err != nil || lst.Mode&0o111 == 0o111 {
			return nil
		}
		located = true
	}
	caller, all, err := w.searcher(dir)
	if err != nil || all {
		return err
	}
	if !located {
		var err error
		if l, _, err = w.deps.locate(dir); err != nil {
			return nil
		}
	}
	return hostMay(caller, l.host, unix.X_OK)
}

// maySearchHost is maySearch for view directory dir that the supervisor reaches at host path h
// rather than by locating dir: a directory the view removed, which the caller still holds.
func (w *walk) maySearchHost(dir, h string) error {
	var st unix.Stat_t
	if long.Stat(h, &st) != nil || st.Mode&0o111 == 0o111 ||
		w.creds != nil && w.creds.searchesAll() {
		return nil
	}
	caller, all, err := w.searcher(dir)
	if err != nil || all {
		return err
	}
	return hostMay(caller, h, unix.X_OK)
}

// searcher returns the credentials a walk checks search permission with, reading the caller's
// into w.creds once per walk, and all when they search dir whatever its mode.
func (w *walk) searcher(dir string) (caller creds, all bool, err error) {
	// A supervisor that is not root checks as itself whatever the caller's credentials
	// (asCaller), and its callers have no others (no_new_privs): it need not read them.
	me := selfIDs()
	caller = creds{fsuid: me.uid, fsgid: me.gid, groups: me.groups, capEff: me.capEff}
	if w.creds == nil && me.uid == 0 {
		if _, err := w.caller(); err != nil {
			return caller, false, err
		}
	}
	if c := w.creds; c != nil {
		// As above, for the first directory that needs the credentials.
		if c.searchesAll() {
			return caller, true, nil
		}
		caller = *c
		if ownProc(dir, w.deps.tid(), caller.tgid) {
			return caller, true, nil
		}
	}
	return caller, false, nil
}

// ownProc reports whether dir is the /proc directory of the caller's own process (tgid) or
// thread (tid), or lies in it: the kernel lets a task into its own whatever their modes (a process
// that changed its credentials is not dumpable, and its /proc/PID/fd is root's, mode 0500;
// docs/kernel.md, "A task's own /proc directory").
func ownProc(dir string, tid, tgid int) bool {
	rest, ok := strings.CutPrefix(dir, "/proc/")
	if !ok {
		return false
	}
	pid, _, _ := strings.Cut(rest, "/")
	return pid == strconv.Itoa(tgid) || pid == strconv.Itoa(tid)
}

// magicTarget turns what readlink says of a magic link into a view path, or reports that the
// object has none (pipes, sockets, anonymous inodes, deleted files). A target in the store root
// that is not in this view's own private layer, deleted or not, is ENOENT: another view's file,
// which a task of the same user can name by /proc/PID/fd/N, is not in this view.
//
// link is the magic link's host path, whose object tells an O_PATH proxy from a task's memfd of
// the same name.
func (v *View) magicTarget(target, link string) (string, bool, error) {
	stat := func(st *unix.Stat_t) error { return long.Stat(link, st) }
	if p, ok, err := v.proxyOf(target, stat); err != nil || ok {
		return p, ok, err
	}
	if !strings.HasPrefix(target, "/") {
		return "", false, nil
	}
	h, deleted := strings.CutSuffix(target, " (deleted)")
	if v.hides(h) {
		return "", false, unix.ENOENT
	}
	if deleted {
		return "", false, nil
	}
	if p, ok := v.viewPathOf(target); ok {
		return p, true, nil
	}
	if p := v.viewOfLower(target); v.ns.inTree(p) {
		// The kernel goes to the object: the view, to the path that shows it now (one the view
		// renamed it to), or nowhere when none does (the view removed it).
		p, ok := v.sharedAt(target, p)
		return p, ok, nil
	}
	return target, true, nil
}

// hides reports whether host path h is in the user's store root and not in the view's own private
// layer: what no lookup in the view may reach.
func (v *View) hides(h string) bool {
	return v.ns.hidden(h) && !within(h, v.upper)
}

// start is where a relative path starts: the caller's working directory or its dirfd.
type start struct {
	path string // view path
	// pure: the kernel starts from the same object, the shared directory at path.
	pure bool
	// gone: the view removed the directory: "." and ".." can be walked from it and nothing else;
	// ghost is then its host path for the supervisor's calls on it, "" when it has none.
	gone  bool
	ghost string
}

// startDir is the directory a relative path starts from: the caller's cwd or its dirfd.
func (v *View) startDir(t tracee, dirfd int) (start, error) {
	link := "cwd"
	if dirfd == unix.AT_FDCWD {
		if p, g, ok := v.virtualCwd(t); ok {
			if g == nil {
				return start{path: p}, nil
			}
			if err := v.makeGhost(g); err != nil {
				return start{path: p, gone: true}, nil
			}
			return start{path: p, gone: true, ghost: g.host()}, nil
		}
	} else {
		if dirfd < 0 {
			return start{}, unix.EBADF
		}
		link = "fd/" + strconv.Itoa(dirfd)
	}
	var target string
	if dirfd == unix.AT_FDCWD {
		// A working directory is always a directory: one readlink, and a stat only to tell why
		// the readlink failed.
		var err error
		if target, err = readlink(t.procPath(link)); err != nil {
			var st unix.Stat_t
			if long.Stat(t.procPath(link), &st) != nil {
				return start{}, errTraceeGone
			}
			return start{}, unix.EBADF
		}
	} else {
		var st unix.Stat_t
		if err := long.Stat(t.procPath(link), &st); err != nil {
			return start{}, unix.EBADF
		}
		var err error
		if target, err = readlink(t.procPath(link)); err != nil {
			return start{}, unix.EBADF
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return start{}, unix.ENOTDIR
		}
	}
	if !strings.HasPrefix(target, "/") {
		return start{}, unix.ENOENT
	}
	if h, ok := strings.CutSuffix(target, " (deleted)"); ok {
		// A removed private directory, which the kernel still holds: ".." leads to where its
		// parent was.
		if _, ok := v.viewPathOf(h); ok {
			return v.removedStart(t, dirfd, link)
		}
		return start{}, unix.ENOENT
	}
	if p, ok := v.viewPathOf(target); ok {
		return start{path: p}, nil
	}
	if v.ns.hidden(target) {
		return start{}, unix.ENOENT
	}
	p := v.viewOfLower(target)
	if g := v.ghostOfLower(target, p); g != nil {
		// A shared directory the view removed, which the task still holds.
		if err := v.makeGhost(g); err != nil {
			return start{path: p, gone: true}, nil
		}
		return start{path: p, gone: true, ghost: g.host()}, nil
	}
	return start{path: p, pure: p == target}, nil
}

// removedStart is where a relative path starts from the private directory that the view removed
// and that the task still holds, as its working directory (link "cwd") or as descriptor dirfd:
// the supervisor's calls on "." act on that directory. They act on the supervisor's own
// descriptor of it, taken now (the task's open file, or an O_PATH open through its /proc entry),
// never through the task's /proc entry by path: that leads wherever the task's descriptor or
// working directory leads when the call is performed, and another thread of the task can have
// put a shared directory there by then (dup2, fchdir). The descriptor is released when the call
// has been answered (callState.hold).
func (v *View) removedStart(t tracee, dirfd int, link string) (start, error) {
	if t.call == nil { // not answering a call: nothing acts on the ghost
		target, err := readlink(t.procPath(link))
		if p, ok := v.viewPathOf(strings.TrimSuffix(target, " (deleted)")); err == nil && ok {
			return start{path: p, gone: true}, nil
		}
		return start{}, unix.ENOENT
	}
	var obj int
	var err error
	if dirfd == unix.AT_FDCWD {
		obj, err = long.Open(t.procPath(link), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	} else {
		obj, _, err = t.taskObject(dirfd)
	}
	if err != nil {
		if err == errTraceeGone {
			return start{}, err
		}
		return start{}, unix.EBADF
	}
	t.call.hold(obj)
	// What the supervisor now holds, which the task may have changed since it looked.
	target, err := readlink(fdPath(obj))
	if err != nil {
		return start{}, unix.EBADF
	}
	h, removed := strings.CutSuffix(target, " (deleted)")
	p, ok := v.viewPathOf(h)
	if !removed || !ok {
		return start{}, unix.ENOENT // replaced by another directory while the call was made
	}
	return start{path: p, gone: true, ghost: fdPath(obj) + "/."}, nil
}

func splitPath(p string) []string {
	parts := strings.Split(p, "/")
	out := parts[:0]
	for _, s := range parts {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// readlink is readlinkat(AT_FDCWD, p). Of a magic link (/proc/.../fd/N, cwd) to a directory whose
// path is longer than the kernel writes out (ENAMETOOLONG), it returns the path that longDirPath
// finds.
func readlink(p string) (string, error) {
	target, err := readlinkat(unix.AT_FDCWD, p)
	if err == unix.ENAMETOOLONG && strings.HasPrefix(p, "/proc/") {
		return longDirPath(p)
	}
	return target, err
}

// longDirPath returns the path of the directory that magic link link leads to by climbing from it
// with ".." to the root, as getcwd did before the kernel had it: at each level, the parent's entry
// whose device and inode are the child's is its name. ENAMETOOLONG where link leads to anything
// else.
func longDirPath(link string) (string, error) {
	fd, err := unix.Open(link, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOTDIR {
			err = unix.ENAMETOOLONG
		}
		return "", err
	}
	var names []string
	for range maxPath {
		var st, pst unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return "", err
		}
		parent, err := unix.Openat(fd, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return "", err
		}
		if err := unix.Fstat(parent, &pst); err != nil {
			unix.Close(parent)
			return "", err
		}
		if pst.Dev == st.Dev && pst.Ino == st.Ino { // the root
			unix.Close(parent)
			slices.Reverse(names)
			return "/" + strings.Join(names, "/"), nil
		}
		name, err := entryNamed(parent, st.Dev, st.Ino)
		if err != nil {
			unix.Close(parent)
			return "", err
		}
		names = append(names, name)
		fd = parent
	}
	unix.Close(fd)
	return "", unix.ELOOP
}

// entryNamed returns the name in directory dirfd of the object with device dev and inode ino (a
// mount point's name gives the mounted root's).
func entryNamed(dirfd int, dev, ino uint64) (string, error) {
	dup, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	f := os.NewFile(uintptr(dup), ".")
	defer f.Close()
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			var st unix.Stat_t
			err := unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW)
			if err == nil && st.Dev == dev && st.Ino == ino {
				return n, nil
			}
		}
		if err != nil {
			return "", unix.ENOENT // a removed directory: no name leads to it
		}
	}
}

// readlinkat is readlinkat(2) with a buffer that grows to fit the target.
func readlinkat(dirfd int, p string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := long.Readlinkat(dirfd, p, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// dirCache remembers shared directories, by path, that a walk from "/" reached through directories
// only, with the device and inode it found there. Each view has its own, for its invocation's life
// only; knownDir checks the view's changes since before it trusts an entry.
type dirCache struct {
	mu sync.RWMutex
	m  map[string]devIno
}

type devIno struct{ dev, ino uint64 }

// maxKnownDirs bounds the cache; once full it takes nothing more.
const maxKnownDirs = 1 << 14

func (c *dirCache) add(p string, st *unix.Stat_t) {
	if within(p, "/proc") {
		return // pids come and go; /proc/self is the caller's, not a path
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]devIno{}
	}
	if len(c.m) < maxKnownDirs {
		c.m[p] = devIno{st.Dev, st.Ino}
	}
}

func (c *dirCache) get(p string) (devIno, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	d, ok := c.m[p]
	return d, ok
}

// knownDir lets a walk from "/" skip the lookups of leading components of rest: it returns how many
// components (never the last one) lead to a directory the cache knows, which this view has not
// changed (no entry at it or above it), and which still is that directory (one lstat: same device
// and inode), and that lstat's status. A walk lstats every component to see symlinks and the view's
// changes; for the directories above a file that costs one syscall each, where this costs one in
// all. An lstat that finds the same directory has reached it by the same route unless the shared
// tree was rearranged under the invocation (a directory moved and a symlink put in its old place),
// which fsvirt does not support while an invocation runs; the cache lives as long as the
// invocation.
func (v *View) knownDir(rest []string) (int, string, *unix.Stat_t) {
	// The deepest prefix, not counting the last component, made of plain names.
	n := 0
	for n < len(rest)-1 && rest[n] != "." && rest[n] != ".." && len(rest[n]) <= unix.NAME_MAX {
		n++
	}
	if n == 0 {
		return 0, "", nil
	}
	prefix := "/" + strings.Join(rest[:n], "/")
	for ; n > 0; n-- {
		want, ok := v.dirs.get(prefix)
		if ok && v.unchangedAbove(prefix) {
			var st unix.Stat_t
			if long.Lstat(prefix, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR &&
				(devIno{st.Dev, st.Ino}) == want {
				return n, prefix, &st
			}
			return 0, "", nil
		}
		prefix = path.Dir(prefix)
	}
	return 0, "", nil
}

// unchangedAbove reports whether the view changed neither p nor a directory above it, and p is not
// hidden: the walk would find the shared directory at p. Mirror directories (made in the private
// layer only to hold a changed descendant) change nothing on the way.
func (v *View) unchangedAbove(p string) bool {
	if v.ns.hidden(p) {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.entries) == 0 {
		return true
	}
	for a := p; ; a = path.Dir(a) {
		if !v.entries[a].transparent(a) {
			return false
		}
		if a == "/" {
			return true
		}
	}
}

// transparent reports whether a walk through view path p, where e is the view's entry (nil: none),
// finds what it would find without the view: no entry, or a mirror of the shared directory at p
// itself.
func (e *entry) transparent(p string) bool {
	return e == nil || e.kind == entryDir && !e.viewsOwn() && e.lower == p
}
