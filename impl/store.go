package impl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"
)

// The store root of a user, <root>/fsvirt-<uid>, holds the private layers of every run and pool of
// that user: one store per process, store-XXXXXX, holding a lock file that the process keeps
// flock'ed for its life, and one inv-N directory per running invocation. A process that dies loses
// its lock; the next store created in the same store root sweeps it. Every view hides the whole
// store root, so that no view reaches another's private layer, whichever process serves it.
type store struct {
	root string // the user's store root: hidden from every view
	dir  string // this process's store in it
	lock int
	next atomic.Uint64
	// limited: its invocations' layers are mounts (Limits), detached before it is removed.
	limited bool
}

// limit makes the store's views limited by l, once it has checked that they can be.
func (s *store) limit(ns *namespace, l Limits) error {
	if err := checkLimits(l, s.dir); err != nil {
		return err
	}
	ns.limits, s.limited = l, l.set()
	if !l.set() {
		g, err := newSpaceGuard(s.lock, l.MinFree) // the lock file is on the store's file system
		if err != nil {
			return err
		}
		ns.guard = g
	}
	return nil
}

const (
	userRootPrefix = "fsvirt-" // + the effective uid
	storePrefix    = "store-"
)

// defaultStoreRoot is $TMPDIR, else /var/tmp (which, unlike /tmp, is usually on the same file
// system as the tree, so copy-up can reflink).
func defaultStoreRoot() string {
	if d := os.Getenv("TMPDIR"); d != "" {
		return d
	}
	return "/var/tmp"
}

// openStore creates a fresh store in the user's store root under root (default: defaultStoreRoot),
// making the store root if it is missing, and sweeps the stores of dead processes there.
func openStore(root string) (*store, error) {
	if root == "" {
		root = defaultStoreRoot()
	}
	root, err := filepath.Abs(root) // the view compares absolute paths with the store's
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("store %s: not a directory", root)
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	user, err := userRoot(real)
	if err != nil {
		return nil, err
	}
	sweep(user)
	// Build the store under a name sweep ignores, lock it, then give it its real name: a store
	// visible to sweep always has its lock held.
	tmp, err := os.MkdirTemp(user, "."+storePrefix)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", user, err)
	}
	dir := filepath.Join(user, filepath.Base(tmp)[1:])
	lock, err := long.Open(filepath.Join(tmp, "lock"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err == nil {
		if err = unix.Flock(lock, unix.LOCK_EX|unix.LOCK_NB); err == nil {
			if err = os.Rename(tmp, dir); err != nil {
				unix.Close(lock)
			}
		} else {
			unix.Close(lock)
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("store %s: %w", user, err)
	}
	return &store{root: user, dir: dir, lock: lock}, nil
}

// userRoot returns the store root of this user under directory root, <root>/fsvirt-<euid>, made
// 0700 if missing. One that exists must be a directory (not a symlink) of this user's that nobody
// else can write: another user who could plant or change it there (root is typically a sticky,
// world-writable /var/tmp) would reach every private layer.
func userRoot(root string) (string, error) {
	euid := os.Geteuid()
	dir := filepath.Join(root, userRootPrefix+strconv.Itoa(euid))
	if err := long.Mkdir(dir, 0o700); err != nil && err != unix.EEXIST {
		return "", fmt.Errorf("store %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := long.Lstat(dir, &st); err != nil {
		return "", fmt.Errorf("store %s: %w", dir, err)
	}
	const refuse = "store %s: %s; fsvirt keeps private layers only in a directory of this user's " +
		"(uid %d) that nobody else can write: remove it, or choose another --store"
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return "", fmt.Errorf(refuse, dir, "is a symbolic link", euid)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return "", fmt.Errorf(refuse, dir, "is not a directory", euid)
	case int(st.Uid) != euid:
		return "", fmt.Errorf(refuse, dir, "is owned by uid "+strconv.Itoa(int(st.Uid)), euid)
	case st.Mode&0o022 != 0:
		return "", fmt.Errorf(refuse, dir, fmt.Sprintf("is writable by others (mode %#o)", st.Mode&0o777), euid)
	}
	return dir, nil
}

// sweep removes the stores in store root root whose owner has died (their lock can be taken).
func sweep(root string) {
	matches, _ := filepath.Glob(filepath.Join(root, storePrefix+"*"))
	for _, dir := range matches {
		fd, err := long.Open(filepath.Join(dir, "lock"), unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err == unix.ENOENT {
			// A store has its lock from its creation until close removes it: its owner was
			// killed while removing it, or is finishing that now.
			unmountUnder(dir)
			os.RemoveAll(dir)
			continue
		}
		if err != nil {
			continue
		}
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
			unmountUnder(dir) // limited layers
			os.RemoveAll(dir)
		}
		unix.Close(fd)
	}
}

// newView names a fresh, empty private layer for one invocation; the view creates it on first use.
func (s *store) newView(ns *namespace) (*View, error) {
	return newView(ns, s.dir+"/inv-"+strconv.FormatUint(s.next.Add(1), 10))
}

// close removes the store, and leaves the store root, which other processes may be using; every
// failure is reported.
func (s *store) close() error {
	var result *multierror.Error
	if s.limited {
		if err := unmountUnder(s.dir); err != nil {
			result = multierror.Append(result, err)
		}
	}
	if err := removeLayer(s.dir); err != nil {
		result = multierror.Append(result, fmt.Errorf("remove store %s: %w", s.dir, err))
	}
	if err := unix.Close(s.lock); err != nil && !errors.Is(err, unix.EBADF) {
		result = multierror.Append(result, err)
	}
	return result.ErrorOrNil()
}
