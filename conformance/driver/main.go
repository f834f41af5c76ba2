package driver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `Usage: fsvirt-conform-driver [--root DIR] [--run N] [--sync DIR] CASEFILE

Performs run N (default 0) of the conformance case in CASEFILE ("-": standard input) with real
system calls on the tree at DIR (default: the working directory), and prints one JSON line per
op, then a "tree" line listing the view. Exit status 0 when the script ran, whatever its ops
returned; 1 when it could not run; 2 on a usage or case error.
`

// Main is the standalone driver: it parses args (without the program name)
// as usage says, runs the script and returns the exit status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fsvirt-conform-driver", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	root := fs.String("root", ".", "")
	runIdx := fs.Int("run", 0, "")
	sync := fs.String("sync", os.TempDir(), "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "fsvirt-conform-driver: %v\n%s", err, usage)
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var (
		c   *Case
		err error
	)
	if file := fs.Arg(0); file == "-" {
		var data []byte
		if data, err = io.ReadAll(stdin); err == nil {
			c, err = ParseCase("stdin", data)
		}
	} else {
		c, err = LoadCase(file)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fsvirt-conform-driver: %v\n", err)
		return 2
	}
	if err := Run(ctx, Args{Root: *root, Sync: *sync, Case: c, Run: *runIdx}, stdout); err != nil {
		fmt.Fprintf(stderr, "fsvirt-conform-driver: %v\n", err)
		return 1
	}
	return 0
}
