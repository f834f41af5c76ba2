// Package fuzz holds fsvirt's fuzz targets, in its tests: go test -fuzz on the
// engine in thread mode, each input checked against the copy oracle.
//
//   - FuzzOpenatFlags: one openat with any 32-bit flags, mode and path over a
//     small tree, after a few ops that put the tree in an interesting state,
//     then ops on the new fd.
//   - FuzzRelativeDirfds: op sequences that open directories (shared,
//     private, copied up later, removed later), chdir and fchdir, and operate
//     relative to them.
//   - FuzzSymlinks: trees of symlink chains, loops, relative targets with
//     ".." components and trailing slashes, absolute targets made in the
//     view, paths that leave the --tree and come back in, paths through
//     /proc/self/fd, and paths into the store.
//   - FuzzCreds: op sequences as nobody with a supplementary group, and as
//     root after a switch, over a tree of both users' files (sticky,
//     set-group-ID and private directories): refusals, and the owners of new
//     files, must be the kernel's. The worker thread itself holds the
//     credentials. Needs root.
//
// Every op whose outcome the model defines ([model.Model.Defined]) must have
// the oracle's outcome, errno included, or the model's on a stale fd
// ([propcheck.Step]). An O_PATH open that the engine answers with an
// ordinary descriptor must be one the kernel could not have made by the
// caller's path (the README's limits); I/O on that descriptor is not
// compared. After every input the engine's view must probe the same
// as the oracle's, the shared tree must be what it was, the store must be
// empty, no fd may be left open, and the canary, a file next to the tree,
// must be unchanged.
//
// Each target builds one pool (one worker) per process and rebuilds the
// shared tree in place for every input. go test ./fuzz replays the corpus
// under testdata/fuzz; scripts/fuzz.sh runs the targets for a while each.
package fuzz
