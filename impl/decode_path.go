package impl

import (
	"unsafe"

	"github.com/fsvirt/fsvirt/internal/notify"
	"golang.org/x/sys/unix"
)

func (t tracee) path(addr uint64) (string, error) { return t.readString(addr) }

func arg32(a uint64) int { return int(int32(a)) }

// nofollowIf returns AT_SYMLINK_NOFOLLOW when b.
func nofollowIf(b bool) uint64 {
	if b {
		return unix.AT_SYMLINK_NOFOLLOW
	}
	return 0
}

func pathOp(k opKind, dirfd int, t tracee, addr uint64, flags uint64) (op, error) {
	p, perr, err := t.readPath(addr)
	return op{kind: k, dirfd: dirfd, unsafePath: p, pathErr: perr, flags: flags, pathArgs: pathArgs{fd: -1}}, err
}

func decodeStat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opStat, unix.AT_FDCWD, t, d.Args[0], 0)
	o.buf = d.Args[1]
	return o, err
}

func decodeLstat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opStat, unix.AT_FDCWD, t, d.Args[0], unix.AT_SYMLINK_NOFOLLOW)
	o.buf = d.Args[1]
	return o, err
}

func decodeNewfstatat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opStat, arg32(d.Args[0]), t, d.Args[1], d.Args[3])
	o.buf = d.Args[2]
	return o, err
}

func decodeStatx(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opStatx, arg32(d.Args[0]), t, d.Args[1], d.Args[2])
	o.mask, o.buf = uint32(d.Args[3]), d.Args[4]
	return o, err
}

func decodeAccess(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opAccess, unix.AT_FDCWD, t, d.Args[0], 0)
	o.mask = uint32(d.Args[1])
	return o, err
}

func decodeFaccessat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opAccess, arg32(d.Args[0]), t, d.Args[1], 0)
	o.mask = uint32(d.Args[2])
	return o, err
}

func decodeFaccessat2(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opAccess, arg32(d.Args[0]), t, d.Args[1], d.Args[3])
	o.mask = uint32(d.Args[2])
	return o, err
}

func decodeReadlink(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opReadlink, unix.AT_FDCWD, t, d.Args[0], 0)
	o.buf, o.size = d.Args[1], d.Args[2]
	return o, err
}

func decodeReadlinkat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opReadlink, arg32(d.Args[0]), t, d.Args[1], 0)
	o.buf, o.size = d.Args[2], d.Args[3]
	return o, err
}

func decodeChdir(t tracee, d *notify.Data) (op, error) {
	return pathOp(opChdir, unix.AT_FDCWD, t, d.Args[0], 0)
}

func decodeFchdir(t tracee, d *notify.Data) (op, error) {
	return op{kind: opFchdir, pathArgs: pathArgs{fd: arg32(d.Args[0])}}, nil
}

func decodeGetcwd(t tracee, d *notify.Data) (op, error) {
	return op{kind: opGetcwd, pathArgs: pathArgs{fd: -1, buf: d.Args[0], size: d.Args[1]}}, nil
}

func decodeMkdir(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opMkdir, unix.AT_FDCWD, t, d.Args[0], 0)
	o.mode = uint32(d.Args[1])
	return o, err
}

func decodeMkdirat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opMkdir, arg32(d.Args[0]), t, d.Args[1], 0)
	o.mode = uint32(d.Args[2])
	return o, err
}

func decodeUnlink(t tracee, d *notify.Data) (op, error) {
	return pathOp(opUnlink, unix.AT_FDCWD, t, d.Args[0], 0)
}

func decodeRmdir(t tracee, d *notify.Data) (op, error) {
	return pathOp(opUnlink, unix.AT_FDCWD, t, d.Args[0], unix.AT_REMOVEDIR)
}

func decodeUnlinkat(t tracee, d *notify.Data) (op, error) {
	return pathOp(opUnlink, arg32(d.Args[0]), t, d.Args[1], d.Args[2])
}

// twoPaths decodes (dirfd1, path1, dirfd2, path2, flags) forms.
func twoPaths(k opKind, t tracee, fd1 int, p1 uint64, fd2 int, p2 uint64, flags uint64) (op, error) {
	o, err := pathOp(k, fd1, t, p1, flags)
	if err != nil {
		return o, err
	}
	o.dirfd2 = fd2
	o.unsafePath2, o.pathErr2, err = t.readPath(p2)
	return o, err
}

func decodeRename(t tracee, d *notify.Data) (op, error) {
	return twoPaths(opRename, t, unix.AT_FDCWD, d.Args[0], unix.AT_FDCWD, d.Args[1], 0)
}

func decodeRenameat(t tracee, d *notify.Data) (op, error) {
	return twoPaths(opRename, t, arg32(d.Args[0]), d.Args[1], arg32(d.Args[2]), d.Args[3], 0)
}

func decodeRenameat2(t tracee, d *notify.Data) (op, error) {
	return twoPaths(opRename, t, arg32(d.Args[0]), d.Args[1], arg32(d.Args[2]), d.Args[3], d.Args[4])
}

