package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/fsvirt/fsvirt/impl"
)

const runUsage = `Usage: fsvirt run [flags] -- CMD [ARGS...]

Runs CMD and every process it starts in one fresh private view. The view ends when the last of
them has exited; then its private layer is discarded (after --diff, --json and --keep report it).

Flags:
  --tree PATH     virtualize only this tree (repeatable). Default "/", with /proc, /sys and /dev
                  passed through untouched, except /dev/shm, which is private like the rest.
                  Outside the trees, files are the host's own.
  --store DIR     the directory that holds the user's store root, DIR/fsvirt-UID (made 0700 if
                  missing), in which every run and pool of the user keeps its private layers.
                  Default DIR: $TMPDIR, else /var/tmp. The store root must be a directory of
                  this user's that nobody else can write. No view sees it: paths into it fail
                  with ENOENT, and a view in whose tree DIR lies lists DIR without it.
  --policy P      "fast" (default): read-only opens of unchanged files go straight to the kernel.
                  "strict": fsvirt performs every open itself (see the README's threat model).
  --diff          on exit, print one line per changed path to stderr: "A PATH" added,
                  "M PATH" modified, "D PATH" deleted.
  --keep DIR      before cleanup, write the private layer to DIR as an OCI image layer changeset
                  (.wh.NAME whiteouts, parents with their modes; impl/keep.go). DIR must be
                  missing or empty: checked before CMD runs.
  --json          on exit, print a machine-readable summary to stderr: exit status, changes,
                  intercepted calls per syscall, copy-ups, bytes copied.

Exit status: CMD's own (128+N when killed by signal N); 125 when fsvirt fails, 126 when CMD
cannot be executed, 127 when CMD is not found.

Example:
  fsvirt run -- sh -c 'echo changed >> /etc/motd; cat /etc/motd'
`

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		trees  stringList
		store  = fs.String("store", "", "")
		policy = fs.String("policy", "fast", "")
		diff   = fs.Bool("diff", false, "")
		keep   = fs.String("keep", "", "")
		asJSON = fs.Bool("json", false, "")
	)
	fs.Var(&trees, "tree", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, runUsage)
			return nil
		}
		return fmt.Errorf("run: %v (see fsvirt run --help)", err)
	}
	pol, err := impl.ParsePolicy(*policy)
	if err != nil {
		return fmt.Errorf("run: --policy: %v", err)
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		return errors.New("run: no command given (usage: fsvirt run [flags] -- CMD [ARGS...])")
	}
	path, err := exec.LookPath(cmd[0])
	if err != nil {
		code := impl.ExitNotFound
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EISDIR) {
			code = impl.ExitCannotRun
		}
		fmt.Fprintf(stderr, "fsvirt: %s: %v\n", cmd[0], unwrapExec(err))
		return exitError{code}
	}
	res, err := impl.Run(ctx, impl.RunConfig{
		Trees: trees, Store: *store, Policy: pol,
		Path: path, Args: cmd,
		Keep: *keep, Reap: true, ForwardSignals: true,
	})
	if res != nil {
		report(stderr, res, *diff, *asJSON)
	}
	if err != nil {
		return err
	}
	if res.ExitStatus != 0 {
		return exitError{res.ExitStatus}
	}
	return nil
}

func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		if errors.Is(ee.Err, exec.ErrNotFound) {
			return errors.New("command not found")
		}
		return ee.Err
	}
	return err
}

// summary is the --json output.
type summary struct {
	ExitStatus  int            `json:"exit_status"`
	Changes     []change       `json:"changes"`
	Calls       map[string]int `json:"calls"`
	CopyUps     int            `json:"copy_ups"`
	BytesCopied int64          `json:"bytes_copied"`
}

type change struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
}

func report(w io.Writer, res *impl.Result, diff, asJSON bool) {
	if diff {
		for _, c := range res.Changes {
			fmt.Fprintf(w, "%c %s\n", c.Kind, c.Path)
		}
	}
	if asJSON {
		s := summary{ExitStatus: res.ExitStatus, Changes: []change{}, Calls: res.Stats.Calls,
			CopyUps: res.Stats.CopyUps, BytesCopied: res.Stats.BytesCopied}
		for _, c := range res.Changes {
			s.Changes = append(s.Changes, change{Kind: string(c.Kind), Path: c.Path})
		}
		b, _ := json.Marshal(s)
		fmt.Fprintf(w, "%s\n", b)
	}
}

// oneLine folds a (possibly multi-error) message onto one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
