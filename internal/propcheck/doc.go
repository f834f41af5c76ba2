// Package propcheck is the state machine that checks one [fsvirt.FS] against
// another with rapid: random sequences of every [fsvirt.OpKind] (opens and fd
// operations, path stat and access, readlink, listings, chdir, mkdir, unlink
// and rmdir, rename with its flags, hard and symbolic links, chmod, chown,
// truncate, utimensat, mknod, xattrs) by several interleaved invocations,
// over a small alphabet of names, from the working directory or a handle.
// Now and then one invocation takes a burst of steps with no check in
// between: it adds a name to a directory of the shared tree, then removes or
// moves names there, then lists it. The check lists every directory, so a
// view that completes a directory's listing only when something needs it
// (the engine's partial directories) would otherwise never meet a step with
// one it has not completed.
//
// With [Options].Creds, invocations run as other users: each begins as one
// drawn from the list (root and [Nobody], with a supplementary group, in
// [CredTree]'s runs), and switches now and then ([fsvirt.CredSetter]); the
// chown ops give files to those users too. [CredTree] holds files and
// directories of root and of nobody with modes that let some callers in and
// keep others out (a sticky world-writable directory, a set-group-ID one,
// one only root may enter), so that the kernel's refusals, and the owners of
// new files, are compared. The probe of the invariant runs as the
// invocation's user: it sees what that user may.
//
// [Run] drives a system under test (sut) and a reference (ref) in lockstep,
// together with a shadow [model.Model] that says which ops have a defined
// outcome (no '..' above the root, no lseek in a directory, no FIFO opened
// but with O_PATH), which ops use a stale fd (a file fd opened read-only
// before a copy-up or unlink, a directory fd opened before its directory
// changed; the model, not the reference, is the specification there) and
// how many copy-ups each invocation should have made. It is used three ways:
//
//  1. model vs oracle (this package's tests, with the copy and the overlayfs
//     oracles);
//  2. engine vs oracle;
//  3. engine vs model: outcomes, and copy-up counts against the model's
//     decisions (when the sut implements [fsvirt.CopyUpCounter]).
//
// Invariants after every step (after a burst as a whole): both shared trees
// equal the initial tree; every live invocation's view, probed by walking it
// from the root (lstat, listing, content, symlink target and xattrs of every
// entry) and by getcwd, is the same in sut and ref; copy-up counts agree.
// After the run, every invocation has ended without leaving anything, and the
// process has no more fds than before.
//
// # Budget
//
// The tests run rapid's default budget, 100 cases of about 30 steps, unless
// -short divides it. Run them longer with rapid's flags or variables, for
// instance
//
//	go test ./internal/propcheck -rapid.checks=5000 -rapid.steps=100
//	RAPID_CHECKS=5000 RAPID_STEPS=100 go test ./internal/propcheck
//
// or fuzz them: go test ./internal/propcheck -fuzz=FuzzModelVsCopy.
//
// A failing case is shrunk and written to testdata/rapid/<TestName>/ in the
// test's package directory; rapid replays every file there before searching
// for new cases, so a committed file is a regression test. A fail file holds
// the steps up to the failure only: once the bug is fixed, rapid replays those
// steps (a mismatch among them still fails the test), then logs that the file
// "is no longer valid" because the sequence ran out of recorded data. Files
// recorded before a change to the generators decode to other steps.
package propcheck
