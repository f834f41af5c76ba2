package impl

import (
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/fsvirt/fsvirt/internal/notify"
	"golang.org/x/sys/unix"
)

// ioctl is the one fd-based call that can change a file without write access to it: the inode flags
// (FS_IOC_SETFLAGS: immutable, append-only, nodump...) and extended attributes (FS_IOC_FSSETXATTR:
// project id, extent size) belong to whoever owns the file, and a descriptor opened for reading is
// enough to set them. A view opens shared files for reading, so ioctl must not reach them.
//
// The command number is in a register, which the kernel does not read again after a CONTINUE
// (docs/kernel.md, "CONTINUE re-reads memory"), so the filter decides by command (ioctlPrefix) and
// no race on memory or descriptors can change what it decided:
//
//   - Commands of the types the kernel's file systems use for their own ioctls (ioctlFSTypes: 'f'
//     for FS_IOC_* and ext4, 'v' for FS_IOC_GETVERSION, 'X' for FIFREEZE, FITRIM and XFS, 0x94 for
//     FICLONE and btrfs, and those of f2fs, FAT, OCFS2/UBIFS, NILFS2, CephFS, CIFS and bcachefs)
//     notify the supervisor, except the read-only and write-descriptor ones in ioctlPassed.
//     The supervisor performs FS_IOC_SETFLAGS and FS_IOC_FSSETXATTR in the view (on the private
//     copy of a shared file, which it copies up first) and refuses every other such command with
//     EPERM.
//   - Commands of userfaultfd's type (0xAA) are refused too, USERFAULTFD_IOC_NEW on /dev/userfaultfd
//     with them: with the userfaultfd syscall denied (table), no task can make a page whose faults
//     it handles, whose access would stall the supervisor's reads and writes of its memory
//     (docs/kernel.md, "The supervisor must not wait").
//   - Every other command passes untouched: terminals, sockets, block and character devices, and
//     ioctls that no file system implements, which fail on a file with ENOTTY.
//
// What this does not cover: a FUSE file system receives whatever command a task sends to one of its
// files, and may change the file for a command of another type; a tree on FUSE is not protected
// from ioctl by this filter.
var ioctlFSTypes = []uint32{'f', 'v', 'X', 'x', 0x94, 0xf5, 'r', 'o', 'n', 0x97, 0xcf, 0xbc, 0xaa}

// ioctlPassed are commands of those types that change no file through a read-only descriptor:
// getters, and FICLONE/FICLONERANGE, whose destination must be open for writing (a view's writable
// descriptors are of its own files).
var ioctlPassed = []uint32{
	0x80086601, // FS_IOC_GETFLAGS
	0x80046601, // FS_IOC32_GETFLAGS
	0x801c581f, // FS_IOC_FSGETXATTR
	0xc020660b, // FS_IOC_FIEMAP
	0x80087601, // FS_IOC_GETVERSION
	0x80047601, // FS_IOC32_GETVERSION
	0x40049409, // FICLONE
	0x4020940d, // FICLONERANGE
	0x81009431, // FS_IOC_GETFSLABEL
}

// Commands the supervisor performs in the view.
const (
	fsIocSetflags   = 0x40086602 // FS_IOC_SETFLAGS (long in the name, int in every file system)
	fsIoc32Setflags = 0x40046602 // FS_IOC32_SETFLAGS
	fsIocFssetxattr = 0x401c5820 // FS_IOC_FSSETXATTR, struct fsxattr
)

// FS_IOC_GETFLAGS, and the flags that keep a file from being removed.
const (
	fsIocGetflags = 0x80086601
	fsImmutableFl = 0x10
	fsAppendFl    = 0x20
)

// fsxattrSize is sizeof(struct fsxattr).
const fsxattrSize = 28

// ioctlPrefix returns the filter's first instructions: for ioctl on the native architecture it
// answers by command (see above); everything else goes on to the instruction after the prefix.
func ioctlPrefix() []unix.SockFilter {
	var b bpfBuilder
	b.ld(dataArch)
	b.jeq(auditArchNative, "", "out")
	b.ld(dataNr)
	b.jeq(unix.SYS_IOCTL, "", "out")
	b.ld(dataArg1Low)
	for _, c := range ioctlPassed {
		b.jeq(c, "allow", "")
	}
	b.alu(unix.BPF_RSH, 8)
	b.alu(unix.BPF_AND, 0xff)
	for _, typ := range ioctlFSTypes {
		b.jeq(typ, "notify", "")
	}
	b.label("allow")
	b.ret(unix.SECCOMP_RET_ALLOW)
	b.label("notify")
	b.ret(unix.SECCOMP_RET_USER_NOTIF)
	b.label("out")
	prog, err := b.program()
	if err != nil {
		panic(err) // the prefix is a constant program: an error is a bug, caught by every test
	}
	return prog
}