func decodeLink(t tracee, d *notify.Data) (op, error) {
	return twoPaths(opLink, t, unix.AT_FDCWD, d.Args[0], unix.AT_FDCWD, d.Args[1], 0)
}

func decodeLinkat(t tracee, d *notify.Data) (op, error) {
	return twoPaths(opLink, t, arg32(d.Args[0]), d.Args[1], arg32(d.Args[2]), d.Args[3], d.Args[4])
}

func decodeSymlink(t tracee, d *notify.Data) (op, error) {
	target, err := t.path(d.Args[0])
	if err != nil {
		return op{}, err
	}
	o, err := pathOp(opSymlink, unix.AT_FDCWD, t, d.Args[1], 0)
	o.target = target
	return o, err
}

func decodeSymlinkat(t tracee, d *notify.Data) (op, error) {
	target, err := t.path(d.Args[0])
	if err != nil {
		return op{}, err
	}
	o, err := pathOp(opSymlink, arg32(d.Args[1]), t, d.Args[2], 0)
	o.target = target
	return o, err
}

func decodeChmod(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opChmod, unix.AT_FDCWD, t, d.Args[0], 0)
	o.mode = uint32(d.Args[1])
	return o, err
}

func decodeFchmodat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opChmod, arg32(d.Args[0]), t, d.Args[1], 0) // fchmodat has no flags argument
	o.mode = uint32(d.Args[2])
	return o, err
}

func decodeFchmodat2(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opChmod, arg32(d.Args[0]), t, d.Args[1], d.Args[3])
	o.mode = uint32(d.Args[2])
	return o, err
}

func decodeFchmod(t tracee, d *notify.Data) (op, error) {
	return op{kind: opChmod, mode: uint32(d.Args[1]), pathArgs: pathArgs{fd: arg32(d.Args[0])}}, nil
}

func chownOp(o op, err error, uid, gid uint64) (op, error) {
	o.uid, o.gid = arg32(uid), arg32(gid)
	return o, err
}

func decodeChown(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opChown, unix.AT_FDCWD, t, d.Args[0], 0)
	return chownOp(o, err, d.Args[1], d.Args[2])
}

func decodeLchown(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opChown, unix.AT_FDCWD, t, d.Args[0], unix.AT_SYMLINK_NOFOLLOW)
	return chownOp(o, err, d.Args[1], d.Args[2])
}

func decodeFchownat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opChown, arg32(d.Args[0]), t, d.Args[1], d.Args[4])
	return chownOp(o, err, d.Args[2], d.Args[3])
}

func decodeFchown(t tracee, d *notify.Data) (op, error) {
	return chownOp(op{kind: opChown, pathArgs: pathArgs{fd: arg32(d.Args[0])}}, nil, d.Args[1], d.Args[2])
}

func decodeTruncate(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opTruncate, unix.AT_FDCWD, t, d.Args[0], 0)
	o.length = int64(d.Args[1])
	return o, err
}

// readTimeval reads struct timeval[2] (utimes, futimesat) as timespecs; addr 0 means now.
func readTimeval(t tracee, addr uint64) (*[2]unix.Timespec, error) {
	if addr == 0 {
		return nil, nil
	}
	var tv [2]unix.Timeval
	if err := t.readStruct(addr, unsafe.Pointer(&tv), int(unsafe.Sizeof(tv))); err != nil {
		return nil, err
	}
	var ts [2]unix.Timespec
	for i := range tv {
		if tv[i].Usec < 0 || tv[i].Usec >= 1e6 {
			return nil, unix.EINVAL
		}
		ts[i] = unix.Timespec{Sec: tv[i].Sec, Nsec: tv[i].Usec * 1000}
	}
	return &ts, nil
}

func decodeUtime(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opUtimens, unix.AT_FDCWD, t, d.Args[0], 0)
	if err != nil || d.Args[1] == 0 {
		return o, err
	}
	var ub unix.Utimbuf
	if err := t.readStruct(d.Args[1], unsafe.Pointer(&ub), int(unsafe.Sizeof(ub))); err != nil {
		return o, err
	}
	o.times = &[2]unix.Timespec{{Sec: ub.Actime}, {Sec: ub.Modtime}}
	return o, nil
}

func decodeUtimes(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opUtimens, unix.AT_FDCWD, t, d.Args[0], 0)
	if err != nil {
		return o, err
	}
	o.times, err = readTimeval(t, d.Args[1])
	return o, err
}

func decodeFutimesat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opUtimens, arg32(d.Args[0]), t, d.Args[1], 0)
	if err != nil {
		return o, err
	}
	o.times, err = readTimeval(t, d.Args[2])
	return o, err
}

