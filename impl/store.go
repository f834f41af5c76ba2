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

// store is one process's directory of private layers: <root>/fsvirt-XXXXXX, holding a lock file
// that the process keeps flock'ed for its life, and one inv-N directory per running invocation.
// A process that dies loses its lock; the next store created under the same root sweeps it.
type store struct {
	dir  string
	lock int
	next atomic.Uint64
}

const storePrefix = "fsvirt-"

// defaultStoreRoot is $TMPDIR, else /var/tmp (which, unlike /tmp, is usually on the same file
// system as the tree, so copy-up can reflink).
func defaultStoreRoot() string {
	if d := os.Getenv("TMPDIR"); d != "" {
		return d
	}
	return "/var/tmp"
}

// openStore sweeps dead stores under root and creates a fresh 0700 one.
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
	sweep(real) // best effort: a store we cannot sweep belongs to someone else
	// Build the store under a name sweep ignores, lock it, then give it its real name: a store
	// visible to sweep always has its lock held.
	tmp, err := os.MkdirTemp(real, "."+storePrefix)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	dir := filepath.Join(real, filepath.Base(tmp)[1:])
	lock, err := unix.Open(filepath.Join(tmp, "lock"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
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
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	return &store{dir: dir, lock: lock}, nil
}

// sweep removes the stores under root whose owner has died (their lock can be taken).
func sweep(root string) {
	matches, _ := filepath.Glob(filepath.Join(root, storePrefix+"*"))
	for _, dir := range matches {
		fd, err := unix.Open(filepath.Join(dir, "lock"), unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(dir)
		}
		unix.Close(fd)
	}
}

// newView names a fresh, empty private layer for one invocation; the view creates it on first use.
func (s *store) newView(ns *namespace) (*View, error) {
	return newView(ns, s.dir+"/inv-"+strconv.FormatUint(s.next.Add(1), 10))
}

// close removes the store; every failure is reported.
func (s *store) close() error {
	var result *multierror.Error
	if err := removeLayer(s.dir); err != nil {
		result = multierror.Append(result, fmt.Errorf("remove store %s: %w", s.dir, err))
	}
	if err := unix.Close(s.lock); err != nil && !errors.Is(err, unix.EBADF) {
		result = multierror.Append(result, err)
	}
	return result.ErrorOrNil()
}
