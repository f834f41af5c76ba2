package impl

import (
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Permissions in the trees. The supervisor makes the view's changes in the private layer with its
// own credentials, so the kernel checks nothing there on the caller's behalf: these functions
// make the checks it would make on the view's objects (the shared object, or the view's copy,
// whose mode and owner are the shared one's), before anything is copied up, so that a refused call
// changes nothing. Access bits are checked by the kernel itself, with faccessat2(AT_EACCESS) on
// the object run as the caller (asCaller; docs/kernel.md, "Credentials are per thread"); ownership
// rules are written out here.
//
// Capabilities count as the kernel counts them: from the caller's effective set, whatever its uid
// (root that dropped CAP_DAC_OVERRIDE is refused what nobody is; asCaller gives the supervisor's
// thread the caller's set for the checks the kernel makes;
// docs/kernel.md, "Credentials are per thread").

// fsCaps are the capabilities that the checks made here let a caller past.
const fsCaps = 1<<unix.CAP_CHOWN | 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH |
	1<<unix.CAP_FOWNER | 1<<unix.CAP_FSETID | 1<<unix.CAP_MKNOD | 1<<unix.CAP_SYS_ADMIN

// capable reports whether caller c holds capability cap in its effective set.
func (c creds) capable(cap int) bool { return c.capEff&(1<<cap) != 0 }

// searchesAll reports whether caller c may search every directory (CAP_DAC_READ_SEARCH, or
// CAP_DAC_OVERRIDE, which implies it for directories).
func (c creds) searchesAll() bool {
	return c.capable(unix.CAP_DAC_READ_SEARCH) || c.capable(unix.CAP_DAC_OVERRIDE)
}

// privileged reports whether the kernel would let caller c past every check made here: it holds
// every capability of fsCaps.
func (c creds) privileged() bool { return c.capEff&fsCaps == fsCaps }

// inGroup reports whether c has group gid: its fsgid or a supplementary group.
func (c creds) inGroup(gid uint32) bool {
	return c.fsgid == int(gid) || slices.Contains(c.groups, int(gid))
}

// callerMay checks that caller c may access the view's object at view path p with mask (R_OK,
// W_OK, X_OK), as the kernel would. A tree on a read-only mount is writable in the view.
func (v *View) callerMay(c creds, p string, mask uint32) error {
	if mask == 0 || c.capable(unix.CAP_DAC_OVERRIDE) && mask&unix.X_OK == 0 { // root may execute only what has an x bit
		return nil
	}
	l, _, err := v.locate(p)
	if err != nil {
		return err
	}
	return hostMay(c, l.host, mask)
}

// hostMay is callerMay for the object at host path h, which the supervisor opens itself (the
// store is not the caller's to walk).
func hostMay(c creds, h string, mask uint32) error {
	if mask == 0 || c.capable(unix.CAP_DAC_OVERRIDE) && mask&unix.X_OK == 0 { // root may execute only what has an x bit
		return nil
	}
	fd, err := long.Open(h, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fdMay(c, fd, mask)
}

// fdMay is callerMay for the object behind the supervisor's descriptor fd.
func fdMay(c creds, fd int, mask uint32) error {
	if mask == 0 || c.capable(unix.CAP_DAC_OVERRIDE) && mask&unix.X_OK == 0 { // root may execute only what has an x bit
		return nil
	}
	err := asCaller(c, func() error {
		return long.Faccessat2(fd, "", mask, unix.AT_EACCESS|unix.AT_EMPTY_PATH)
	})
	if err == unix.EROFS {
		return nil
	}
	return err
}

// mayMakeIn checks that caller c may add a name to view directory dir: write and search
// permission on it.
func (v *View) mayMakeIn(c creds, dir string) error {
	if err := v.flagsForbid(dir, changeMakeIn); err != nil {
		return err
	}
	return v.callerMay(c, dir, unix.W_OK|unix.X_OK)
}

// mayRemove checks that caller c may remove (or rename away, or replace) the name of view path p:
// write and search permission on its directory and, where that directory is sticky, ownership of
// the directory or of the object (may_delete's check_sticky); and, whatever c's privileges, that
// neither the directory nor the object is immutable or append-only.
func (v *View) mayRemove(c creds, p string) error {
	if c.privileged() {
		return v.flagsForbid(p, changeRemove)
	}
	dir := path.Dir(p)
	if err := v.mayMakeIn(c, dir); err != nil {
		return err
	}
	if err := v.flagsForbid(p, changeRemove); err != nil {
		return err
	}
	if c.capable(unix.CAP_FOWNER) {
		return nil
	}
	_, dst, err := v.locate(dir)
	if err != nil {
		return err
	}
	if dst.Mode&unix.S_ISVTX == 0 || dst.Uid == uint32(c.fsuid) {
		return nil
	}
	_, st, err := v.locate(p)
	if err != nil {
		return err
	}
	if st.Uid != uint32(c.fsuid) {
		return unix.EPERM
	}
	return nil
}

// openMask is the access an open with flags asks for (may_open): read and write by access
// mode, write for O_TRUNC.
func openMask(flags int) uint32 {
	var m uint32
	switch flags & unix.O_ACCMODE {
	case unix.O_RDONLY:
		m = unix.R_OK
	case unix.O_WRONLY:
		m = unix.W_OK
	case unix.O_RDWR:
		m = unix.R_OK | unix.W_OK
	}
	if flags&unix.O_TRUNC != 0 {
		m |= unix.W_OK
	}
	return m
}

// maySetattr checks that caller c may make o's change to the view's object behind the
// supervisor's descriptor obj: chmod and explicit times need ownership, chown needs privilege
// (or the owner giving its file to one of its own groups), truncate needs write permission, times
// set to now ownership or write permission, and extended attributes of the user namespace write
// permission (trusted and security ones privilege). e is the view's entry for obj, when obj is
// the view's own object (its owner is then sharedOwner's, where that applies), else nil.
func maySetattr(c creds, obj int, o op, e *entry) error {
	if c.privileged() {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(obj, &st); err != nil {
		return err
	}
	sharedOwner(e, &st.Uid, &st.Gid)
	owner := st.Uid == uint32(c.fsuid) || c.capable(unix.CAP_FOWNER) // inode_owner_or_capable
	switch o.kind {
	case opChmod:
		if !owner {
			return unix.EPERM
		}
	case opChown:
		chown := c.capable(unix.CAP_CHOWN)
		switch {
		case !chown && o.uid != -1 && uint32(o.uid) != st.Uid,
			!chown && st.Uid != uint32(c.fsuid) && (o.uid != -1 || o.gid != -1):
			return unix.EPERM
		case !chown && o.gid != -1 && uint32(o.gid) != st.Gid && !c.inGroup(uint32(o.gid)):
			return unix.EPERM
		case !owner && st.Mode&unix.S_IFMT != unix.S_IFDIR && (st.Mode&unix.S_ISUID != 0 ||
			st.Mode&unix.S_ISGID != 0 && (st.Mode&unix.S_IXGRP != 0 || !c.inGroup(st.Gid))):
			// Even chown(-1, -1) clears these set-ID bits (chown_common), a change of mode,
			// which is the owner's.
			return unix.EPERM
		}
	case opTruncate:
		return fdMay(c, obj, unix.W_OK)
	case opUtimens:
		now := o.times == nil || o.times[0].Nsec == unix.UTIME_NOW && o.times[1].Nsec == unix.UTIME_NOW
		switch {
		case owner:
		case !now:
			return unix.EPERM
		default:
			if err := fdMay(c, obj, unix.W_OK); err != nil {
				return unix.EACCES
			}
		}
	case opSetxattr, opRemovexattr:
		switch {
		case strings.HasPrefix(o.name, "user.") && st.Mode&(unix.S_IFMT|unix.S_ISVTX) == unix.S_IFDIR|unix.S_ISVTX && !owner:
			return unix.EPERM // xattr_permission: a sticky directory's are its owner's
		case strings.HasPrefix(o.name, "user."):
			return fdMay(c, obj, unix.W_OK)
		case strings.HasPrefix(o.name, "system.posix_acl_"):
			if !owner { // an ACL is the owner's to set, as a mode is
				return unix.EPERM
			}
		case strings.HasPrefix(o.name, "trusted."):
			if !c.capable(unix.CAP_SYS_ADMIN) {
				return unix.EPERM
			}
		}
		// Anything else (security.*) the kernel decides, as the caller, on the copy.
	}
	return nil
}

// mayLink checks fs.protected_hardlinks for caller c linking the object behind obj: unless it
// owns it, the object must be a regular file it may read and write, and not set-user-ID, nor
// set-group-ID and group-executable (may_linkat).
func mayLink(c creds, obj int) error {
	if c.capable(unix.CAP_FOWNER) || !protectedHardlinks() {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(obj, &st); err != nil {
		return err
	}
	if st.Uid == uint32(c.fsuid) {
		return nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&unix.S_ISUID != 0 || st.Mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP {
		return unix.EPERM
	}
	if fdMay(c, obj, unix.R_OK|unix.W_OK) != nil {
		return unix.EPERM
	}
	return nil
}

// protectedHardlinks reports whether fs.protected_hardlinks is set (Debian's default).
func protectedHardlinks() bool {
	b, err := os.ReadFile("/proc/sys/fs/protected_hardlinks")
	return err != nil || len(b) > 0 && b[0] != '0'
}

// mayRename checks that the caller of t may rename from to to (or exchange them): remove from's
// name, and to's when it exists, and add to's.
func (v *View) mayRename(t tracee, from, to resolved) error {
	c, err := t.status()
	if err != nil {
		return err
	}
	if err := v.mayRemove(c, from.path); err != nil {
		return err
	}
	if to.exists() {
		return v.mayRemove(c, to.path)
	}
	if c.privileged() {
		return v.flagsForbid(path.Dir(to.path), changeMakeIn)
	}
	return v.mayMakeIn(c, path.Dir(to.path))
}

// mayReparent checks, after mayRename and the types of the two names (vfs_rename's order), that
// a directory that changes parent may be written, for its "..".
func (v *View) mayReparent(t tracee, from, to resolved, exchange bool) error {
	c, err := t.status()
	if err != nil || c.privileged() {
		return err
	}
	if path.Dir(from.path) != path.Dir(to.path) {
		if from.mode == unix.S_IFDIR {
			if err := v.callerMay(c, from.path, unix.W_OK); err != nil {
				return err
			}
		}
		if exchange && to.mode == unix.S_IFDIR {
			return v.callerMay(c, to.path, unix.W_OK)
		}
	}
	return nil
}

// mayCreate is mayMakeIn for the caller of t.
func (v *View) mayCreate(t tracee, dir string) error {
	c, err := t.status()
	if err != nil {
		return err
	}
	return v.mayMakeIn(c, dir)
}

// mayChangeAttr is maySetattr for the view's object at view path p, before it is copied up.
func (v *View) mayChangeAttr(c creds, p string, o op) error {
	if c.privileged() {
		return nil
	}
	l, _, err := v.locate(p)
	if err != nil {
		return err
	}
	fd, err := long.Open(l.host, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var e *entry
	if l.ent != nil && l.ent.viewsOwn() {
		e = l.ent
	}
	return maySetattr(c, fd, o, e)
}

// mayLinkPath is mayLink for the caller of t and the object at host path h.
func (v *View) mayLinkPath(t tracee, h string) error {
	if hostFlags(h).either() { // vfs_link, whatever the caller's privileges
		return unix.EPERM
	}
	c, err := t.status()
	if err != nil || c.privileged() {
		return err
	}
	fd, err := long.Open(h, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return mayLink(c, fd)
}

// mayGetxattr is xattr_permission for caller c reading the extended attribute name of the view's
// object at host path h, which the supervisor reads with its own credentials: trusted.* needs
// privilege (without it, it reads as unset), user.* (and any other but security.* and system.*)
// read permission on a regular file or directory.
func mayGetxattr(c creds, h, name string) error {
	switch {
	case c.privileged(), strings.HasPrefix(name, "security."), strings.HasPrefix(name, "system."):
		return nil
	case strings.HasPrefix(name, "trusted."):
		if c.capable(unix.CAP_SYS_ADMIN) {
			return nil
		}
		return unix.ENODATA
	}
	var st unix.Stat_t
	if err := long.Lstat(h, &st); err != nil {
		return err
	}
	if typ := st.Mode & unix.S_IFMT; strings.HasPrefix(name, "user.") && typ != unix.S_IFREG && typ != unix.S_IFDIR {
		return nil // nothing can be set there: the read finds nothing
	}
	return hostMay(c, h, unix.R_OK)
}
