package impl

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxPath is PATH_MAX including the terminating NUL: a longer path fails with ENAMETOOLONG.
const maxPath = 4096

// tracee is the task whose syscall is being answered, named by its TID.
type tracee struct {
	tid int
	// call, when set, holds what was read of the task while one of its calls is answered.
	call *callState
	// pidfdGetfd: taskObject may take the task's open file with pidfd_getfd (the supervisor's
	// feature set says the kernel has it). Otherwise it opens /proc/TID/fd/N.
	pidfdGetfd bool
}

// callState is what the supervisor read of a task during one of its calls. The task is blocked
// in that call, and a task's credentials change only by its own calls (setuid, setgroups...;
// docs/kernel.md, "Credentials are per thread"), so what /proc/TID/status said of them holds until
// the call is answered: reading it once per call answers as the kernel does, which takes the
// caller's credentials once, at the call. (Umask is shared by CLONE_FS threads, and the kernel too
// reads it once.)
type callState struct {
	creds    creds
	credsErr error
	haveCred bool
	// mark: the directory to put at cwdMarkFD in the task before the call is answered, if not ""
	// (cwdmark.go).
	mark string
	// held: the supervisor's descriptors that the call's answer acts on, closed once it is
	// answered (release).
	held []int
}

// hold keeps descriptor fd open until the call has been answered.
func (c *callState) hold(fd int) { c.held = append(c.held, fd) }

// release closes the descriptors the call held.
func (c *callState) release() {
	for _, fd := range c.held {
		unix.Close(fd)
	}
	c.held = nil
}

// readString reads a NUL-terminated string at addr, page by page: process_vm_readv fails whole when
// any part of a range is unmapped, and a path may end just before an unmapped page
// (docs/kernel.md, "Reading and writing a task's memory").
func (t tracee) readString(addr uint64) (string, error) {
	if addr == 0 {
		return "", unix.EFAULT
	}
	var buf [maxPath]byte
	n := 0
	for n < maxPath {
		chunk := int(pageSize - (addr+uint64(n))%pageSize)
		if chunk > maxPath-n {
			chunk = maxPath - n
		}
		got, err := t.read(addr+uint64(n), buf[n:n+chunk])
		if err != nil {
			return "", err
		}
		if i := bytes.IndexByte(buf[n:n+got], 0); i >= 0 {
			return string(buf[:n+i]), nil
		}
		n += got
	}
	return "", unix.ENAMETOOLONG
}

// read copies len(p) bytes at addr; a short read is EFAULT.
func (t tracee) read(addr uint64, p []byte) (int, error) {
	local := []unix.Iovec{{Base: &p[0], Len: uint64(len(p))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(p)}}
	n, err := unix.ProcessVMReadv(t.tid, local, remote, 0)
	if err != nil {
		if err == unix.ESRCH {
			return 0, errTraceeGone
		}
		return 0, unix.EFAULT
	}
	if n != len(p) {
		return n, unix.EFAULT
	}
	return n, nil
}

// readStruct fills the struct at ptr (of size bytes) from tracee memory.
func (t tracee) readStruct(addr uint64, ptr unsafe.Pointer, size int) error {
	_, err := t.read(addr, unsafe.Slice((*byte)(ptr), size))
	return err
}

var pageSize = uint64(os.Getpagesize())

// errTraceeGone: the task died or its notification was withdrawn; nothing is answered.
var errTraceeGone = fmt.Errorf("tracee gone")

// creds is what the supervisor needs from /proc/TID/status to act for the task.
type creds struct {
	tgid   int
	ppid   int
	umask  uint32
	fsuid  int
	fsgid  int
	groups []int // supplementary groups
	hasUmk bool
	// capEff is the effective capability set (CapEff), in which the kernel already dropped the
	// file-system capabilities of a task whose fsuid is not 0
	// (docs/kernel.md, "Credentials are per thread").
	capEff uint64
}

// status returns the task's credentials, tgid, ppid and umask, from /proc/TID/status: read once
// per call answered (see callState).
func (t tracee) status() (creds, error) {
	if t.call == nil {
		return t.readStatus()
	}
	if !t.call.haveCred {
		t.call.creds, t.call.credsErr = t.readStatus()
		t.call.haveCred = true
	}
	return t.call.creds, t.call.credsErr
}

