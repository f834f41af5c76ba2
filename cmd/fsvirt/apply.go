package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"

	"github.com/fsvirt/fsvirt/impl"
	"github.com/fsvirt/fsvirt/internal/layer"
)

const applyUsage = `Usage: fsvirt apply [--dry-run] [--json] [--root DIR] LAYER

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
  --json        print one line of JSON on stdout instead, whatever the outcome: "schema" (1),
                "outcome" (applied, would_apply, refused, failed), "exit_status", "error",
                "dry_run", "root", "changes" (kind "added", "modified" or "deleted", and
                path) and "conflicts" (path, reason). docs/json.md describes it;
                docs/fsvirt-apply.schema.json is its JSON Schema.
  --root DIR    apply under DIR instead of "/": the layer's /etc/motd goes to DIR/etc/motd. In a
                copy of the tree, files are recognized by their metadata and data digest.

Exit status: 0 applied (or would apply), 1 refused for conflicts, 125 another failure.

Example:
  fsvirt run --keep /tmp/l -- sh -c 'echo changed >> /etc/motd'
  fsvirt apply --dry-run /tmp/l && fsvirt apply /tmp/l
`

// applySummary is apply's --json output (docs/json.md, docs/fsvirt-apply.schema.json).
type applySummary struct {
	Schema int `json:"schema"`
	// Outcome is "applied", "would_apply" (--dry-run, no conflict), "refused" (conflicts, exit
	// status 1) or "failed" (125, Error says why).
	Outcome    string         `json:"outcome"`
	ExitStatus int            `json:"exit_status"`
	Error      string         `json:"error,omitempty"`
	DryRun     bool           `json:"dry_run"`
	Root       string         `json:"root"`
	Changes    []change       `json:"changes"`   // the layer's, from Root
	Conflicts  []conflictJSON `json:"conflicts"` // empty unless refused
}

func cmdApply(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dry := fs.Bool("dry-run", false, "")
	root := fs.String("root", "/", "")
	asJSON := fs.Bool("json", false, "")
	err := applyCmd(fs, args, dry, root, stdout, stderr, asJSON)
	if *asJSON && err != nil && !errors.Is(err, errHelp) {
		var ee exitError
		if !errors.As(err, &ee) { // a refusal wrote its JSON already
			s := applySummary{Schema: jsonSchema, Outcome: "failed", ExitStatus: impl.ExitFailure, Error: oneLine(err),
				DryRun: *dry, Root: *root, Changes: []change{}, Conflicts: []conflictJSON{}}
			writeJSON(stdout, s)
		}
	}
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// errHelp: --help was printed.
var errHelp = errors.New("help")

func writeJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "%s\n", b)
}

func applyCmd(fs *flag.FlagSet, args []string, dry *bool, root *string, stdout, stderr io.Writer, asJSON *bool) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, applyUsage)
				return errHelp
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
		return fmt.Errorf("apply: want one LAYER directory, got %d arguments (usage: fsvirt apply [--dry-run] [--json] [--root DIR] LAYER)", len(pos))
	}
	rec, err := layer.Apply(pos[0], layer.Options{Root: *root, DryRun: *dry})
	s := applySummary{Schema: jsonSchema, DryRun: *dry, Root: *root, Changes: []change{}, Conflicts: []conflictJSON{}}
	if rec != nil {
		for _, c := range rec.Changes {
			s.Changes = append(s.Changes, change{Kind: c.Kind, Path: path.Join(*root, c.Path)})
		}
	}
	var ce *layer.ConflictError
	if errors.As(err, &ce) {
		fmt.Fprintf(stderr, "fsvirt: apply: %s: refused, nothing changed: %d conflict(s):\n", pos[0], len(ce.Conflicts))
		for _, c := range ce.Conflicts {
			fmt.Fprintf(stderr, "  %s: %s\n", c.Path, c.Why)
			s.Conflicts = append(s.Conflicts, conflictJSON{Path: c.Path, Reason: c.Why})
		}
		if *asJSON {
			s.Outcome, s.ExitStatus = "refused", 1
			writeJSON(stdout, s)
		}
		return exitError{1}
	}
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	switch {
	case *asJSON:
		s.Outcome = "applied"
		if *dry {
			s.Outcome = "would_apply"
		}
		writeJSON(stdout, s)
	case *dry:
		for _, l := range layer.Diff(rec, *root) {
			fmt.Fprintln(stdout, l)
		}
	}
	return nil
}
