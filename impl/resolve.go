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
	path   string // cleaned absolute view path of the final object (or where it would be created)
	exists bool
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
	reachesLower bool
	// fdObject is set when the path named a magic link to an object the view cannot name by path
	// (a pipe, a socket, a deleted file): the supervisor reopens /proc/TID/fd/N itself.
	fdObject string
	// longName is set, with deferLong, when the final component is longer than NAME_MAX: the error
	// its lookup gives, which the caller reports where the kernel looks the final name up.
	longName      error
	trailingSlash bool
	// dot: the path ended in ".", ".." or "/" (directly or through a symlink), where nothing can
	// be created.
	dot bool
	// gone: the path named a directory the view removed that the caller still holds (see ghost):
	// host is the ghost, and inTree is false, so that calls act on it directly.
	gone bool
	// deadDir: the final name is in such a removed directory: it does not exist, and cannot be
	// made (ENOENT).
	deadDir bool
}

// resolveOpts carries the lookup rules of one call.
type resolveOpts struct {
	followFinal bool
	resolve     uint64 // openat2 RESOLVE_* flags
	// creat: the caller creates the final component (O_CREAT). A trailing slash then neither
	// follows a final symlink nor requires a directory: open fails with EISDIR instead.
	creat bool
	// deferLong: a final component longer than NAME_MAX does not fail the walk but sets
	// resolved.longName, for a call that makes other checks before it looks the final name up
	// (rename; open with O_CREAT, which refuses a trailing slash first).
	deferLong bool
	// named: the caller named the object itself (AT_EMPTY_PATH): the kernel walks nothing, and
	// checks no search permission on the way the view resolves.
	named bool
}

// magicLink matches /proc entries whose "symlinks" jump to an object rather than to a path.
var magicLink = regexp.MustCompile(`^/proc/[0-9]+(/task/[0-9]+)?/(cwd|root|exe|fd/[0-9]+|map_files/[^/]+)$`)

