// Package fuzz holds fsvirt's fuzz targets, in its tests: go test -fuzz on the
// engine in thread mode, each input checked against the copy oracle, and
// on process mode, checked against the kernel on a private copy and against
// a shared tree that must not change.
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
//   - FuzzRacingThread: a process-mode run whose second thread rewrites the
//     first one's path buffers, dup2()s descriptors and flips symlinks while
//     the first one's calls that can change something are in flight; the
//     shared tree and another view must not change, whatever the calls
//     return.
//   - FuzzProcessTree: programs of processes that start children,
//     intermediates that exit at once, and subshells, and make path calls
//     from every level, run in process mode and natively on a private copy:
//     the transcripts must be the same.
//   - FuzzCreds: op sequences as nobody with a supplementary group, and as
//     root after a switch, over a tree of both users' files (sticky,
//     set-group-ID and private directories): refusals, and the owners of new
//     files, must be the kernel's. The worker thread itself holds the
//     credentials. Needs root.
//
// In all but FuzzRacingThread and FuzzProcessTree, every op whose outcome the model defines
// ([model.Model.Defined]) must have the oracle's outcome, errno included, or the model's on a
// stale fd ([propcheck.Step]). An O_PATH open that the engine answers with an
// ordinary descriptor must be one the kernel could not have made by the
// caller's path (the README's limits); I/O on that descriptor is not
// compared. After every input the engine's view must probe the same
// as the oracle's, the shared tree must be what it was, the store must be
// empty, no fd may be left open, and the canary, a file next to the tree,
// must be unchanged.
//
// Each target builds one pool (one worker) per process and rebuilds the
// shared tree in place for every input; the last two run this test binary
// as their programs' processes (TestMain). go test ./fuzz replays the
// corpus under testdata/fuzz, and the kernel matrix does on every kernel;
// scripts/fuzz.sh runs the targets for a while each, here or in a VM
// (docs/fuzzing.md).
package fuzz
