// Package driver is the conformance suite's driver: it reads a case
// ([Case], the JSON file format) and performs one of its scripts with real
// system calls inside a directory, printing one JSON line ([Observation]) per
// op and a last one listing the whole view.
//
// The same code runs as a program (cmd/fsvirt-conform-driver, or the hidden
// `fsvirt conformance driver`), inside any implementation that runs a command
// in a private view, and as a Go function ([Run]) inside one that runs
// functions, such as fsvirt's thread mode: it makes every system call on the
// calling goroutine and starts no other.
//
// Paths in a script are relative to the root directory: "/a/f" and "a/f" both
// name ROOT/a/f, and an absolute symlink target is stored with the root in
// front and read back without it, so that observations do not depend on
// where the tree is.
package driver
