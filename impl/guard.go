package impl

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// A run without limits (Limits) keeps its private layer on the store's file system, where the
// kernel counts nothing per run. Its default guard keeps that file system from filling up: a
// floor of free space (Limits.MinFree; by default 5% of the file system, and never more than
// half of what was free when the run started), under which
//   - calls that would add to the layer (making a name, copying a file up) fail with ENOSPC,
//     checked with one fstatfs(2) each (mayGrow);
//   - and, since writes through a descriptor the command already holds never reach the supervisor
//     (docs/kernel.md, "Limits are a tmpfs"), a watch of the free space every guardTick kills the
//     command's processes once half the floor is gone too (Result.Stopped says so).
// It bounds what the whole file system keeps free, not the layer itself: space other programs
// use counts too. An exact bound is Limits, a tmpfs of the layer's own.

// guardTick is how often the guard looks at the store's free space.
const guardTick = 50 * time.Millisecond

// defaultMinFreePercent is the default floor, as a share of the store's file system.
const defaultMinFreePercent = 5

// spaceGuard watches the free space of the file system that holds a store.
type spaceGuard struct {
	fd    int   // a file on it (the store's lock file), for fstatfs
	floor int64 // bytes to keep free
}

// statfsFree returns the free space (available to unprivileged users) and the size of the file
// system that holds fd.
func statfsFree(fd int) (free, size int64, err error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}

// newSpaceGuard returns the guard of the store whose lock file is fd for minFree (see
// Limits.MinFree), or nil for none. An explicit floor above what is free already is refused: the
// command could not make any change.
func newSpaceGuard(fd int, minFree int64) (*spaceGuard, error) {
	if minFree < 0 {
		return nil, nil
	}
	free, size, err := statfsFree(fd)
	if err != nil {
		return nil, fmt.Errorf("statfs of the store: %w", err)
	}
	floor := minFree
	if floor == 0 {
		floor = min(size*defaultMinFreePercent/100, free/2)
	} else if free <= floor {
		return nil, fmt.Errorf("the store's file system has %s free, not more than the %s to keep free (MinFree)",
			sizeString(free), sizeString(floor))
	}
	return &spaceGuard{fd: fd, floor: floor}, nil
}

// check reports whether the store's file system is under the floor now.
func (g *spaceGuard) check() bool {
	free, _, err := statfsFree(g.fd)
	return err == nil && free < g.floor
}

// watch looks at the free space every guardTick until stop is closed, and calls exhausted once
// (with why) when under half the floor.
func (g *spaceGuard) watch(stop <-chan struct{}, exhausted func(why string)) {
	tick := time.NewTicker(guardTick)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		free, _, err := statfsFree(g.fd)
		if err != nil {
			continue
		}
		if free < g.floor/2 {
			exhausted(fmt.Sprintf("the store's file system had %s free, under half the %s to keep free (--min-free): "+
				"the command wrote past it through a descriptor it held, and was killed", sizeString(free), sizeString(g.floor)))
			return
		}
	}
}

// mayGrow fails with ENOSPC when the store's file system is under the guard's floor: for what
// adds an object to the private layer (a name, a copy-up). Writes to the view's own files through
// descriptors the command holds, and opens of them, are the watch's to bound.
func (v *View) mayGrow() error {
	if g := v.ns.guard; g != nil && g.check() {
		return unix.ENOSPC
	}
	return nil
}

// sizeString is n in the largest binary unit that keeps one decimal.
func sizeString(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	i := -1
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, units[i])
}

// killCommand kills the processes of v's command: the one the supervisor started and its
// descendants, and, when this process reaps the command's orphans (reap), every process it has
// adopted too.
func (v *View) killCommand(reap bool) {
	v.mu.Lock()
	top := v.top
	v.mu.Unlock()
	if top.pid == 0 {
		return
	}
	ids := append([]procID{top}, descendants(top)...)
	if reap {
		ids = append(ids, descendants(procID{selfPid, 0})...)
	}
	for _, id := range ids {
		killProc(id)
	}
}
