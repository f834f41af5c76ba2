package impl

import (
	"path"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Inode flags (chattr) that the kernel enforces on everyone, root included: an immutable object
// cannot be written, truncated, linked, removed, renamed, nor have its mode, owner, times or
// extended attributes set, nor can names be added to or removed from an immutable directory; an
// append-only file can be opened for writing only with O_APPEND, and neither truncated, linked,
// removed, renamed nor have its mode, owner, explicit times or extended attributes set, and no
// name can be removed from an append-only directory (docs/kernel.md, "Immutable and append-only
// objects").
//
// The view copies a shared file's flags with it when it copies it up (copyFlags), after which the
// kernel enforces them on the copy, also on the supervisor. What would copy up first, or change
// only the layer (removing a shared name, adding one to a shared directory), is checked against
// the shared object's flags before (flagsForbid). A shared directory's immutable and append-only
// flags are never set on its upper directory, where the view must go on adding placeholders: the
// shared directory's are checked instead.

// iflags are the immutable and append-only flags of an object.
type iflags struct{ immutable, appendOnly bool }

func (f iflags) either() bool { return f.immutable || f.appendOnly }

// hostFlags returns the flags of the object at host path h (not followed), from statx's
// attributes; where the file system does not report them there, from FS_IOC_GETFLAGS on a
// regular file or directory (opening anything else could act on a device).
func hostFlags(h string) iflags {
	var stx unix.Statx_t
	flags := unix.AT_SYMLINK_NOFOLLOW | unix.AT_STATX_DONT_SYNC
	if long.Statx(unix.AT_FDCWD, h, flags, unix.STATX_TYPE, &stx) != nil {
		return iflags{}
	}
	const both = unix.STATX_ATTR_IMMUTABLE | unix.STATX_ATTR_APPEND
	if stx.Attributes_mask&both == both {
		a := stx.Attributes
		return iflags{a&unix.STATX_ATTR_IMMUTABLE != 0, a&unix.STATX_ATTR_APPEND != 0}
	}
	if t := uint32(stx.Mode) & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
		return iflags{}
	}
	const ro = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := long.Open(h, ro|unix.O_NOATIME, 0)
	if err == unix.EPERM { // O_NOATIME on a file the supervisor does not own
		fd, err = long.Open(h, ro, 0)
	}
	if err != nil {
		return iflags{}
	}
	defer unix.Close(fd)
	fl, err := getFlags(fd)
	if err != nil {
		return iflags{}
	}
	return iflags{fl&fsImmutableFl != 0, fl&fsAppendFl != 0}
}

// viewFlags returns the flags of the view's object at view path p: the shared object's for a
// shared directory, whose upper directory never carries them, else those of the object that
// speaks for p (a copy carries its shared file's). A path that does not exist has none.
func (v *View) viewFlags(p string) iflags {
	l, _, err := v.locate(p)
	if err != nil {
		return iflags{}
	}
	if e := l.ent; e != nil && e.kind == entryDir && !e.own && e.lower != "" {
		return hostFlags(e.lower)
	}
	return hostFlags(l.host)
}

// The changes flagsForbid checks.
type flagChange uint8

const (
	changeData   flagChange = iota // open for writing without O_APPEND, or with O_TRUNC
	changeAppend                   // open for writing with O_APPEND
	changeAttr                     // truncate, chmod, chown, explicit times, xattrs
	changeTouch                    // times set to now
	changeLink                     // a new name for the object
	changeRemove                   // removing or renaming the object's name
	changeMakeIn                   // a new name in the directory
)

// flagsForbid returns EPERM where the view's object at view path p has a flag that forbids
// change c (may_open, notify_change, vfs_truncate, xattr_permission, vfs_link, may_delete,
// may_create). For changeRemove it checks the parent directory too.
func (v *View) flagsForbid(p string, c flagChange) error {
	f := v.viewFlags(p)
	forbid := false
	switch c {
	case changeData, changeAttr, changeLink:
		forbid = f.either()
	case changeAppend, changeTouch, changeMakeIn:
		forbid = f.immutable
	case changeRemove:
		forbid = f.either() || p != "/" && v.viewFlags(path.Dir(p)).either()
	}
	if forbid {
		return unix.EPERM
	}
	return nil
}

