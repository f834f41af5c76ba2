package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/fsvirt/fsvirt/internal/layer"
)

const applyUsage = `Usage: fsvirt apply [--dry-run] [--root DIR] LAYER

Writes a layer that 'fsvirt run --keep' or '--layer' made into the real tree: every file the
command added or modified, with its mode, owner, extended attributes and times, symlinks, hard
links, and the deletions (whiteouts, opaque directories). Each file is written beside its place
and renamed into place: a killed apply leaves every file whole, as it was or as the layer has it,
and running it again completes it.

Before changing anything, apply compares every file the layer modifies or deletes with what the
command's view found when it first changed it (size, times, owner, mode, inode, and a digest of
its data), and every file it adds with nothing being there; if any differs, it names them and
changes nothing (exit status 1). A path that already is as the layer has it is no conflict.

Flags:
  --dry-run     check, and print what would change in --diff's format ("A PATH" added,
                "M PATH" modified, "D PATH" deleted); change nothing.
  --root DIR    apply under DIR instead of "/": the layer's /etc/motd goes to DIR/etc/motd. In a
                copy of the tree, files are recognized by their metadata and data digest.

Exit status: 0 applied (or would apply), 1 refused for conflicts, 125 another failure.

Example:
  fsvirt run --keep /tmp/l -- sh -c 'echo changed >> /etc/motd'
  fsvirt apply --dry-run /tmp/l && fsvirt apply /tmp/l
`

func cmdApply(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dry := fs.Bool("dry-run", false, "")
	root := fs.String("root", "/", "")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, applyUsage)
				return nil
			}
			return fmt.Errorf("apply: %v (see fsvirt apply --help)", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		return fmt.Errorf("apply: want one LAYER directory, got %d arguments (usage: fsvirt apply [--dry-run] [--root DIR] LAYER)", len(pos))
	}
	rec, err := layer.Apply(pos[0], layer.Options{Root: *root, DryRun: *dry})
	var ce *layer.ConflictError
	if errors.As(err, &ce) {
		fmt.Fprintf(stderr, "fsvirt: apply: %s: refused, nothing changed: %d conflict(s):\n", pos[0], len(ce.Conflicts))
		for _, c := range ce.Conflicts {
			fmt.Fprintf(stderr, "  %s: %s\n", c.Path, c.Why)
		}
		return exitError{1}
	}
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if *dry {
		for _, l := range layer.Diff(rec, *root) {
			fmt.Fprintln(stdout, l)
		}
	}
	return nil
}
