package impl

import (
	"encoding/binary"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The supervisor never lets the kernel perform a call that can change anything (docs/kernel.md,
// "CONTINUE re-reads memory"): it performs every such call itself, on objects it resolved itself.
// Inside the trees it acts on the private layer. Outside them (the passed-through /proc, /sys and
// /dev, or everything but the trees given with --tree) it acts on the host, and this file holds
// what makes that safe:
//
//   - asCaller runs the action with the caller's file-system credentials, so that the kernel checks
//     permissions as it would for the caller;
//   - openHost opens a path the view resolved without following any symlink, so that a symlink a
//     second thread put on the way since the resolution cannot lead the action into a tree;
//   - taskObject takes the object behind a descriptor of the task itself, so that a second thread
//     that dup2()s another file onto the number cannot change what the supervisor decides on.

// ids are file-system credentials: the caller's, or the supervisor's own.
type ids struct {
	uid, gid int
	groups   []int
	// capEff, capPrm and capInh are the effective, permitted and inheritable capability sets.
	capEff, capPrm, capInh uint64
}

var (
	selfOnce sync.Once
	self     ids
)

// selfIDs returns the supervisor's own credentials, read once.
func selfIDs() ids {
	selfOnce.Do(func() {
		self.uid, self.gid = os.Geteuid(), os.Getegid()
		self.groups, _ = unix.Getgroups()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if unix.Capget(&hdr, &data[0]) == nil {
			self.capEff = uint64(data[0].Effective) | uint64(data[1].Effective)<<32
			self.capPrm = uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
			self.capInh = uint64(data[0].Inheritable) | uint64(data[1].Inheritable)<<32
		}
		if !initialUserNamespace() {
			// fsvirt in a user namespace of its own (the CLI's, for limits without root)
			// holds CAP_SYS_ADMIN there to mount the layers' tmpfs: over those, not over the
			// trees, and its callers hold nothing (fsvirt-init clears the ambient set), as
			// the checks that take the callers for the supervisor must see.
			self.capEff, self.capPrm, self.capInh = 0, 0, 0
		}
	})
	return self
}

// initialUserNamespace reports whether this process is in the initial user namespace, whose
// uid_map maps every ID to itself.
func initialUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	return err != nil || strings.Join(strings.Fields(string(b)), " ") == "0 0 4294967295"
}

// asCaller runs fn with c's fsuid, fsgid and supplementary groups on the calling OS thread, and
// restores the supervisor's afterwards. Linux keeps these per thread (setfsuid(2), and setgroups
// made as a raw syscall; docs/kernel.md, "Credentials are per thread"): the supervisor's other
// threads keep their own. A switch from fsuid 0 to another clears the file-system capabilities from
// the effective set, and the switch back restores them, so the kernel refuses what it would refuse
// the caller.
//
// A supervisor that is not root cannot take other credentials; its callers cannot have any but
// its own either (a filtered task has no_new_privs, so no set-user-ID program raises them), and fn
// then runs with the supervisor's.
//
// Preconditions: the caller is locked to its OS thread (the supervisor loop is).
func asCaller(c creds, fn func() error) error {
	me := selfIDs()
	if me.uid != 0 || c.fsuid == me.uid && c.fsgid == me.gid && slices.Equal(c.groups, me.groups) && c.capEff == me.capEff {
		return fn()
	}
	if err := unix.Setgroups(c.groups); err != nil {
		return err
	}
	unix.Setfsgid(c.fsgid)
	unix.Setfsuid(c.fsuid)
	// The caller's effective capabilities, where they are not what the switch of fsuid left
	// (docs/kernel.md, "Credentials are per thread"): root that dropped some, a caller that holds
	// some without being root.
	capsSet := c.capEff != me.capEff && setEffectiveCaps(c.capEff&me.capPrm) == nil
	defer func() {
		if capsSet {
			setEffectiveCaps(me.capEff)
		}
		unix.Setfsuid(me.uid)
		unix.Setfsgid(me.gid)
		unix.Setgroups(me.groups)
	}()
	return fn()
}

// setEffectiveCaps makes eff the calling thread's effective capability set (capset(2) acts on the
// calling thread only: docs/kernel.md, "Credentials are per thread"), its permitted and inheritable
// sets the supervisor's (selfIDs), which no thread of it changes: one system call, on the path of
// every unprivileged caller's check.
func setEffectiveCaps(eff uint64) error {
	me := selfIDs()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(eff), Permitted: uint32(me.capPrm), Inheritable: uint32(me.capInh)},
		{Effective: uint32(eff >> 32), Permitted: uint32(me.capPrm >> 32), Inheritable: uint32(me.capInh >> 32)},
	}
	return unix.Capset(&hdr, &data[0])
}

// openHost opens host path p, which the view resolved (every symlink on it followed already),
// following no symlink at all: a symlink found on the way was put there by a task racing the call,
// which then fails with ELOOP (docs/kernel.md, "Opening host paths without following symlinks"). A
// final symlink is opened itself with O_PATH|O_NOFOLLOW.
func openHost(p string, flags int, mode uint32) (int, error) {
	if flags&unix.O_PATH != 0 {
		flags |= unix.O_NOFOLLOW // else RESOLVE_NO_SYMLINKS refuses a final symlink (ELOOP)
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := long.Openat2(unix.AT_FDCWD, p, &how)
		if err != unix.EAGAIN && err != unix.EINTR {
			return fd, err
		}
	}
}