func decodeUtimensat(t tracee, d *notify.Data) (op, error) {
	o := op{kind: opUtimens, dirfd: arg32(d.Args[0]), flags: d.Args[3], pathArgs: pathArgs{fd: -1}}
	if d.Args[1] == 0 { // futimens: the dirfd is the file
		o.fd = o.dirfd
	} else {
		var err error
		if o.unsafePath, o.pathErr, err = t.readPath(d.Args[1]); err != nil {
			return o, err
		}
	}
	if d.Args[2] != 0 {
		var ts [2]unix.Timespec
		if err := t.readStruct(d.Args[2], unsafe.Pointer(&ts), int(unsafe.Sizeof(ts))); err != nil {
			return o, err
		}
		o.times = &ts // checked after the lookup, as vfs_utimes does (timesErr)
	}
	return o, nil
}

func decodeMknod(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opMknod, unix.AT_FDCWD, t, d.Args[0], 0)
	o.mode, o.dev = uint32(d.Args[1]), d.Args[2]
	return o, err
}

func decodeMknodat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opMknod, arg32(d.Args[0]), t, d.Args[1], 0)
	o.mode, o.dev = uint32(d.Args[2]), d.Args[3]
	return o, err
}

// xattrOp decodes the xattr family: fd >= 0 for the f* forms, else a path at pathAddr.
func xattrOp(k opKind, t tracee, fd int, pathAddr uint64, nofollow bool, nameAddr uint64) (op, error) {
	o := op{kind: k, dirfd: unix.AT_FDCWD, flags: nofollowIf(nofollow), pathArgs: pathArgs{fd: fd}}
	if fd < 0 {
		var err error
		if o.unsafePath, o.pathErr, err = t.readPath(pathAddr); err != nil {
			return o, err
		}
	}
	if k != opListxattr {
		name, err := t.path(nameAddr)
		if err != nil {
			return o, err
		}
		if len(name) == 0 || len(name) > xattrNameMax {
			return o, unix.ERANGE
		}
		o.name = name
	}
	return o, nil
}

func getxattrDecoder(nofollow bool) decoder {
	return func(t tracee, d *notify.Data) (op, error) {
		o, err := xattrOp(opGetxattr, t, -1, d.Args[0], nofollow, d.Args[1])
		o.buf, o.size = d.Args[2], d.Args[3]
		return o, err
	}
}

func listxattrDecoder(nofollow bool) decoder {
	return func(t tracee, d *notify.Data) (op, error) {
		o, err := xattrOp(opListxattr, t, -1, d.Args[0], nofollow, 0)
		o.buf, o.size = d.Args[1], d.Args[2]
		return o, err
	}
}

func readValue(t tracee, o *op, addr, size uint64) error {
	if size > xattrSizeMax {
		return unix.E2BIG
	}
	o.value = make([]byte, size)
	if size == 0 {
		return nil
	}
	_, err := t.read(addr, o.value)
	return err
}

func setxattrDecoder(nofollow, byFD bool) decoder {
	return func(t tracee, d *notify.Data) (op, error) {
		fd := -1
		if byFD {
			fd = arg32(d.Args[0])
		}
		o, err := xattrOp(opSetxattr, t, fd, d.Args[0], nofollow, d.Args[1])
		if err != nil {
			return o, err
		}
		o.flags |= d.Args[4] << 32 // XATTR_CREATE, XATTR_REPLACE, kept apart from the nofollow bit
		return o, readValue(t, &o, d.Args[2], d.Args[3])
	}
}

func removexattrDecoder(nofollow, byFD bool) decoder {
	return func(t tracee, d *notify.Data) (op, error) {
		fd := -1
		if byFD {
			fd = arg32(d.Args[0])
		}
		return xattrOp(opRemovexattr, t, fd, d.Args[0], nofollow, d.Args[1])
	}
}

func decodeExecve(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opExec, unix.AT_FDCWD, t, d.Args[0], 0)
	o.pathAddr, o.pathLen, o.argv = d.Args[0], len(o.unsafePath), d.Args[1]
	return o, err
}

func decodeExecveat(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opExec, arg32(d.Args[0]), t, d.Args[1], d.Args[4])
	o.pathAddr, o.pathLen, o.argv = d.Args[1], len(o.unsafePath), d.Args[2]
	return o, err
}

func decodeStatfs(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opStatfs, unix.AT_FDCWD, t, d.Args[0], 0)
	o.buf = d.Args[1]
	return o, err
}

func decodeInotifyAddWatch(t tracee, d *notify.Data) (op, error) {
	o, err := pathOp(opInotify, unix.AT_FDCWD, t, d.Args[1], 0)
	o.fd, o.mask = arg32(d.Args[0]), uint32(d.Args[2])
	return o, err
}

// Limits of linux/limits.h that x/sys/unix does not name.
const (
	xattrNameMax = 255
	xattrSizeMax = 65536
)

// opSockaddr is bind and connect: a UNIX socket address names a path in the view.
const opSockaddr = opInotify + 1

func sockaddrDecoder(connect bool) decoder {
	return func(t tracee, d *notify.Data) (op, error) {
		o := op{kind: opSockaddr, dirfd: unix.AT_FDCWD, pathArgs: pathArgs{fd: arg32(d.Args[0]), buf: d.Args[1], size: d.Args[2]}}
		if connect {
			o.flags = 1
		}
		return o, nil
	}
}
