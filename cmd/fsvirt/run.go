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
	"runtime/pprof"
	"strconv"
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
  --max-bytes SIZE
                  bound the private layer's file data to SIZE bytes of allocated blocks (a
                  number with an optional k, M, G or T suffix, powers of 1024). The write,
                  copy-up or fallocate that would pass it fails with ENOSPC, and nothing is left
                  half-copied. Sparse files count by the blocks they use.
  --max-files N   bound the private layer to N files, directories and symlinks, the
                  directories made to hold a changed file's path included; past it, creation
                  fails with ENOSPC.
                  With either limit the private layer is a tmpfs of its own (in memory), which
                  needs root (CAP_SYS_ADMIN). Without them there is no limit: a command can fill
                  the file system that holds the store.
  --json          on exit, print a machine-readable summary to stderr: exit status, changes,
                  intercepted calls per syscall, copy-ups, bytes copied, the private layer's
                  usage (bytes, files) and limits.

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
		asJSON = fs.Bool("json", false, "")
		limits impl.Limits
	)
	fs.Func("max-bytes", "", func(s string) (err error) {
		limits.Bytes, err = parseSize(s)
		return err
	})
	fs.Func("max-files", "", func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("not a positive number of files: %q", s)
		}
		limits.Files = n
		return nil
	})
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
	if prof := os.Getenv("FSVIRT_CPUPROFILE"); prof != "" {
		stop, err := startCPUProfile(prof)
		if err != nil {
			return fmt.Errorf("run: FSVIRT_CPUPROFILE: %w", err)
		}
		defer stop()
	}
	res, err := impl.Run(ctx, impl.RunConfig{
		Trees: trees, Store: *store, Policy: pol, Limits: limits,
		Path: path, Args: cmd,
		Keep: *keep, Reap: true, ForwardSignals: true,
	})
	if res != nil {
		report(stderr, res, limits, *diff, *asJSON)
	}
	if err != nil {
		return err
	}
	if res.ExitStatus != 0 {
		return exitError{res.ExitStatus}
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
	Usage       impl.Usage     `json:"usage"`
	Limits      *limitsJSON    `json:"limits,omitempty"` // absent: none
}

// limitsJSON are --max-bytes and --max-files; 0: not bounded.
type limitsJSON struct {
	Bytes int64 `json:"bytes"`
	Files int64 `json:"files"`
}

type change struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
}

func report(w io.Writer, res *impl.Result, limits impl.Limits, diff, asJSON bool) {
	if diff {
		for _, c := range res.Changes {
			fmt.Fprintf(w, "%c %s\n", c.Kind, c.Path)
		}
	}
	if asJSON {
		s := summary{ExitStatus: res.ExitStatus, Changes: []change{}, Calls: res.Stats.Calls,
			CopyUps: res.Stats.CopyUps, BytesCopied: res.Stats.BytesCopied, Usage: res.Usage}
		if limits.Bytes > 0 || limits.Files > 0 {
			s.Limits = &limitsJSON{Bytes: limits.Bytes, Files: limits.Files}
		}
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
