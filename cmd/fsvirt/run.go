package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/fsvirt/fsvirt/impl"
	"github.com/fsvirt/fsvirt/internal/layer"
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
                  (data, modes, owners, times, xattrs; .wh.NAME whiteouts, .wh..wh..opq opaque
                  directories, parents with their modes), with the record .wh..wh..fsvirt of
                  what each changed shared file was when the command first changed it, which
                  'fsvirt apply DIR' checks against (docs/layers.md). DIR must be missing or
                  empty: checked before CMD runs.
  --layer DIR     a named layer: start from the changes kept in DIR (made if missing), and save
                  the view's changes, those included, back into DIR when the run ends, whatever
                  CMD's exit status; successive runs accumulate, like a persistent overlay upper
                  directory. The save is atomic: a killed run leaves DIR as it was or as the run
                  left it. A lock (DIR.lock beside it) refuses a second run on DIR meanwhile.
                  Not with --keep.
  --apply         after CMD exited 0, write its changes (with --layer, the layer's) into the real
                  tree as 'fsvirt apply' does: refused, with the paths named and nothing written,
                  when a file the command changed has changed in the tree since (exit 125).
  --max-bytes SIZE
                  bound the private layer's file data to SIZE bytes of allocated blocks (a
                  number with an optional k, M, G or T suffix, powers of 1024). The write,
                  copy-up or fallocate that would pass it fails with ENOSPC, and nothing is left
                  half-copied. Sparse files count by the blocks they use.
  --max-files N   bound the private layer to N files, directories and symlinks, the
                  directories made to hold a changed file's path included; past it, creation
                  fails with ENOSPC.
                  With either limit the private layer is a tmpfs of its own (in memory). Mounting
                  it needs CAP_SYS_ADMIN: for another user than root, fsvirt runs itself in a
                  user and mount namespace of its own, where the command sees other users'
                  files as owned by 65534 (nobody); see the README's "Limits".
  --min-free SIZE without --max-bytes and --max-files, the free space to keep on the file system
                  that holds the store (default: 5% of it, at most half of what is free when
                  the run starts; 0: none). Under it, calls that would make the private layer
                  grow (create, open for writing, copy up) fail with ENOSPC; once half of it is
                  gone too, through writes to files the command already had open, fsvirt kills
                  the command and says so. It counts what other programs use of that file
                  system too: it protects the host, it does not bound the layer.
  --json          on exit, print a machine-readable summary to stderr, one line of JSON, for
                  every outcome: "schema" (1), "outcome" (exited, signaled, not_run, failed),
                  "exit_status", "signal", "error" (why fsvirt failed, or could not run CMD),
                  "changes" (kind "added", "modified" or "deleted", and path), intercepted
                  "calls" per syscall, "copy_ups", "bytes_copied", the private layer's "usage"
                  and "limits", "keep", "layer", and "apply" (applied, conflicts).
                  docs/json.md describes it; docs/fsvirt-run.schema.json is its JSON Schema.
  --json-fd N     write the same summary to descriptor N (which must be open) instead.
  --json-file PATH
                  write the same summary to PATH instead (written aside and renamed into
                  place). --json, --json-fd and --json-file can be given together.

Exit status: CMD's own (128+N when killed by signal N); 125 when fsvirt fails, 126 when CMD
cannot be executed, 127 when CMD is not found.

Environment:
  FSVIRT_CPUPROFILE=FILE  write a CPU profile of fsvirt itself, the supervisor, to FILE
                  (go tool pprof FILE); the command is not in it. The threads that answer
                  calls block signals while they answer, SIGPROF too, so their time shows up
                  as the rt_sigprocmask that unblocks it; perf record -g sees where it goes.

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
		named  = fs.String("layer", "", "")
		apply  = fs.Bool("apply", false, "")
		asJSON = fs.Bool("json", false, "")
		jsonFD = fs.Int("json-fd", -1, "")
		jsonTo = fs.String("json-file", "", "")
		limits impl.Limits
	)
	limitFlags(fs, &limits)
	fs.Var(&trees, "tree", "")
	s := summary{Schema: jsonSchema, Changes: []change{}}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, runUsage)
			return nil
		}
		err = fmt.Errorf("run: %v (see fsvirt run --help)", err)
		if out, oerr := newJSONOut(*asJSON, *jsonFD, *jsonTo, stderr); oerr == nil {
			out.emit(&s, nil, err) // the JSON flags before the bad one
		}
		return err
	}
	out, err := newJSONOut(*asJSON, *jsonFD, *jsonTo, stderr)
	if err != nil {
		err = fmt.Errorf("run: %v (see fsvirt run --help)", err)
		if out, oerr := newJSONOut(*asJSON, -1, "", stderr); oerr == nil {
			out.emit(&s, nil, err)
		}
		return err
	}
	if wantsUserNamespace(limits) { // the fsvirt started there reports, --json included
		err := reexecInUserNamespace(append([]string{"run"}, args...), max(*jsonFD, 2))
		if _, ok := err.(exitError); err != nil && !ok {
			out.emit(&s, nil, err)
		}
		return err
	}
	s.Keep, s.Layer = *keep, *named
	if limits.Bytes > 0 || limits.Files > 0 {
		s.Limits = &limitsJSON{Bytes: limits.Bytes, Files: limits.Files}
	}
	res, err := execute(ctx, fs.Args(), trees, *store, *policy, limits, *keep, *named, *apply, *diff, stderr, &s)
	out.emit(&s, res, err)
	return err
}

