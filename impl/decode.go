package impl

import (
	"unsafe"

	"github.com/fsvirt/fsvirt/internal/notify"
	"golang.org/x/sys/unix"
)

// decoder turns a notification's registers (and the tracee memory they point to) into an op.
type decoder func(t tracee, d *notify.Data) (op, error)

// readPath reads a path argument. A path the kernel could not copy in either is kept as pathErr,
// for the view to fail with in the kernel's order; only a task that went away fails decoding.
func (t tracee) readPath(addr uint64) (p string, pathErr, err error) {
	p, err = t.readString(addr)
	if err != nil && err != errTraceeGone {
		return "", err, nil
	}
	return p, nil, err
}

func decodeOpen(t tracee, d *notify.Data) (op, error) {
	p, perr, err := t.readPath(d.Args[0])
	return op{kind: opOpen, dirfd: unix.AT_FDCWD, unsafePath: p, pathErr: perr, flags: d.Args[1], mode: uint32(d.Args[2])}, err
}

func decodeCreat(t tracee, d *notify.Data) (op, error) {
	p, perr, err := t.readPath(d.Args[0])
	return op{kind: opOpen, dirfd: unix.AT_FDCWD, unsafePath: p, pathErr: perr, flags: unix.O_CREAT | unix.O_WRONLY | unix.O_TRUNC, mode: uint32(d.Args[1])}, err
}

func decodeOpenat(t tracee, d *notify.Data) (op, error) {
	p, perr, err := t.readPath(d.Args[1])
	return op{kind: opOpen, dirfd: int(int32(d.Args[0])), unsafePath: p, pathErr: perr, flags: d.Args[2], mode: uint32(d.Args[3])}, err
}

// openHowSize is sizeof(struct open_how) as of 5.6 (OPEN_HOW_SIZE_VER0;
// docs/kernel.md, "Open flags").
const openHowSize = int(unsafe.Sizeof(unix.OpenHow{}))

func decodeOpenat2(t tracee, d *notify.Data) (op, error) {
	size := int(d.Args[3])
	if size < openHowSize {
		return op{}, unix.EINVAL
	}
	if size > 4096 { // the kernel's limit for extensible structs is a page
		return op{}, unix.E2BIG
	}
	var how unix.OpenHow
	if err := t.readStruct(d.Args[2], unsafe.Pointer(&how), openHowSize); err != nil {
		return op{}, err
	}
	if size > openHowSize { // copy_struct_from_user: bytes we do not know must be zero
		rest := make([]byte, size-openHowSize)
		if _, err := t.read(d.Args[2]+uint64(openHowSize), rest); err != nil {
			return op{}, err
		}
		for _, b := range rest {
			if b != 0 {
				return op{}, unix.E2BIG
			}
		}
	}
	p, perr, err := t.readPath(d.Args[1])
	if how.Mode > 07777 {
		return op{}, unix.EINVAL
	}
	return op{kind: opOpen, dirfd: int(int32(d.Args[0])), unsafePath: p, pathErr: perr, flags: how.Flags, mode: uint32(how.Mode), resolve: how.Resolve, strict: true}, err
}
