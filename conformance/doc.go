// Package conformance checks implementations of per-invocation copy-on-write
// views, fsvirt's or anyone's, against a language-agnostic suite of cases.
//
// A case (testdata/cases/*.json, format in [driver.Case]) is a starting tree,
// the script of one or more runs, and what some ops must observe. The driver
// ([driver.Run], or the fsvirt-conform-driver program) performs a script with
// real system calls and prints one JSON line per op. For every case, a [Suite]
//
//   - runs the script on a private full copy of the tree (the reference, [Copy]),
//   - runs it in the implementation under test, in a view of the shared tree,
//   - requires the same observations and the case's expectations in both,
//   - and requires the shared tree unchanged: contents, modes, owners, link
//     counts, modification and change times.
//
// Cases with several runs run them at once, ordered by signal and wait, and
// expect each run not to see the other's changes; a sequential case runs them
// one after the other. [None], no isolation at all, must fail them.
//
// An implementation is an [Impl]: a command prefix ([Command]: "fsvirt run
// --tree {dir} --", an overlayfs mount in a mount namespace, bubblewrap), or a
// Go function runner ([InProcess]: fsvirt's thread mode). [Run] checks a Go
// implementation from a test; `fsvirt conformance` checks the built-in ones
// ([Builtins]) and any command prefix. docs/conformance.md has the comparison
// table.
//
// A Suite checks one case at a time: it owns the shared directory and
// rebuilds it for every case.
package conformance