// dataArg1Low is the offset of the low word of seccomp_data.args[1] (little endian).
const dataArg1Low = dataArg0Low + 8

// opIoctl is an ioctl of a file-system type that the filter did not pass.
const opIoctl = opSockaddr + 1

func decodeIoctl(t tracee, d *notify.Data) (op, error) {
	return op{kind: opIoctl, dirfd: unix.AT_FDCWD, pathArgs: pathArgs{fd: arg32(d.Args[0]), buf: d.Args[2], mask: uint32(d.Args[1])}}, nil
}

// ioctl performs FS_IOC_SETFLAGS and FS_IOC_FSSETXATTR on the object the view shows: the view's own
// copy, made first for a shared file; an object outside the trees is changed as the caller. Other
// file-system commands are refused.
func (v *View) ioctl(t tracee, o op) (reply, error) {
	var size int
	switch o.mask {
	case fsIocSetflags, fsIoc32Setflags:
		size = 4
	case fsIocFssetxattr:
		size = fsxattrSize
	default:
		return reply{}, unix.EPERM
	}
	arg := make([]byte, size)
	if err := t.readStruct(o.buf, unsafe.Pointer(&arg[0]), size); err != nil {
		return reply{}, err
	}
	obj, shared, err := t.taskObject(o.fd)
	if err != nil {
		return reply{}, err
	}
	defer func() { unix.Close(obj) }()
	if fl, err := unix.FcntlInt(uintptr(obj), unix.F_GETFL, 0); err == nil && fl&unix.O_PATH != 0 && shared {
		return reply{}, unix.EBADF // the task's own descriptor is O_PATH
	}
	p, pl, err := v.placeOf(obj)
	if err != nil {
		return reply{}, err
	}
	if pl == placeDetached {
		return reply{}, unix.EROFS // a shared file the view removed: nothing may change it (README)
	}
	if pl == placeTree {
		if err := v.copyUpObj(p, false); err != nil {
			return reply{}, err
		}
		unix.Close(obj)
		if obj, err = long.Open(v.upperPath(p), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			return reply{}, err
		}
	}
	// As the caller (docs/kernel.md, "Credentials are per thread"), also on the view's copy, which
	// has the shared file's owner: the kernel checks ownership, and CAP_LINUX_IMMUTABLE for the
	// immutable and append-only flags.
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	return okReply, asCaller(c, func() error {
		fd := obj
		if fl, err := unix.FcntlInt(uintptr(obj), unix.F_GETFL, 0); err == nil && fl&unix.O_PATH != 0 {
			// An O_PATH descriptor takes no ioctl: the object opened for reading takes it.
			if fd, err = long.Open(fdPath(obj), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err != nil {
				return err
			}
			defer unix.Close(fd)
		}
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(o.mask), uintptr(unsafe.Pointer(&arg[0])))
		if e != 0 {
			return e
		}
		return nil
	})
}

// removeLayer removes dir and everything in it. An invocation may have made its own files
// immutable or append-only (FS_IOC_SETFLAGS on the view's copy): where removal fails, those
// flags are cleared and removal tried again.
func removeLayer(dir string) error {
	if os.RemoveAll(dir) == nil {
		return nil
	}
	clearFlags(dir)
	return os.RemoveAll(dir)
}

// clearFlags clears what keeps anything under dir from being removed: the inode flags, and a
// directory's mode that lacks its owner's read, write or search permission (a command made it so
// in its view; root is not held back by it, a supervisor that is not root is).
func clearFlags(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if d.IsDir() { // before WalkDir reads it
			var st unix.Stat_t
			if long.Lstat(p, &st) == nil && st.Mode&0o700 != 0o700 {
				long.Chmod(p, st.Mode&0o7777|0o700)
			}
		}
		fd, err := long.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		defer unix.Close(fd)
		if flags, err := getFlags(fd); err == nil && flags&(fsImmutableFl|fsAppendFl) != 0 {
			setFlags(fd, flags&^(fsImmutableFl|fsAppendFl))
		}
		return nil
	})
}
