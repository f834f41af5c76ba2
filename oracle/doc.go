// Package oracle runs [fsvirt.Op]s for real, so that the model and the engine
// can be compared with what the kernel does. Each invocation gets a private
// tree of its own at Begin, removed at End:
//
//   - [NewCopy]: a full copy of the shared tree, the isolation a
//     per-invocation chroot gives;
//   - [NewOverlay]: a kernel overlayfs mount with the shared tree as lower
//     layer and an empty upper layer (root only).
//
// Neither ever writes to the shared tree. Ops are issued with
// [sysexec.Exec], so absolute paths are relative to the private tree.
//
// # Where the oracles legitimately differ
//
// From each other, in fields that [fsvirt.Stat] leaves out:
//
//   - st_ino and st_dev: a copy has its own inodes from the start; on
//     overlayfs a file keeps the lower inode number until it is copied up,
//     then takes the upper one (without xino, st_dev differs too);
//   - directories: overlayfs reports st_nlink 1 for a merged directory (one
//     with an upper part, made when a file under it is copied up or
//     created), and its own st_size;
//   - times: a copy has the time of the copy; a copied-up file keeps mtime.
//
// From the view (the model and the engine):
//
//   - an fd opened read-only before the invocation copies its file up: in a
//     copy it is the same file, and overlayfs (Linux 4.19 and later) reopens
//     the upper file under it, so both show later writes; the view's fd
//     keeps reading the shared file (KERNEL.md, trap 10). The model marks
//     such ops [model.Decision].Stale and the state machine compares them
//     with the model;
//   - '..' at the root leaves the private tree here, where a chroot would
//     stay at its root; the state machine issues no such op.
//
// O_TMPFILE on overlayfs needs Linux 6.6.
package oracle
