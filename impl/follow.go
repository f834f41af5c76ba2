package impl

import (
	"bytes"
	"os"
	"strconv"

	"github.com/fsvirt/fsvirt/internal/notify"
	"golang.org/x/sys/unix"
)

// Descriptors follow a copy-up (docs/kernel.md, "Descriptors opened before a copy-up"). A task
// that opened a shared file for reading before the view copied it up holds the shared file; the
// kernel's overlayfs makes such a descriptor reach the copy. Here, the next time a task of the view
// is notified after a copy-up, the supervisor looks through the task's descriptor table and puts,
// at the number of each read-only descriptor of a shared object the view has since copied up (or
// of a shared directory whose listing the view has since changed, while it is still at its start),
// a descriptor of the view's object opened with the same flags at the same offset
// (SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SETFD, which the kernel performs as dup2 in
// the task).
//
// Left as they are: descriptors the command inherited from fsvirt's caller (its standard input
// redirected from a file of the tree is the caller's file, not the view's); descriptors opened
// with O_PATH, which ADDFD cannot install; a directory descriptor already part-way through its
// listing (its position means nothing in another directory); mappings of the shared file; and
// thread mode, whose descriptor table is the whole Go program's, shared with other invocations.
// A descriptor another process shares (dup'ed before a fork) gets an open file of its own: the
// two no longer share an offset.

// followCopyUps is called within the view's turn, after the view answered a call of t and before
// the answer is sent (the answer ends the notification that ADDFD needs). It does nothing unless
// the view copied something up since t last looked.
func (v *View) followCopyUps(lfd int, id uint64, t tracee) {
	if v.ns.threadMode || v.readOnly {
		return
	}
	gen := v.copyGen.Load()
	if gen == 0 {
		return
	}
	v.mu.Lock()
	seen := v.fdsSeen[t.tid]
	if seen == gen {
		v.mu.Unlock()
		return
	}
	if v.fdsSeen == nil {
		v.fdsSeen = map[int]uint64{}
	}
	v.fdsSeen[t.tid] = gen
	v.mu.Unlock()

	entries, err := os.ReadDir(t.procPath("fd"))
	if err != nil {
		return
	}
	var changed map[string]string // shared host path -> view path
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link := t.procPath("fd/" + e.Name())
		host, err := os.Readlink(link)
		if err != nil || len(host) == 0 || host[0] != '/' {
			continue // a pipe, socket, anonymous inode; or gone
		}
		if changed == nil {
			changed = v.copiedUpShared()
		}
		if p, ok := changed[host]; ok {
			v.follow(lfd, id, t, n, link, host, p, v.upperPath(p))
		} else if idx := v.aliasOf(host); idx != "" {
			// Another name of a shared file the view copied up by one of its names (hostlinks.go).
			v.follow(lfd, id, t, n, link, host, "", idx)
		}
	}
}

// copiedUpShared maps the host path of every shared object the view has its own copy of (a file
// copied up, a directory whose listing or metadata became the view's) to its view path.
func (v *View) copiedUpShared() map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	m := map[string]string{}
	for p, e := range v.entries {
		if e.lower != "" && e.viewsOwn() {
			m[e.lower] = p
		}
	}
	return m
}

// follow replaces t's descriptor n, which link (/proc/TID/fd/N) shows open on shared object host,
// with a descriptor of view path p's object, at host path up, if n qualifies (see above).
func (v *View) follow(lfd int, id uint64, t tracee, n int, link, host, p, up string) {
	var fst, hst unix.Stat_t
	if long.Stat(link, &fst) != nil || long.Lstat(host, &hst) != nil || fst.Dev != hst.Dev || fst.Ino != hst.Ino {
		return // host now names another object than the descriptor's
	}
	pos, flags, ok := fdInfo(t, n)
	if !ok || flags&unix.O_PATH != 0 || flags&unix.O_ACCMODE != unix.O_RDONLY {
		return
	}
	dir := fst.Mode&unix.S_IFMT == unix.S_IFDIR
	if dir && pos != 0 {
		return
	}
	for _, fd := range v.inherited {
		if sameFile(t.tid, n, fd) {
			return
		}
	}
	if dir {
		v.mu.Lock()
		e := v.entries[p]
		partial := e != nil && e.listing == listPartial
		v.mu.Unlock()
		if partial && v.materialize(p) != nil { // as an open of it for listing does
			return
		}
	}
	keep := unix.O_APPEND | unix.O_NONBLOCK | unix.O_DIRECT | unix.O_NOATIME | unix.O_DIRECTORY | unix.O_SYNC | unix.O_DSYNC | unix.O_LARGEFILE
	v.copyFDs.Store(true) // the task's descriptor will be a copy's (see View.fstat)
	fd, err := long.Open(up, flags&keep|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	var ust unix.Stat_t
	if unix.Fstat(fd, &ust) != nil || ust.Mode&unix.S_IFMT != fst.Mode&unix.S_IFMT || (ust.Dev == fst.Dev && ust.Ino == fst.Ino) {
		return // a hard link of the shared file itself (see linkShared), or another kind of object
	}
	if pos != 0 {
		if _, err := unix.Seek(fd, pos, 0); err != nil {
			return
		}
	}
	// The descriptor may have been closed or replaced by another thread of the task since it was
	// read: checked once more, as close to the replacement as can be
	// (docs/kernel.md, "Descriptors opened before a copy-up").
	if long.Stat(link, &hst) != nil || hst.Dev != fst.Dev || hst.Ino != fst.Ino {
		return
	}
	notify.ReplaceFD(lfd, id, fd, n, flags&unix.O_CLOEXEC != 0)
}

// fdInfo reads the offset and open flags of t's descriptor n from /proc/TID/fdinfo/N.
func fdInfo(t tracee, n int) (pos int64, flags int, ok bool) {
	b, err := os.ReadFile(t.procPath("fdinfo/" + strconv.Itoa(n)))
	if err != nil {
		return 0, 0, false
	}
	var havePos, haveFlags bool
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		k, val, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		val = bytes.TrimSpace(val)
		switch string(k) {
		case "pos":
			pos, err = strconv.ParseInt(string(val), 10, 64)
			havePos = err == nil
		case "flags":
			var f int64
			f, err = strconv.ParseInt(string(val), 8, 64)
			flags, haveFlags = int(f), err == nil
		}
	}
	return pos, flags, havePos && haveFlags
}

// sameFile reports whether descriptor n of task tid and this process's descriptor fd are one open
// file (kcmp KCMP_FILE; docs/kernel.md, "Comparing tasks with kcmp").
func sameFile(tid, n, fd int) bool {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(tid), uintptr(os.Getpid()), kcmpFile, uintptr(n), uintptr(fd), 0)
	return errno == 0 && r == 0
}
