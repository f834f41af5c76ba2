package impl

import (
	"bytes"
	"path"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddr is bind and connect. Anything but a UNIX socket address naming a path is left to the
// kernel. A path is resolved in the view: binding creates the socket file in the private layer,
// and connecting to a socket file there connects the caller's socket to it; the supervisor acts
// on its own duplicate of the caller's socket (pidfd_getfd), which is the same socket.
func (v *View) sockaddr(t tracee, o op) (reply, error) {
	const sunPath = 2 // offsetof(struct sockaddr_un, sun_path)
	connect := o.flags == 1
	if o.size <= sunPath || o.size > uint64(unsafe.Sizeof(unix.RawSockaddrUnix{})) {
		if connect {
			return reply{kind: replyContinue}, nil
		}
		return v.bindRaw(t, o, nil)
	}
	raw := make([]byte, o.size)
	if _, err := t.read(o.buf, raw); err != nil {
		return reply{}, err
	}
	family := *(*uint16)(unsafe.Pointer(&raw[0]))
	name := raw[sunPath:]
	if family != unix.AF_UNIX || name[0] == 0 { // not UNIX, or an abstract address
		// A bind is never continued: the kernel would read the address again, and a second
		// thread may have made it a path by then (docs/kernel.md, "CONTINUE re-reads memory").
		// A connect makes no file; the threat model says where a raced one can lead.
		if connect {
			return reply{kind: replyContinue}, nil
		}
		return v.bindRaw(t, o, raw)
	}
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return v.sockaddrPath(t, o, string(name), connect)
}

// sockaddrPath is bind and connect to the UNIX socket path name, resolved in the view.
func (v *View) sockaddrPath(t tracee, o op, name string, connect bool) (reply, error) {
	r, err := v.resolve(t, unix.AT_FDCWD, name, resolveOpts{followFinal: connect, creat: !connect})
	if err != nil {
		return reply{}, err
	}
	if connect && (!r.inTree || r.pure) {
		return reply{kind: replyContinue}, nil
	}
	if !r.inTree { // bind outside the trees: made on the host, as the caller
		if r.exists() || r.dot() {
			return reply{}, unix.EADDRINUSE
		}
		fd, err := t.getfd(o.fd)
		if err != nil {
			return reply{}, err
		}
		defer unix.Close(fd)
		return okReply, atHost(t, r.path, func(dirfd int, name string) error {
			short := fdPath(dirfd) + "/" + name
			if len(short) >= len(unix.RawSockaddrUnix{}.Path) {
				return unix.ENAMETOOLONG
			}
			return unix.Bind(fd, &unix.SockaddrUnix{Name: short})
		})
	}
	host := r.host
	if !connect {
		if r.exists() || r.dot() {
			return reply{}, unix.EADDRINUSE
		}
		if r.kind == resDeadDir {
			return reply{}, unix.ENOENT
		}
		if err := v.flagsForbid(path.Dir(r.path), changeMakeIn); err != nil {
			return reply{}, err
		}
		if err := v.addable(path.Dir(r.path)); err != nil {
			return reply{}, err
		}
		host = v.upperPath(r.path)
	} else if !r.exists() {
		return reply{}, unix.ENOENT
	}
	// The private layer's path may be longer than sun_path holds: name the socket file through
	// the supervisor's descriptor of its directory instead.
	dir, err := long.Open(path.Dir(host), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return reply{}, err
	}
	defer unix.Close(dir)
	short := "/proc/self/fd/" + strconv.Itoa(dir) + "/" + path.Base(host)
	if len(short) >= len(unix.RawSockaddrUnix{}.Path) {
		return reply{}, unix.ENAMETOOLONG
	}
	fd, err := t.getfd(o.fd)
	if err != nil {
		return reply{}, err
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrUnix{Name: short}
	if connect {
		err = v.waitOutsideTurn(func() error { return unix.Connect(fd, sa) })
	} else if err = unix.Bind(fd, sa); err == nil {
		v.setEntry(r.path, &entry{kind: entryObj, own: true})
	}
	if err != nil {
		return reply{}, err
	}
	return okReply, nil
}