// resolve walks unsafePath component by component in the view, starting at the caller's cwd or
// dirfd, with the kernel's rules for "..", symlinks (ELOOP after maxSymlinks) and trailing slashes.
// It never reads through the user's store root: a step into it fails with ENOENT, and a final name
// that would find it finds nothing (see hides).
func (v *View) resolve(t tracee, dirfd int, unsafePath string, o resolveOpts) (resolved, error) {
	r := resolved{pure: true}
	if unsafePath == "" {
		return r, unix.ENOENT
	}
	r.trailingSlash = strings.HasSuffix(unsafePath, "/")
	beneath := o.resolve&(unix.RESOLVE_BENEATH|unix.RESOLVE_IN_ROOT) != 0
	var root, cur string
	// gone: cur is a directory the view removed, which the caller still holds (see start).
	var gone bool
	var ghost string
	if strings.HasPrefix(unsafePath, "/") && o.resolve&unix.RESOLVE_IN_ROOT == 0 {
		if o.resolve&unix.RESOLVE_BENEATH != 0 {
			return r, unix.EXDEV
		}
		root, cur = "/", "/"
	} else {
		s, err := v.startDir(t, dirfd)
		if err != nil {
			return r, err
		}
		r.pure = r.pure && s.pure
		cur, gone, ghost = s.path, s.gone, s.ghost
		root = "/"
		if beneath {
			root = cur
		}
	}
	var creds *creds // read from /proc/TID/status only when /proc/self is walked
	rest := splitPath(unsafePath)
	// plain: cur was reached from "/" through directories only, each looked up at its own path.
	plain := cur == "/" && !beneath
	links := 0
	var curSt *unix.Stat_t // cur's, when known
	if plain {
		// The lstat that found the known directory is also what maySearch would look at: the
		// view has not changed the directory (no entry at or above it), so it is the shared one.
		if n, dir, st := v.knownDir(rest); n > 0 {
			cur, rest, curSt = dir, rest[n:], st
		}
	}
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		last := len(rest) == 0
		if !o.named {
			var err error
			if !gone {
				err = v.maySearch(t, &creds, cur, curSt)
			} else if ghost != "" {
				// A removed directory keeps its mode: the kernel checks it before it finds
				// nothing there.
				err = v.maySearchHost(t, &creds, cur, ghost)
			}
			if err != nil {
				return r, err
			}
		}
		switch name {
		case ".":
			continue
		case "..":
			gone = false
			plain = false
			curSt = nil
			if cur == root {
				if o.resolve&unix.RESOLVE_BENEATH != 0 {
					return r, unix.EXDEV
				}
				continue
			}
			cur = path.Dir(cur)
			continue
		}
		if gone { // nothing is in a removed directory, nor can be made there
			// Not even a name longer than NAME_MAX: the file system's lookup, which refuses
			// it, is not asked.
			if !last {
				return r, unix.ENOENT
			}
			// The final name is not there; a call that would make it fails with ENOENT, after
			// the checks the kernel makes before it looks the name up (open's EISDIR for a
			// trailing slash with O_CREAT).
			r.path, r.inTree, r.pure, r.deadDir = path.Join(cur, name), v.ns.inTree(cur), false, true
			return r, nil
		}
		next := path.Join(cur, name)
		if cur == "/proc" && (name == "self" || name == "thread-self") {
			// The supervisor's own /proc/self is not the caller's.
			if creds == nil {
				c, err := t.status()
				if err != nil {
					return r, err
				}
				creds = &c
			}
			// The kernel takes the caller's own: a resolution through it stays pure.
			next = "/proc/" + strconv.Itoa(creds.tgid)
			if name == "thread-self" {
				next += "/task/" + strconv.Itoa(t.tid)
			}
			plain = false
			cur, curSt = next, nil
			continue
		}
		if supervisorOnly(t, next) {
			return r, unix.EACCES
		}
		l, st, err := v.locate(next)
		if err == nil && v.hides(l.host) {
			// The store root is not in any view. In a tree its name is free, as in a
			// directory the view removed it from; outside the trees, where a new name is
			// made on the host, it is not.
			if !last || !v.ns.inTree(next) {
				return r, unix.ENOENT
			}
			err, r.pure = unix.ENOENT, false // the kernel would find the store root
		}
		if err == unix.ENAMETOOLONG && last && o.deferLong {
			r.path, r.inTree, r.longName = next, v.ns.inTree(next), err
			return r, nil
		}
		if err == unix.ENOENT {
			if !last {
				return r, unix.ENOENT
			}
			r.path = next
			r.inTree = v.ns.inTree(next)
			return r, nil
		}
		if err != nil {
			return r, err
		}
		if l.ent != nil && l.ent.lower != next {
			r.pure = false // the kernel would find another object at this path
		} else if r.pure && l.ent != nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && metaDiffers(next, &st) {
			// The view changed the directory's mode or owner: the kernel would check the caller's
			// rights on the shared one instead.
			r.pure = false
		}
		// With O_CREAT a final name followed by a slash is never followed, also when the slash
		// ends a symlink's target (s -> s/): open then fails with EISDIR.
		creatSlash := o.creat && r.trailingSlash
		if st.Mode&unix.S_IFMT == unix.S_IFLNK && (!last || o.followFinal && !creatSlash || r.trailingSlash && !o.creat) {
			if o.resolve&unix.RESOLVE_NO_SYMLINKS != 0 {
				return r, unix.ELOOP
			}
			plain = false
			links++
			if links > maxSymlinks {
				return r, unix.ELOOP
			}
			target, err := readlink(l.host)
			if err != nil {
				return r, err
			}
			if magicLink.MatchString(next) {
				if o.resolve&(unix.RESOLVE_NO_MAGICLINKS|unix.RESOLVE_BENEATH|unix.RESOLVE_IN_ROOT) != 0 {
					return r, unix.ELOOP
				}
				mapped, ok, err := v.magicTarget(target, l.host)
				if err != nil {
					return r, err
				}
				if !ok { // an object without a path in the view
					if !last {
						return r, unix.ENOTDIR
					}
					r.path, r.exists, r.fdObject = next, true, next
					r.inTree, r.pure = false, false
					r.mode = st.Mode & unix.S_IFMT
					return r, nil
				}
				// The kernel jumps to the object itself. The view walks the target from the root
				// instead, which for a shared object at its own path finds what the kernel finds
				// (the walk checks the rest); an object in the private layer, or the symlink an
				// O_PATH proxy stands for, the kernel would not find by the view path.
				if mapped != target {
					r.pure = false
				}
				target = mapped
			}
			if strings.HasPrefix(target, "/") {
				curSt = nil
				if beneath {
					if o.resolve&unix.RESOLVE_BENEATH != 0 {
						return r, unix.EXDEV
					}
					cur = root
				} else {
					cur = "/"
				}
			}
			rest = append(splitPath(target), rest...)
			if strings.HasSuffix(target, "/") && last {
				r.trailingSlash = true
			}
			continue
		}
		if !last {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return r, unix.ENOTDIR
			}
			// Only directories that every caller may search are known (knownDir skips them).
			plain = plain && st.Mode&0o111 == 0o111
			if plain && l.ent.transparent(next) {
				v.dirs.add(next, &st)
			}
			cur, curSt = next, &st
			continue
		}
		cur = next
		r.exists, r.mode = true, st.Mode&unix.S_IFMT
		r.host, r.ent = l.host, l.ent
	}
	if gone { // the path was "." in a removed directory: the supervisor acts on its ghost
		if ghost == "" {
			return r, unix.ENOENT
		}
		r.path, r.exists, r.mode, r.dot, r.gone = cur, true, unix.S_IFDIR, true, true
		r.host, r.pure, r.inTree = ghost, false, false
		return r, nil
	}
	if !r.exists { // the path ended in ".", ".." or a symlink to a directory: cur is a directory
		r.exists, r.mode, r.dot = true, unix.S_IFDIR, true
		l, _, err := v.locate(cur)
		if err != nil {
			return r, err
		}
		r.host, r.ent = l.host, l.ent
	}
	if r.mode == unix.S_IFDIR && r.host == v.ns.storeParent {
		// The view shows the shared listing of the directory that holds the store root, which
		// lists the store root: a listing of the view's own copy will not.
		if ok, err := v.hideStore(cur); err != nil {
			return r, err
		} else if ok {
			l, _, err := v.locate(cur)
			if err != nil {
				return r, err
			}
			r.host, r.ent = l.host, l.ent
		}
	}
	r.reachesLower = r.pure && (r.ent == nil || r.ent.lower == cur)
	if r.ent != nil {
		r.own = r.ent.viewsOwn()
		if r.own || r.ent.lower != cur {
			r.pure = false
		}
	}
	if r.pure && r.mode != unix.S_IFDIR && v.isLinked(r.host) {
		r.pure = false // the kernel would not count the view's names of it (see linkShared)
	}
	r.path = cur
	r.inTree = v.ns.inTree(cur)
	if r.trailingSlash && r.mode != unix.S_IFDIR && !o.creat {
		return r, unix.ENOTDIR
	}
	return r, nil
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

