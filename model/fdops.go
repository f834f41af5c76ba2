package model

import (
	"slices"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// fdOp runs an op on an open handle, with the kernel's checks in its order.
func (iv *invocation) fdOp(op fsvirt.Op) (fsvirt.Outcome, Decision) {
	// pwrite(2) and ftruncate(2) check their argument before the fd.
	if op.Kind == fsvirt.OpPwrite && op.Offset < 0 || op.Kind == fsvirt.OpTruncate && op.Size < 0 {
		return fsvirt.Fail(unix.EINVAL), Decision{}
	}
	f := iv.fd(op.Fd)
	if f == nil || f.flags&unix.O_PATH != 0 && op.Kind != fsvirt.OpStat && op.Kind != fsvirt.OpClose {
		return fsvirt.Fail(unix.EBADF), Decision{}
	}
	dec := Decision{Mapping: PassThrough}
	if f.private {
		dec.Mapping = Redirect
	} else if f.path != "" && iv.layer[f.path] != nil {
		dec.Stale = true
	}
	return iv.fdOpOn(f, op), dec
}

func (iv *invocation) fdOpOn(f *file, op fsvirt.Op) fsvirt.Outcome {
	n, acc := f.node, f.flags&unix.O_ACCMODE
	switch op.Kind {
	case fsvirt.OpRead:
		switch {
		case acc == unix.O_WRONLY:
			return fsvirt.Fail(unix.EBADF)
		case n.typ == fsvirt.Dir:
			return fsvirt.Fail(unix.EISDIR)
		}
		data := []byte{}
		if f.off < int64(len(n.data)) {
			data = slices.Clone(n.data[f.off:min(f.off+op.Size, int64(len(n.data)))])
		}
		f.off += int64(len(data))
		return fsvirt.Outcome{Ret: int64(len(data)), Data: data}
	case fsvirt.OpWrite, fsvirt.OpPwrite:
		if acc == unix.O_RDONLY {
			return fsvirt.Fail(unix.EBADF)
		}
		if len(op.Data) == 0 {
			return fsvirt.Outcome{}
		}
		off := f.off
		switch {
		case f.flags&unix.O_APPEND != 0: // pwrite too: a Linux quirk
			off = int64(len(n.data))
		case op.Kind == fsvirt.OpPwrite:
			off = op.Offset
		}
		if end := off + int64(len(op.Data)); end > int64(len(n.data)) {
			n.data = append(n.data, make([]byte, end-int64(len(n.data)))...)
		}
		copy(n.data[off:], op.Data)
		if op.Kind == fsvirt.OpWrite {
			f.off = off + int64(len(op.Data))
		}
		return fsvirt.Outcome{Ret: int64(len(op.Data))}
	case fsvirt.OpSeek:
		off := op.Offset
		switch op.Whence {
		case unix.SEEK_SET:
		case unix.SEEK_CUR:
			off += f.off
		case unix.SEEK_END:
			off += n.stat().Size
		default:
			return fsvirt.Fail(unix.EINVAL)
		}
		if off < 0 {
			return fsvirt.Fail(unix.EINVAL)
		}
		f.off = off
		return fsvirt.Outcome{Ret: off}
	case fsvirt.OpTruncate:
		if acc == unix.O_RDONLY || n.typ != fsvirt.File {
			return fsvirt.Fail(unix.EINVAL)
		}
		if op.Size <= int64(len(n.data)) {
			n.data = n.data[:op.Size:op.Size]
		} else {
			n.data = append(n.data, make([]byte, op.Size-int64(len(n.data)))...)
		}
		return fsvirt.Outcome{}
	case fsvirt.OpStat:
		return fsvirt.Outcome{Stat: n.stat()}
	case fsvirt.OpClose:
		iv.fds[op.Fd] = nil
		return fsvirt.Outcome{}
	}
	return fsvirt.Fail(unix.ENOSYS)
}
