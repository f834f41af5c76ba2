package impl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits bound what one invocation's private layer may hold; a zero field bounds nothing.
//
// A limited invocation's private layer is a tmpfs of its own, mounted on its directory in the
// store when the invocation first changes something and detached when it ends: the kernel then
// counts, and refuses with ENOSPC the write, copy-up, fallocate or creation that would pass a
// limit, whoever makes it: the supervisor, or the task through a descriptor it was given
// (docs/kernel.md, "Limits are a tmpfs"). Blocks are counted as allocated (a sparse file's holes
// are free, fallocate's reservation is not), in pages. A copy-up that does not fit fails whole: the
// copy is made as an unnamed file and named only once complete (copyUp). Mounting needs
// CAP_SYS_ADMIN; the layer then lives in memory (swappable), like any tmpfs, instead of on the
// store's file system.
type Limits struct {
	// Bytes bounds the data of the layer's files, in allocated blocks; tmpfs rounds it up to a
	// whole page.
	Bytes int64
	// Files bounds the layer's inodes: files, directories, symlinks, the directories made to
	// hold a changed file's path included.
	Files int64
	// MinFree is, without Bytes and Files, the free space to keep on the file system that holds
	// the store (guard.go): under it, calls that would make a layer grow fail with ENOSPC, and Run
	// kills the command once half of it is gone too. 0 means the default, 5% of the file system
	// but at most half of what is free when the run or pool starts; a negative value, none.
	MinFree int64
}

func (l Limits) set() bool { return l.Bytes > 0 || l.Files > 0 }

// layerInodes are the inodes of a limited layer that are not the invocation's: the mount's root
// (the invocation's directory) and the layer's root (upper).
const layerInodes = 2

// Usage is what a private layer holds.
type Usage struct {
	Bytes int64 `json:"bytes"` // allocated to its files' data
	Files int64 `json:"files"` // its files, directories and symlinks, the layer's root not counted
}

// tmpfsOptions are the mount options of a layer limited by l.
func (l Limits) tmpfsOptions() string {
	opts := []string{"mode=0700"}
	if l.Bytes > 0 {
		opts = append(opts, "size="+strconv.FormatInt(l.Bytes, 10))
	}
	if l.Files > 0 {
		opts = append(opts, "nr_inodes="+strconv.FormatInt(l.Files+layerInodes, 10))
	}
	return strings.Join(opts, ",")
}

// mountLimits makes dir, an invocation's fresh directory, a tmpfs bounded by l.
func mountLimits(dir string, l Limits) error {
	if err := unix.Mount("fsvirt", dir, "tmpfs", unix.MS_NOSUID, l.tmpfsOptions()); err != nil {
		return fmt.Errorf("mount a tmpfs for a limited private layer on %s: %w", dir, err)
	}
	return nil
}

// checkLimits refuses limits that cannot be enforced here, before anything runs: it mounts, and
// unmounts, a tmpfs with l's options in the store's directory dir.
func checkLimits(l Limits, dir string) error {
	if l.Bytes < 0 || l.Files < 0 {
		return fmt.Errorf("negative limit (bytes %d, files %d)", l.Bytes, l.Files)
	}
	if !l.set() {
		return nil
	}
	probe := filepath.Join(dir, "limits-probe")
	if err := os.Mkdir(probe, 0o700); err != nil {
		return err
	}
	defer os.Remove(probe)
	if err := mountLimits(probe, l); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("limits on the private layer need the right to mount a tmpfs (CAP_SYS_ADMIN; run as root): %w", err)
		}
		return err
	}
	return unix.Unmount(probe, unix.MNT_DETACH)
}

// unmountUnder detaches every mount on or below dir (a store, or an invocation's directory) so
// that it can be removed: limited layers, also those of a store whose owner died.
func unmountUnder(dir string) error {
	mounts, err := mountPoints()
	if err != nil {
		return err
	}
	// The deepest first.
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if within(m, dir) {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
				return fmt.Errorf("unmount %s: %w", m, err)
			}
		}
	}
	return nil
}

// mountPoints lists the mount points of this process's mount namespace.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []string
	err = readMountinfo(f, func(point, _ string) { mounts = append(mounts, point) })
	return mounts, err
}

// readMountinfo calls fn with the mount point and file system type of each line of a
// /proc/PID/mountinfo read from r.
func readMountinfo(r io.Reader, fn func(point, fstype string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional fields] - fstype source ...;
		// the mount point escapes space, tab, newline and backslash as \ooo.
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		fstype := ""
		if i := slices.Index(f[5:], "-"); i >= 0 && 5+i+1 < len(f) {
			fstype = f[5+i+1]
		}
		fn(unescapeMountinfo(f[4]), fstype)
	}
	return sc.Err()
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Usage returns what the view's private layer holds: counted by the kernel for a limited layer,
// by a walk of the layer otherwise. It may be called from a worker thread in an invocation: the
// counting runs on another thread, which carries no filter.
func (v *View) Usage() Usage {
	ch := make(chan Usage, 1)
	go func() { ch <- v.usage() }()
	return <-ch
}

func (v *View) usage() Usage {
	if !v.created.Load() {
		return Usage{}
	}
	if v.layerLimits().set() {
		var st unix.Statfs_t
		if long.Statfs(v.dir, &st) == nil {
			return Usage{Bytes: int64(st.Blocks-st.Bfree) * st.Bsize, Files: max(int64(st.Files-st.Ffree)-layerInodes, 0)}
		}
	}
	var u Usage
	seen := map[uint64]bool{}
	filepath.WalkDir(v.upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if long.Lstat(p, &st) != nil || seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		u.Bytes += st.Blocks * 512
		if p != v.upper {
			u.Files++
		}
		return nil
	})
	return u
}

// SetLimits bounds this invocation's private layer by l instead of the pool's Config.Limits. It
// must be called before the invocation changes anything (first thing in the function), and
// fails, as NewPool does, when l cannot be enforced: it needs root (CAP_SYS_ADMIN).
func (inv *Invocation) SetLimits(l Limits) error {
	v := inv.view
	if v.created.Load() {
		return errors.New("fsvirt: SetLimits after the invocation changed something")
	}
	// A probe of its own beside the invocation's directory (invocations probe concurrently),
	// made off the worker's thread, whose view does not see the store.
	err := v.offThread(func() error {
		dir, err := os.MkdirTemp(filepath.Dir(v.dir), "probe-")
		if err != nil {
			return err
		}
		defer os.Remove(dir)
		return checkLimits(l, dir)
	})
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.limits = l
	v.mu.Unlock()
	return nil
}

// layerLimits are the limits of v's private layer.
func (v *View) layerLimits() Limits {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.limits
}
