package impl

import (
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// A lookup on a file system served by a process or over a network (FUSE, NFS, SMB, 9p) can wait
// as long as its server does (docs/kernel.md, "The supervisor must not wait"). The supervisor
// answers a view's calls one at a time (View.turn), so such a lookup made within the turn would
// hold up every other call of the view, on any path. Before it takes the turn, the supervisor
// therefore looks up, outside it, the paths of a call that lie on such a mount (prefetch): a lookup
// that stalls then holds up its own call alone, and one that completes leaves the kernel's dentry
// cache warm, so that the walk within the turn does not wait again (unless the server stalls
// between the two, or gives its entries no time to live). When no such file system is mounted, a
// call costs one poll(2) of the mount table.

// slowTypes are file system types whose lookups a server process or a network decides.
var slowTypes = []string{"fuse", "fuseblk", "nfs", "nfs4", "cifs", "smb3", "9p", "afs", "ceph", "glusterfs"}

func slowType(fstype string) bool {
	for _, s := range slowTypes {
		if fstype == s || strings.HasPrefix(fstype, s+".") {
			return true
		}
	}
	return false
}

// slowMounts keeps the mount points of slow file systems, read again from /proc/self/mountinfo
// when the kernel says the mount table changed.
type slowMounts struct {
	mu     sync.Mutex
	fd     int      // /proc/self/mountinfo, polled for a change; -1 if it cannot be
	points []string // mount points of slow file systems
	read   bool     // points has been read
}

// current returns the slow mount points; nil when there are none.
func (s *slowMounts) current() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.read {
		fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			s.fd = fd
		}
		s.reread()
		return s.points
	}
	if s.fd < 0 {
		return s.points
	}
	// The kernel flags a change of the mount namespace on a mountinfo descriptor with POLLPRI
	// (proc(5); docs/kernel.md, "The supervisor must not wait"), until it is read again from its
	// start.
	pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLPRI}}
	if n, err := unix.Poll(pfd, 0); err == nil && n > 0 && pfd[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
		s.reread()
	}
	return s.points
}

// close closes the descriptor of the mount table, if open, when the supervisor stops; a receiver
// left behind (see endReceivers) keeps the table last read.
func (s *slowMounts) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

// reread reads the mount table through s.fd from its start. Preconditions: s.mu is held.
func (s *slowMounts) reread() {
	s.read = true
	var f *os.File
	if s.fd >= 0 {
		if _, err := unix.Seek(s.fd, 0, 0); err != nil {
			return
		}
		dup, err := unix.Dup(s.fd)
		if err != nil {
			return
		}
		f = os.NewFile(uintptr(dup), "mountinfo")
	} else {
		var err error
		if f, err = os.Open("/proc/self/mountinfo"); err != nil {
			return
		}
	}
	defer f.Close()
	var points []string
	readMountinfo(f, func(point, fstype string) {
		if slowType(fstype) {
			points = append(points, point)
		}
	})
	s.points = points
}

// prefetch looks up, outside the view's turn, the paths of o when a slow file system is mounted
// (see above), as the kernel would from the caller's working directory or dirfd, and forgets what
// it found. Every path, not only those under a slow mount point: a symlink or ".." on the way can
// lead there. It reads nothing of the view; a path the view changed is looked up where the
// shared tree has it, which warms at worst dentries the walk does not need.
func (s *slowMounts) prefetch(t tracee, o *op) {
	points := s.current()
	if len(points) == 0 {
		return
	}
	look := func(dirfd int, p string) {
		if p == "" {
			return
		}
		if !strings.HasPrefix(p, "/") {
			link := "cwd"
			if dirfd != unix.AT_FDCWD {
				link = "fd/" + strconv.Itoa(dirfd)
			}
			dir, err := readlink(t.procPath(link))
			if err != nil || !strings.HasPrefix(dir, "/") {
				return
			}
			p = dir + "/" + p
		}
		if len(p) < unix.PathMax {
			var st unix.Stat_t
			unix.Lstat(p, &st) // a final symlink is not followed: the call may not follow it
		}
	}
	look(o.dirfd, o.unsafePath)
	look(o.dirfd2, o.unsafePath2)
}
