// Package model is a pure model of the copy-on-write view: no syscalls, just
// a tree of nodes. It predicts the [fsvirt.Outcome] of every op and how the
// view serves it ([Decision]): from the shared tree, from the invocation's
// private layer, or after copying a file up into that layer.
//
// State: the shared tree, whose nodes no op changes; per invocation, its
// view: directories of its own, made from the shared ones at Begin, whose
// entries point at shared files until the invocation copies them up, and at
// the files, directories, symlinks and FIFOs it made; its working directory;
// its open-files table (per handle: the node the fd refers to, offset and
// flags); and the shared files its view no longer shows (copied up,
// unlinked, renamed over), which fds opened before still read.
//
// Names resolve as Linux resolves them, in the view: symlinks, ".", "..",
// trailing slashes, at most 40 symlinks, "/" and the starting working
// directory at the tree root. A handle or the working directory keeps its
// directory when it is renamed or removed; ".." from a removed directory is
// its old parent, and nothing can be looked up or made in it. '..' at the
// root stays there, as in a chroot; ops that do so are not [Model.Defined],
// because the engine, which runs without a chroot, would leave the tree.
//
// Copy-up: a shared regular file or symlink is copied into the private
// layer exactly once, by the first op that succeeds in writing its data or
// metadata: an open for writing or with O_TRUNC, truncate, chmod, chown,
// utimensat, setxattr, removexattr, or link (the new name shares the private
// copy). Rename and unlink copy nothing: a renamed shared file keeps being
// the shared file, and an unlinked one is only hidden. Directories are never
// counted: the invocation has its own from the start; one whose entries or
// metadata it changed is "touched".
//
// Stale fds (see [Decision]): a file fd opened on a shared file keeps the
// shared file after a copy-up or unlink; a directory fd opened on an
// untouched directory lists the shared directory's entries, and fstat shows
// the shared directory, for the rest of its life, while ops relative to it
// resolve in the live view. A chroot copy or overlayfs differs there; the
// model is the specification.
//
// Credentials: each invocation runs as one user, with a group and
// supplementary groups ([fsvirt.Cred], [Model.SetCred]; at Begin the owner
// [Model.WithOwner] gave, root by default), and the model refuses what the
// kernel refuses that user (docs/kernel.md, "Credentials are per thread"):
// search permission on every directory a path walks; opens by the access
// they ask for; creation and removal without write and search permission on
// the directory, or of another's name in a sticky one; chmod, explicit
// utimensat times and chown by another than the owner; the owner's chown to
// a group it is not in; user.* xattrs without write (read, for getxattr)
// permission, and on another's sticky directory. A new file belongs to the
// caller, with the group of a set-group-ID directory, where a new directory
// is set-group-ID too. Writes, truncations and chown by a caller without
// CAP_FSETID clear set-user-ID, and set-group-ID where the group may execute
// or is not the caller's. Uid 0 holds root's capabilities: only X_OK on a
// non-directory without an execute bit is refused it, and its chown clears
// set-user-ID and executable set-group-ID of a non-directory.
// fs.protected_hardlinks and fs.protected_symlinks are followed as
// [Model.WithSysctls] says.
//
// A Model is not safe for concurrent use.
package model