// hostParent opens, with openHost, the directory that holds host path p and returns it with p's
// final name, for a call that makes or removes that name.
func hostParent(p string) (dirfd int, name string, err error) {
	dir, name := path.Split(p)
	if name == "" || name == "." || name == ".." {
		return -1, "", unix.EINVAL
	}
	dirfd, err = openHost(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	return dirfd, name, err
}

// fdPath names the object behind the supervisor's own descriptor fd: a magic link that the kernel
// follows to the object itself, not to a path, and that no task can change.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// taskObject returns the supervisor's own descriptor of the object behind the task's descriptor
// fd, to decide on and act on: whatever the task does to fd afterwards, this stays the object the
// call named when the supervisor looked. pidfd_getfd (5.6) gives the task's own open file
// (docs/kernel.md, "Taking a task's descriptors"); where it is refused, the object is opened
// through /proc/TID/fd/N with O_PATH, which gives the same object (not the same open file), also
// race-free. Both need the right to ptrace the task, which the supervisor has over the tasks it
// serves. shared says obj is the task's open file itself. The caller closes the descriptor.
func (t tracee) taskObject(fd int) (obj int, shared bool, err error) {
	if fd < 0 {
		return -1, false, unix.EBADF
	}
	if t.pidfdGetfd {
		obj, err := t.getfd(fd)
		if err == nil || err == unix.EBADF || err == errTraceeGone {
			return obj, err == nil, err
		}
	}
	obj, err = long.Open(t.procPath("fd/"+strconv.Itoa(fd)), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return -1, false, unix.EBADF
	}
	return obj, false, err
}

// atHost runs fn with the caller's credentials in the directory that holds host path p (opened
// with hostParent), for a call outside the trees that makes or removes p's name.
func atHost(t tracee, p string, fn func(dirfd int, name string) error) error {
	c, err := t.status()
	if err != nil {
		return err
	}
	return asCaller(c, func() error {
		dirfd, name, err := hostParent(p)
		if err != nil {
			return err
		}
		defer unix.Close(dirfd)
		return fn(dirfd, name)
	})
}

// bindRaw binds the task's socket to the address raw (nil: none), which the supervisor read once,
// on its own duplicate of the socket (the same socket). The kernel checks the right to a
// privileged port against the supervisor, which may hold it where the caller does not: a caller
// whose fsuid is not 0 is refused a port below net.ipv4.ip_unprivileged_port_start as the kernel
// would refuse it without CAP_NET_BIND_SERVICE.
func (v *View) bindRaw(t tracee, o op, raw []byte) (reply, error) {
	if o.size > 128 { // sizeof(struct sockaddr_storage): move_addr_to_kernel's limit
		return reply{}, unix.EINVAL
	}
	if raw == nil {
		raw = make([]byte, o.size)
		if _, err := t.read(o.buf, raw); len(raw) > 0 && err != nil {
			return reply{}, err
		}
	}
	if len(raw) >= 4 {
		family := binary.NativeEndian.Uint16(raw)
		port := int(binary.BigEndian.Uint16(raw[2:]))
		if (family == unix.AF_INET || family == unix.AF_INET6) && port != 0 && port < unprivilegedPortStart() {
			c, err := t.status()
			if err != nil {
				return reply{}, err
			}
			if !c.capable(unix.CAP_NET_BIND_SERVICE) && selfIDs().uid == 0 {
				return reply{}, unix.EACCES
			}
		}
	}
	fd, err := t.getfd(o.fd)
	if err != nil {
		return reply{}, err
	}
	defer unix.Close(fd)
	var one [1]byte
	p := unsafe.Pointer(&one[0])
	if len(raw) > 0 {
		p = unsafe.Pointer(&raw[0])
	}
	if _, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(p), uintptr(len(raw))); e != 0 {
		return reply{}, e
	}
	return okReply, nil
}

// unprivilegedPortStart is net.ipv4.ip_unprivileged_port_start (1024 where it cannot be read).
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

// supervisorEntry matches the /proc entries of a process that give its memory, its descriptors
// or its file-system context: what a task could use to take over the supervisor (its listener
// above all).
var supervisorEntry = regexp.MustCompile(`^/proc/([0-9]+)(/task/[0-9]+)?/(mem|fd|fdinfo|map_files|root|cwd|exe|environ|pagemap|auxv|syscall|stack|personality)(/|$)`)

// supervisorOnly reports whether host path p is such an entry of the supervisor's own process,
// asked for by a task of another process: EACCES, as the kernel answers a task that may not
// ptrace the process. The supervisor is not dumpable (Run), which makes the kernel refuse them
// to tasks without CAP_SYS_PTRACE (docs/kernel.md, "Reaching the supervisor"); this refuses them to
// the rest. Thread mode's worker threads belong to the supervisor's process, and see its entries as
// their own.
func supervisorOnly(t tracee, p string) bool {
	m := supervisorEntry.FindStringSubmatch(p)
	if m == nil {
		return false
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil || unix.Tgkill(selfPid, pid, 0) != nil {
		return false // not a task of this process
	}
	return unix.Tgkill(selfPid, t.tid, 0) != nil
}
