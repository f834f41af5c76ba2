// Package oracle runs [fsvirt.Op]s for real, so that the model and the engine
// can be compared with what the kernel does. Each invocation gets a private
// tree of its own at Begin, removed at End:
//
//   - [NewCopy]: a full copy of the shared tree, the isolation a
//     per-invocation chroot gives;
//   - [NewOverlay]: a kernel overlayfs mount with the shared tree as lower
//     layer and an empty upper layer (root only), mounted with
//     redirect_dir=on.
//
// Neither ever writes to the shared tree. Ops are issued with
// [sysexec.Exec], so absolute paths and absolute symlink targets are
// relative to the private tree, on a thread of the invocation's own whose
// working directory is the private tree's root, and which [Oracle.SetCred]
// gives other credentials ([sysexec.SetCred]; root only).
//
// # Where the oracles legitimately differ
//
// From each other, in fields that [fsvirt.Stat] leaves out:
//
//   - st_ino and st_dev: a copy has its own inodes from the start; on
//     overlayfs a file keeps the lower inode number until it is copied up,
//     then takes the upper one (without xino, st_dev differs too); d_ino in
//     a listing follows the same rules;
//   - directory st_size, and all times: a copy has the time of the copy; a
//     copied-up file keeps mtime; directories' mtimes move with their
//     entries.
//
// And where the overlay oracle adapts what overlayfs reports:
//
//   - st_nlink of directories: overlayfs reports 1 for a merged directory
//     (one with an upper part: made when anything under it is copied up or
//     created, or when it is renamed), and 2 for a removed one where a copy
//     reports 0. The overlay oracle counts the subdirectories of a listing
//     instead, and reports 0 when the listing fails with ENOENT;
//   - listxattr: overlayfs hides its trusted.overlay.* names from the list
//     but counts them against the buffer, so that a small buffer fails with
//     ERANGE, and a size query (size 0) reports more than the list holds, on
//     any copied-up file or merged directory. The overlay oracle lists into
//     a large buffer and sizes the visible names;
//   - rename of a directory of the lower layer fails with EXDEV without
//     redirect_dir=on, which the oracle therefore sets;
//   - O_TMPFILE relative to an fd of a removed directory fails with
//     ENOTDIR when the directory came from the lower layer, EPERM on ext4;
//     the model leaves it undefined;
//   - an op that fails after overlayfs copied its file up (setxattr with
//     XATTR_REPLACE of a missing name, say) leaves the copy; invisible but
//     for inode numbers.
//
// The sysexec executor also hides, for all trees, what depends on the file
// system rather than the view: getdents order (listings are sorted sets),
// the directory offset after a listing (rewound), listxattr order (sorted).
//
// From the view (the model and the engine), by decision:
//
//   - an fd opened read-only on a shared file before the invocation copies
//     it up or unlinks it: in a copy it is the same file, and overlayfs
//     (Linux 4.19 and later) reopens the upper file under it, so both show
//     later writes (and a copy st_nlink 0 after an unlink); the view's fd
//     keeps the shared file (docs/kernel.md, "Descriptors opened before a copy-up");
//   - a directory fd opened before the invocation changed that directory's
//     entries or metadata: a copy lists the live directory; overlayfs
//     caches a merged directory's listing at the first getdents but
//     rebuilds it on a rewind once the directory changed, so it lists the
//     live directory too; the view's fd lists the shared directory's
//     entries, and its fstat shows the shared directory, for the rest of its
//     life, like an overlayfs readdir cache that is never refreshed. Ops
//     relative to such an fd resolve in the live view in all three;
//   - the model marks such ops [model.Decision].Stale and the state machine
//     compares them with the model;
//   - '..' at the root leaves the private tree here, where a chroot would
//     stay at its root; the state machine issues no such op.
//
// O_TMPFILE on overlayfs needs Linux 6.6. An open with O_CREAT|O_DIRECTORY
// fails with EINVAL in both oracles, as Linux 6.4 (43b450632676) and the
// model have it, also on kernels without that change (Debian's 5.10), which
// resolve the path and may create a regular file.
package oracle
