package impl

import "os"

// This program re-executes itself (/proc/self/exe) in two roles, named by argv[0]:
//
//   - fsvirt-init (initArg0, initRole): the first task of a view, which loads the filter on its
//     thread, hands the listener to its parent and executes the command. Run, Invocation.Start
//     and warm workers start processes this way.
//   - fsvirt-load (loadArg0, loadRole): a process in a view that loads a named layer into it
//     (RunConfig.Layer, Invocation.LoadLayer).
//
// The roles are taken in an init function, not by a call that main makes, because the program
// that re-executes itself is any program that links this package and starts a command in a view:
// fsvirt's CLI, test binaries, and programs that embed the engine. An explicit call would have to
// come first in each of their mains, and in a TestMain in each such test package. A program that
// lacked it would not fail at once: the re-executed copy would run its own main with fsvirt-init's
// arguments, outside any view (a test binary would run its tests again), and the parent would
// report an error only when that copy exited. In init, the role is taken before the init of any
// package that imports this one and before main, which could otherwise do anything (parse flags,
// start goroutines) before the command's filter is loaded. A program started with any other
// argv[0] only pays the comparison below.
func init() {
	if len(os.Args) == 0 {
		return
	}
	switch os.Args[0] {
	case initArg0:
		initRole()
	case loadArg0:
		loadRole()
	}
}