// maySearch checks that the caller of t may search view directory dir (st, when known, its
// status), as may_lookup does before each component of a walk: the supervisor resolves with its
// own credentials, and a call it answers itself would otherwise reach what the caller cannot. A
// directory every class may search (a+x) is not looked at further (an ACL entry of a named user
// that refuses it is not seen); for another, the caller's credentials are read into *c once per
// walk (by a supervisor that is root: another checks as itself), and the kernel checks as the
// caller (hostMay), unless the caller holds CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE, which
// search every directory. A dir that cannot be located is left to the lookup in it, which fails
// as it would.
func (v *View) maySearch(t tracee, c **creds, dir string, st *unix.Stat_t) error {
	if st != nil && st.Mode&0o111 == 0o111 || *c != nil && (*c).searchesAll() {
		return nil
	}
	located := false
	var l loc
	if st == nil {
		var lst unix.Stat_t
		var err error
		if l, lst, err = v.locate(dir); err != nil || lst.Mode&0o111 == 0o111 {
			return nil
		}
		located = true
	}
	caller, all, err := walkCaller(t, c, dir)
	if err != nil || all {
		return err
	}
	if !located {
		var err error
		if l, _, err = v.locate(dir); err != nil {
			return nil
		}
	}
	return hostMay(caller, l.host, unix.X_OK)
}

// maySearchHost is maySearch for view directory dir that the supervisor reaches at host path h
// rather than by locating dir: a directory the view removed, which the caller still holds.
func (v *View) maySearchHost(t tracee, c **creds, dir, h string) error {
	var st unix.Stat_t
	if long.Stat(h, &st) != nil || st.Mode&0o111 == 0o111 || *c != nil && (*c).searchesAll() {
		return nil
	}
	caller, all, err := walkCaller(t, c, dir)
	if err != nil || all {
		return err
	}
	return hostMay(caller, h, unix.X_OK)
}

// walkCaller returns the credentials a walk checks search permission with, reading the caller's
// into *c once per walk, and all when they search dir whatever its mode.
func walkCaller(t tracee, c **creds, dir string) (caller creds, all bool, err error) {
	// A supervisor that is not root checks as itself whatever the caller's credentials
	// (asCaller), and its callers have no others (no_new_privs): it need not read them.
	me := selfIDs()
	caller = creds{fsuid: me.uid, fsgid: me.gid, groups: me.groups, capEff: me.capEff}
	if *c == nil && me.uid == 0 {
		cr, err := t.status()
		if err != nil {
			return caller, false, err
		}
		*c = &cr
	}
	if *c != nil {
		// As above, for the first directory that needs the credentials.
		if (*c).searchesAll() {
			return caller, true, nil
		}
		caller = **c
		if ownProc(dir, t.tid, caller.tgid) {
			return caller, true, nil
		}
	}
	return caller, false, nil
}

// ownProc reports whether dir is the /proc directory of the caller's own process (tgid) or
// thread (tid), or lies in it: the kernel lets a task into its own whatever their modes (a process
// that changed its credentials is not dumpable, and its /proc/PID/fd is root's, mode 0500).
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
	if p, ok, err := v.proxyOf(target, func(st *unix.Stat_t) error { return long.Stat(link, st) }); err != nil || ok {
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
		if p, ok := v.viewPathOf(h); ok {
			return start{path: p, gone: true, ghost: t.procPath(link) + "/."}, nil
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
			if unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == dev && st.Ino == ino {
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
// and inode), and that lstat's status. A walk lstats every component to see symlinks and the view's changes; for the
// directories above a file that costs one syscall each, where this costs one in all. An lstat that
// finds the same directory has reached it by the same route unless the shared tree was rearranged
// under the invocation (a directory moved and a symlink put in its old place), which fsvirt does not
// support while an invocation runs; the cache lives as long as the invocation.
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
			if long.Lstat(prefix, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && (devIno{st.Dev, st.Ino}) == want {
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