func (t tracee) readStatus() (creds, error) {
	b, err := readProcFile(t.procPath("status"))
	if err != nil {
		return creds{}, errTraceeGone
	}
	var c creds
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSuffix(line, "\n")
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "Tgid":
			c.tgid, _ = strconv.Atoi(fields[0])
		case "PPid":
			c.ppid, _ = strconv.Atoi(fields[0])
		case "Umask":
			u, err := strconv.ParseUint(fields[0], 8, 32)
			if err == nil {
				c.umask, c.hasUmk = uint32(u), true
			}
		case "Uid":
			if len(fields) >= 4 {
				c.fsuid, _ = strconv.Atoi(fields[3])
			}
		case "Gid":
			if len(fields) >= 4 {
				c.fsgid, _ = strconv.Atoi(fields[3])
			}
		case "CapEff":
			c.capEff, _ = strconv.ParseUint(fields[0], 16, 64)
		case "Groups":
			for _, f := range fields {
				if g, err := strconv.Atoi(f); err == nil {
					c.groups = append(c.groups, g)
				}
			}
		}
	}
	if c.tgid == 0 || !c.hasUmk {
		return creds{}, fmt.Errorf("[bug] /proc/%d/status lacks Tgid or Umask", t.tid)
	}
	return c, nil
}

// procPath names an entry in the task's /proc directory, e.g. "cwd" or "fd/3".
func (t tracee) procPath(rel string) string {
	return "/proc/" + strconv.Itoa(t.tid) + "/" + rel
}

// write copies p to addr in the task's memory; a short write is EFAULT.
func (t tracee) write(addr uint64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &p[0], Len: uint64(len(p))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(p)}}
	n, err := unix.ProcessVMWritev(t.tid, local, remote, 0)
	if err != nil {
		if err == unix.ESRCH {
			return errTraceeGone
		}
		return unix.EFAULT
	}
	if n != len(p) {
		return unix.EFAULT
	}
	return nil
}

// writeStruct copies the size bytes at ptr to addr in the task's memory.
func (t tracee) writeStruct(addr uint64, ptr unsafe.Pointer, size int) error {
	return t.write(addr, unsafe.Slice((*byte)(ptr), size))
}

// stackPointer returns the task's stack pointer while it is in a system call, from
// /proc/TID/syscall ("nr arg1 ... arg6 sp pc").
//
// The file says "running" while the task has not yet gone to sleep in the notification, which a
// supervisor woken on the task's own CPU can see (docs/kernel.md, "/proc/TID/syscall says
// running"). The task sleeps a moment later, so the file is read again, for up to 20 ms.
func (t tracee) stackPointer() (uint64, error) {
	var b []byte
	for i := 0; ; i++ {
		var err error
		if b, err = readProcFile(t.procPath("syscall")); err != nil {
			return 0, err
		}
		if !bytes.HasPrefix(b, []byte("running")) || i == 200 {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	f := strings.Fields(string(b))
	if len(f) != 9 {
		return 0, fmt.Errorf("%s: %q", t.procPath("syscall"), b)
	}
	return strconv.ParseUint(strings.TrimPrefix(f[7], "0x"), 16, 64)
}

// getfd duplicates the task's descriptor fd into the supervisor (pidfd_getfd, Linux 5.6;
// docs/kernel.md, "Taking a task's descriptors"): the same open file, so that the supervisor can
// act on it for the task. The caller closes it.
func (t tracee) getfd(fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(t.tid, unix.PIDFD_THREAD)
	if err == unix.EINVAL { // before 6.9 a pidfd names a thread-group leader only
		var c creds
		if c, err = t.status(); err != nil {
			return -1, err
		}
		pidfd, err = unix.PidfdOpen(c.tgid, 0)
	}
	if err != nil {
		return -1, errTraceeGone
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		if err == unix.EBADF {
			return -1, unix.EBADF
		}
		return -1, err
	}
	return dup, nil
}

// readProcFile reads a small /proc file with plain syscalls: os.ReadFile would also stat it and
// register it with the runtime's poller, six syscalls more on a path taken for many calls.
func readProcFile(name string) ([]byte, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	b := make([]byte, 0, 4096)
	for {
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
		if len(b) == cap(b) {
			b = slices.Grow(b, len(b))
		}
	}
}