// execute runs the command as cmdRun's flags say, and fills s with what --json reports of it
// but its outcome, which cmdRun adds.
func execute(ctx context.Context, cmd []string, trees []string, store, policy string, limits impl.Limits,
	keep, named string, apply, diff bool, stderr io.Writer, s *summary) (*impl.Result, error) {
	pol, err := impl.ParsePolicy(policy)
	if err != nil {
		return nil, fmt.Errorf("run: --policy: %v", err)
	}
	if len(cmd) == 0 {
		return nil, errors.New("run: no command given (usage: fsvirt run [flags] -- CMD [ARGS...])")
	}
	if keep != "" && named != "" {
		return nil, errors.New("run: --keep and --layer together: a layer is saved in its own directory (see fsvirt run --help)")
	}
	path, err := exec.LookPath(cmd[0])
	if err != nil {
		code := impl.ExitNotFound
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EISDIR) {
			code = impl.ExitCannotRun
		}
		s.Error = fmt.Sprintf("%s: %v", cmd[0], unwrapExec(err))
		fmt.Fprintf(stderr, "fsvirt: %s\n", s.Error)
		return nil, exitError{code}
	}
	keepDir := keep
	if apply && keepDir == "" && named == "" {
		tmp, err := os.MkdirTemp("", "fsvirt-apply-")
		if err != nil {
			return nil, fmt.Errorf("run: --apply: %w", err)
		}
		defer os.RemoveAll(tmp)
		keepDir = filepath.Join(tmp, "layer")
	}
	if prof := os.Getenv("FSVIRT_CPUPROFILE"); prof != "" {
		stop, err := startCPUProfile(prof)
		if err != nil {
			return nil, fmt.Errorf("run: FSVIRT_CPUPROFILE: %w", err)
		}
		defer stop()
	}
	res, err := impl.Run(ctx, impl.RunConfig{
		Trees: trees, Store: store, Policy: pol, Limits: limits,
		Path: path, Args: cmd,
		Keep: keepDir, Layer: named, Reap: true, ForwardSignals: true,
	})
	if res != nil {
		if res.Stopped != "" {
			fmt.Fprintf(stderr, "fsvirt: %s\n", res.Stopped)
		}
		if diff {
			for _, c := range res.Changes {
				fmt.Fprintf(stderr, "%c %s\n", c.Kind, c.Path)
			}
		}
		s.fill(res)
	}
	if err != nil {
		return res, err
	}
	if res.ExitStatus != 0 {
		return res, exitError{res.ExitStatus}
	}
	if apply {
		dir := keepDir
		if dir == "" {
			dir = named
		}
		s.Apply = &applyJSON{Conflicts: []conflictJSON{}}
		err := applyLayer(dir, stderr, s.Apply)
		s.Apply.Applied = err == nil
		return res, err
	}
	return res, nil
}

// applyLayer applies layer dir to "/" for run --apply, and notes the conflicts in aj.
func applyLayer(dir string, stderr io.Writer, aj *applyJSON) error {
	_, err := layer.Apply(dir, layer.Options{})
	var ce *layer.ConflictError
	if errors.As(err, &ce) {
		for _, c := range ce.Conflicts {
			aj.Conflicts = append(aj.Conflicts, conflictJSON{Path: c.Path, Reason: c.Why})
		}
		fmt.Fprintf(stderr, "fsvirt: --apply refused, nothing applied: %d conflict(s):\n", len(ce.Conflicts))
		for _, c := range ce.Conflicts {
			fmt.Fprintf(stderr, "  %s: %s\n", c.Path, c.Why)
		}
		return applyRefused{len(ce.Conflicts)}
	}
	if err != nil {
		return fmt.Errorf("--apply: %w", err)
	}
	return nil
}

// startCPUProfile profiles this process into file until stop is called.
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// applyRefused is --apply's refusal, said on stderr already: fsvirt exits 125.
type applyRefused struct{ n int }

func (e applyRefused) Error() string {
	return fmt.Sprintf("--apply refused: %d conflict(s), nothing applied", e.n)
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

// oneLine folds a (possibly multi-error) message onto one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// parseSize reads a size in bytes: a number with an optional k, M, G or T suffix (powers of 1024,
// "KiB" and "kB" alike), at least 1.
func parseSize(s string) (int64, error) {
	bad := fmt.Errorf("not a size: %q (a number of bytes with an optional k, M, G or T suffix)", s)
	num := strings.TrimRight(s, "kKmMgGtTiIbB")
	unit := strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(s[len(num):], "B"), "b"))
	shift := map[string]uint{"": 0, "k": 10, "ki": 10, "m": 20, "mi": 20, "g": 30, "gi": 30, "t": 40, "ti": 40}
	sh, ok := shift[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n <= 0 || n > (1<<62)>>sh {
		return 0, bad
	}
	return n << sh, nil
}

// limitFlags defines --max-bytes, --max-files and --min-free, which set l, on fs.
func limitFlags(fs *flag.FlagSet, l *impl.Limits) {
	fs.Func("max-bytes", "", func(s string) (err error) {
		l.Bytes, err = parseSize(s)
		return err
	})
	fs.Func("min-free", "", func(s string) (err error) {
		if s == "0" {
			l.MinFree = -1 // none
			return nil
		}
		l.MinFree, err = parseSize(s)
		return err
	})
	fs.Func("max-files", "", func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("not a positive number of files: %q", s)
		}
		l.Files = n
		return nil
	})
}