// openChange is the change an open with flags makes to an existing file, for flagsForbid.
func openChange(flags int) flagChange {
	if flags&unix.O_APPEND != 0 && flags&unix.O_TRUNC == 0 {
		return changeAppend
	}
	return changeData
}

// attrChange is the change setattr call o makes, for flagsForbid.
func attrChange(o op) flagChange {
	switch {
	case o.kind == opUtimens && (o.times == nil ||
		o.times[0].Nsec == unix.UTIME_NOW && o.times[1].Nsec == unix.UTIME_NOW):
		return changeTouch
	case o.kind == opChown && o.uid == -1 && o.gid == -1:
		return changeTouch // chown(-1, -1) changes no owner: only its ctime
	}
	return changeAttr
}

// keptFlags are the inode flags a copy keeps: synchronous, immutable, append-only, no-dump,
// no-atime, synchronous directory updates, top of a directory hierarchy.
const keptFlags = 0x8 | fsImmutableFl | fsAppendFl | 0x40 | 0x80 | 0x10000 | 0x20000

// copyFlags gives file dst the inode flags of file src that a copy keeps (keptFlags). The file
// system of the private layer may not take them (tmpfs before 6.0): then the copy has none, and
// only the checks before a copy-up keep the shared file's.
func copyFlags(dst, src int) {
	copyFlagsMasked(dst, src, keptFlags)
}

// copyDirFlags gives the upper directory at host path dst the inode flags of the shared directory
// at host path src that a copy keeps, but immutable and append-only, which would keep the view
// from changing it (flagsForbid checks the shared directory's instead).
func copyDirFlags(src, dst string) {
	const ro = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC
	sfd, err := long.Open(src, ro, 0)
	if err != nil {
		return
	}
	defer unix.Close(sfd)
	dfd, err := long.Open(dst, ro, 0)
	if err != nil {
		return
	}
	defer unix.Close(dfd)
	copyFlagsMasked(dfd, sfd, keptFlags&^(fsImmutableFl|fsAppendFl))
}

// copyFlagsMasked gives dst the flags of src that kept has.
func copyFlagsMasked(dst, src int, kept uint32) {
	flags, err := getFlags(src)
	if err != nil || flags&kept == 0 {
		return
	}
	if cur, err := getFlags(dst); err == nil {
		setFlags(dst, cur|flags&kept)
	}
}

// getFlags is FS_IOC_GETFLAGS on fd.
func getFlags(fd int) (uint32, error) {
	var flags uint32
	// The pointer's conversion stays in the call's argument list (unsafe.Pointer's rule 4).
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocGetflags,
		uintptr(unsafe.Pointer(&flags))); e != 0 {
		return 0, e
	}
	return flags, nil
}

// setFlags is FS_IOC_SETFLAGS on fd.
func setFlags(fd int, flags uint32) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocSetflags,
		uintptr(unsafe.Pointer(&flags))); e != 0 {
		return e
	}
	return nil
}

// withoutFlags runs fn with the immutable and append-only flags of the file at host path p, the
// view's own, cleared, and sets them again after: for what the view does to its copy that the
// kernel would not have had to do (another host name of the shared file linked to the copy,
// which natively was there already). Clearing them needs CAP_LINUX_IMMUTABLE, which a supervisor
// that is not root lacks: fn then fails as it would have.
func withoutFlags(p string, fn func() error) error {
	fd, err := long.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fn()
	}
	defer unix.Close(fd)
	flags, err := getFlags(fd)
	if err != nil || flags&(fsImmutableFl|fsAppendFl) == 0 {
		return fn()
	}
	if setFlags(fd, flags&^(fsImmutableFl|fsAppendFl)) != nil {
		return fn()
	}
	defer setFlags(fd, flags)
	return fn()
}
