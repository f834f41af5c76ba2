package model

import (
	"slices"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// The kernel's permission checks, made with the invocation's credentials (see doc.go). A caller
// with uid 0 holds root's capabilities: CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (any access
// but executing a non-directory without an execute bit), CAP_FOWNER, CAP_CHOWN, CAP_FSETID.

// Sysctls are the fs.protected_* settings the model follows. The zero value has them all off.
type Sysctls struct {
	ProtectedHardlinks bool // fs.protected_hardlinks: may_linkat
	ProtectedSymlinks  bool // fs.protected_symlinks: may_follow_link
}

func (iv *invocation) privileged() bool { return iv.cred.Uid == 0 }

// inGroup is in_group_or_capable: gid is the caller's group or a supplementary one, or the
// caller holds CAP_FSETID.
func (iv *invocation) inGroup(gid uint32) bool {
	return iv.privileged() || iv.cred.Gid == gid || slices.Contains(iv.cred.Groups, gid)
}

// owns is inode_owner_or_capable.
func (iv *invocation) owns(n *node) bool { return iv.privileged() || n.uid == iv.cred.Uid }

// may is generic_permission for mask (R_OK, W_OK, X_OK): the owner's bits, else the group's,
// else the others'.
func (iv *invocation) may(n *node, mask uint32) bool {
	if iv.privileged() {
		return mask&unix.X_OK == 0 || n.typ == fsvirt.Dir || n.mode&0o111 != 0
	}
	bits := n.mode
	switch {
	case n.uid == iv.cred.Uid:
		bits >>= 6
	case iv.cred.Gid == n.gid || slices.Contains(iv.cred.Groups, n.gid):
		bits >>= 3
	}
	return bits&mask == mask
}

// mayCreate is may_create's permission check: write and search permission on dir.
func (iv *invocation) mayCreate(dir *node) syscall.Errno {
	if !iv.may(dir, unix.W_OK|unix.X_OK) {
		return unix.EACCES
	}
	return 0
}

// mayDelete is may_delete's permission checks for n, an entry of dir: write and search
// permission on dir, and in a sticky dir ownership of dir or n (check_sticky).
func (iv *invocation) mayDelete(dir, n *node) syscall.Errno {
	switch {
	case !iv.may(dir, unix.W_OK|unix.X_OK):
		return unix.EACCES
	case dir.mode&unix.S_ISVTX != 0 && !iv.owns(n) && dir.uid != iv.cred.Uid:
		return unix.EPERM
	}
	return 0
}

// mayLink is may_linkat: with fs.protected_hardlinks, a caller who does not own n may link only
// a regular file it may read and write that is neither set-user-ID nor executable set-group-ID.
func (iv *invocation) mayLink(n *node) syscall.Errno {
	safe := n.typ == fsvirt.File && n.mode&unix.S_ISUID == 0 && n.mode&(unix.S_ISGID|unix.S_IXGRP) != unix.S_ISGID|unix.S_IXGRP &&
		iv.may(n, unix.R_OK|unix.W_OK)
	if iv.sysctls.ProtectedHardlinks && !safe && !iv.owns(n) {
		return unix.EPERM
	}
	return 0
}

// mayFollow is may_follow_link: with fs.protected_symlinks, a symlink in a sticky, world-writable
// dir is followed only by its owner, or when dir's owner owns it too (root included).
func (iv *invocation) mayFollow(dir, link *node) syscall.Errno {
	if iv.sysctls.ProtectedSymlinks && link.uid != iv.cred.Uid && dir.mode&(unix.S_ISVTX|unix.S_IWOTH) == unix.S_ISVTX|unix.S_IWOTH && dir.uid != link.uid {
		return unix.EACCES
	}
	return 0
}

// killPrivs is what a write or truncation by a caller without CAP_FSETID does to a regular
// file: it clears set-user-ID, and set-group-ID where the group may execute or is not the
// caller's (should_remove_suid, setattr_should_drop_sgid).
func (iv *invocation) killPrivs(n *node) {
	if n.typ != fsvirt.File || iv.privileged() {
		return
	}
	n.mode &^= iv.dropIDs(n)
}

// dropIDs is the set-ID bits a change of n's owner, or a write by a caller without CAP_FSETID,
// clears: set-user-ID, and set-group-ID when the group may execute or, for a caller not in it,
// always (setattr_should_drop_sgid).
func (iv *invocation) dropIDs(n *node) uint32 {
	drop := n.mode & unix.S_ISUID
	if n.mode&unix.S_ISGID != 0 && (n.mode&unix.S_IXGRP != 0 || !iv.inGroup(n.gid)) {
		drop |= unix.S_ISGID
	}
	return drop
}

// chown is setattr_prepare's checks for chown(uid, gid) of n (-1 keeps an id) and the change: the
// owner may give its file to a group it is in (or keep it); anything else needs CAP_CHOWN. A
// non-directory loses its set-ID bits (dropIDs), which needs ownership (the mode changes).
func (iv *invocation) chown(n *node, uid, gid int) syscall.Errno {
	owner := n.uid == iv.cred.Uid
	switch {
	case iv.privileged():
	case uid != -1 && (!owner || uint32(uid) != n.uid):
		return unix.EPERM
	case gid != -1 && (!owner || uint32(gid) != n.gid && !iv.inGroup(uint32(gid))):
		return unix.EPERM
	}
	var drop uint32
	if n.typ != fsvirt.Dir {
		drop = iv.dropIDs(n)
	}
	if drop != 0 && !iv.owns(n) {
		return unix.EPERM
	}
	return 0
}

// owned gives n, new in dir, the caller's fsuid and its fsgid, or dir's group when dir is
// set-group-ID (where a new directory is set-group-ID too).
func (iv *invocation) owned(dir, n *node) *node {
	n.uid, n.gid = iv.cred.Uid, iv.cred.Gid
	if dir.mode&unix.S_ISGID != 0 {
		n.gid = dir.gid
		if n.typ == fsvirt.Dir {
			n.mode |= unix.S_ISGID
		}
	}
	return n
}
