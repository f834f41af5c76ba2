package model

import (
	"slices"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// fdOp runs an op on an open handle, with the kernel's checks in its order.
func (m *Model) fdOp(iv *invocation, op fsvirt.Op) (fsvirt.Outcome, Decision) {
	// pwrite(2) and ftruncate(2) check their argument before the fd.
	if op.Kind == fsvirt.OpPwrite && op.Offset < 0 || op.Kind == fsvirt.OpTruncate && op.Size < 0 {
		return fsvirt.Fail(unix.EINVAL), Decision{}
	}
	f := iv.fd(op.Fd)
	pathOK := op.Kind == fsvirt.OpStat || op.Kind == fsvirt.OpClose || op.Kind == fsvirt.OpFchdir
	if f != nil && f.flags&unix.O_PATH != 0 && mapping(f.node) != PassThrough && (!pathOK || f.node.typ == fsvirt.Symlink && op.Kind == fsvirt.OpStat) {
		// The kernel cannot inject an O_PATH file: the engine gives an ordinary read-only fd for a
		// private file or directory, a memfd for a private symlink (README, limits).
		iv.undefined = "I/O on an O_PATH fd of a private object"
	}
	if f == nil || f.flags&unix.O_PATH != 0 && !pathOK {
		return fsvirt.Fail(unix.EBADF), Decision{}
	}
	if op.Kind == fsvirt.OpSeek && f.node.typ == fsvirt.Dir {
		iv.undefined = "lseek in a directory is file-system specific"
	}
	dec := Decision{Mapping: mapping(f.node)}
	switch {
	case f.listShared:
		dec.Mapping = PassThrough
		dec.Stale = (op.Kind == fsvirt.OpGetdents || op.Kind == fsvirt.OpStat) && (f.node.touched || f.node.dead)
	case f.node.shared:
		// fstat of a shared file the view gave other names counts the shared file's links only.
		dec.Stale = iv.gone[f.node] || op.Kind == fsvirt.OpStat && iv.names[f.node] > 0
	}
	return m.fdOpOn(iv, f, op), dec
}

func (m *Model) fdOpOn(iv *invocation, f *file, op fsvirt.Op) fsvirt.Outcome {
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
		iv.killPrivs(n)
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
			off += m.stat(n).Size
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
		n.data = resize(n.data, op.Size)
		iv.killPrivs(n)
		return fsvirt.Outcome{}
	case fsvirt.OpStat:
		if f.listShared {
			return fsvirt.Outcome{Stat: m.stat(n.lower)}
		}
		return fsvirt.Outcome{Stat: m.stat(n)}
	case fsvirt.OpClose:
		iv.fds[op.Fd] = nil
		return fsvirt.Outcome{}
	case fsvirt.OpGetdents:
		switch {
		case n.typ != fsvirt.Dir:
			return fsvirt.Fail(unix.ENOTDIR)
		case f.listShared:
			ents := list(n.lower)
			return fsvirt.Outcome{Ret: int64(len(ents)), Dirents: ents}
		case n.dead:
			return fsvirt.Fail(unix.ENOENT)
		}
		ents := list(n)
		return fsvirt.Outcome{Ret: int64(len(ents)), Dirents: ents}
	case fsvirt.OpFchdir:
		if n.typ != fsvirt.Dir {
			return fsvirt.Fail(unix.ENOTDIR)
		}
		if !iv.may(n, unix.X_OK) {
			return fsvirt.Fail(unix.EACCES)
		}
		iv.cwd = n
		return fsvirt.Outcome{}
	}
	return fsvirt.Fail(unix.ENOSYS)
}

// resize is data cut or zero-filled to size bytes.
func resize(data []byte, size int64) []byte {
	if size <= int64(len(data)) {
		return data[:size:size]
	}
	return append(data, make([]byte, size-int64(len(data)))...)
}
