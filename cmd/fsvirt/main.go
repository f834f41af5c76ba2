// Command fsvirt runs programs in a private copy-on-write view of the file system.
//
// See `fsvirt --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(exitCode(err, os.Stderr))
}

// exitError carries an exit status that is not a failure of fsvirt itself (the command's own).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitCode prints a failure as one line and maps it to an exit status: the command's own, or 125
// when fsvirt failed, as env(1) does.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stderr, "fsvirt: %v\n", oneLine(err))
	return 125
}

const usage = `fsvirt runs programs in a private copy-on-write view of the file system.

Reads of files the program never changed go to the shared file system; the first write to a file
copies it into a private layer, where all later access goes; when the program ends, the private
layer is discarded. Nothing the program does reaches the shared tree.

Usage:
  fsvirt run [flags] -- CMD [ARGS...]   run CMD and all its children in one private view
  fsvirt apply [--dry-run] [--json] [--root DIR] LAYER
                                        write a kept layer into the real tree, refusing conflicts
  fsvirt serve [flags] -- CMD [ARGS...] keep CMD warm in --workers processes behind an HTTP
                                        gateway; every request gets a fresh view (--help)
  fsvirt syscalls [--json]              print the syscall table: how each syscall is handled
  fsvirt features                       print the kernel features fsvirt found and will use
  fsvirt bench [flags]                  measure fsvirt against other isolation modes (--help)
  fsvirt conformance [flags]            check fsvirt, or another implementation, against the conformance suite
  fsvirt help [COMMAND]                 show help

Run 'fsvirt run --help' for the flags of run.
Exit status: CMD's own (128+N when signal N killed it); 125 when fsvirt itself fails,
126 when CMD cannot be executed, 127 when CMD is not found.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given (see fsvirt --help)")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "apply":
		return cmdApply(ctx, args[1:], stdout, stderr)
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr)
	case "syscalls":
		return cmdSyscalls(args[1:], stdout)
	case "features":
		return cmdFeatures(args[1:], stdout)
	case "bench":
		return cmdBench(ctx, args[1:], stdout, stderr)
	case "conformance":
		return cmdConformance(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q (see fsvirt --help)", args[0])
}
