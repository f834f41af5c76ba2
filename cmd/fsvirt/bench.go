package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsvirt/fsvirt/internal/bench"
	"golang.org/x/sys/unix"
)

const benchUsage = `Usage: fsvirt bench [flags]

Reproduces the evaluation of the research behind fsvirt, side by side with other isolation
tools: six workloads, run under every mode below at several thread counts and numbers of
executions. Compare modes within one run only, as ratios: times on a shared machine vary
from run to run.

Modes (--modes, comma-separated, default all):
  none            no isolation: the function runs on a worker thread of a plain pool (the
                  same hand-off as thread mode, no filter), on the shared tree
  chroot          per invocation a child process in a new root holding a copy of the files
                  it needs; the root is deleted afterwards (root only)
  thread-fast     fsvirt thread mode, fast policy (impl.Pool)
  thread-strict   fsvirt thread mode, strict policy
  process         fsvirt process mode: a child process per invocation (impl.Run)
  overlayfs       per invocation a child process in a new mount namespace with a kernel
                  overlayfs over the tree (root only)
  fuse-overlayfs  per invocation a fuse-overlayfs mount (when installed)
A mode that cannot run here is reported with the reason, and the others run.

Workloads (--workloads, default all): hello, readonly (5 reads), readwrite (13 operations
that change files and read them back), fibonacci (first 50), hashing (replace a 1 MiB file
by its SHA-256), misc (one of the others at random).

Flags:
  --out DIR           where to write results.csv, summary.md and figures.json, from which
                      fsvirt-plot DIR draws the figures (default "fsvirt-bench"; created
                      if missing)
  --quick             a smaller run that finishes in under two minutes: executions 10,40,
                      threads 4, supervisors 1,2 (300 executions), a 90 s budget, and
                      --settle 2s
  --modes LIST        modes to run (default all)
  --workloads LIST    workloads to run (default all)
  --executions LIST   invocations per measurement (default 100,1000,10000)
  --threads LIST      concurrent invocations (default 1,8,50)
  --supervisors LIST  fsvirt supervisor threads to sweep, running one workload in thread-fast
                      with the largest thread count (default 1,2,4; "0" skips the sweep)
  --scale-workload NAME  the workload of that sweep (default readonly)
  --scale-executions N  invocations per point of that sweep (default 2000)
  --work DIR          scratch directory for the shared tree, private layers and new roots
                      (default $TMPDIR or /var/tmp)
  --store DIR         where fsvirt's private layers live (default: under --work). Each
                      invocation that changes a file creates and removes a directory there,
                      which costs far more on a journaling disk file system than on tmpfs
  --budget DURATION   start no measurement after this much time (e.g. 10m; default none);
                      the ones left out are listed as skipped
  --settle DURATION   before each measurement, wait up to this long for the CPUs to be 90%
                      idle (default 10s; 0: start at once). What a mode that starts processes
                      leaves to the kernel otherwise slows the mode measured after it

Each mode, at each thread count and number of executions, is measured by a process of its
own (this program, re-executed), so that no mode's memory or garbage collector state is
left to the next: the peak RSS reported is that process's.

A progress bar is drawn on stderr. Ctrl-C stops the run and writes what was measured.

Example:
  sudo fsvirt bench --quick --out /tmp/bench
`

// benchOptions are the parsed flags of fsvirt bench.
type benchOptions struct {
	out             string
	cfg             bench.Config
	scaleExecutions int
}

// parseBenchArgs turns the flags into a run configuration; explicit flags override --quick.
func parseBenchArgs(args []string) (*benchOptions, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		out         = fs.String("out", "fsvirt-bench", "")
		quick       = fs.Bool("quick", false, "")
		modes       = fs.String("modes", "all", "")
		workloads   = fs.String("workloads", "all", "")
		executions  = fs.String("executions", "100,1000,10000", "")
		threads     = fs.String("threads", "1,8,50", "")
		supervisors = fs.String("supervisors", "1,2,4", "")
		scaleExecs  = fs.Int("scale-executions", 2000, "")
		scaleWl     = fs.String("scale-workload", bench.ReadOnly, "")
		work        = fs.String("work", "", "")
		store       = fs.String("store", "", "")
		budget      = fs.Duration("budget", 0, "")
		settle      = fs.Duration("settle", 10*time.Second, "")
	)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		quickDefaults := map[string]string{"executions": "10,40", "threads": "4", "supervisors": "1,2",
			"scale-executions": "300", "budget": "90s", "settle": "2s"}
		for name, v := range quickDefaults {
			if !set[name] {
				fs.Set(name, v)
			}
		}
	}
	o := &benchOptions{out: *out, scaleExecutions: *scaleExecs}
	if o.out == "" {
		return nil, errors.New("--out: empty directory name")
	}
	var err error
	c := &o.cfg
	if c.Modes, err = bench.ParseModes(*modes); err != nil {
		return nil, fmt.Errorf("--modes: %v", err)
	}
	if c.Workloads, err = bench.ParseWorkloads(*workloads); err != nil {
		return nil, fmt.Errorf("--workloads: %v", err)
	}
	if c.Executions, err = bench.ParseInts(*executions, 1, 1_000_000); err != nil {
		return nil, fmt.Errorf("--executions: %v", err)
	}
	if c.Threads, err = bench.ParseInts(*threads, 1, 1024); err != nil {
		return nil, fmt.Errorf("--threads: %v", err)
	}
	if *supervisors != "0" {
		if c.Supervisors, err = bench.ParseInts(*supervisors, 1, 64); err != nil {
			return nil, fmt.Errorf("--supervisors: %v", err)
		}
	}
	if *scaleExecs < 1 {
		return nil, fmt.Errorf("--scale-executions: %d is not positive", *scaleExecs)
	}
	if *budget < 0 {
		return nil, fmt.Errorf("--budget: %v is negative", *budget)
	}
	if *settle < 0 {
		return nil, fmt.Errorf("--settle: %v is negative", *settle)
	}
	if c.ScaleWorkload = bench.WorkloadByName(*scaleWl); c.ScaleWorkload == nil {
		return nil, fmt.Errorf("--scale-workload: unknown workload %q (one of hello, readonly, readwrite, fibonacci, hashing, misc)", *scaleWl)
	}
	c.ScaleExecutions = *scaleExecs
	for _, t := range c.Threads {
		c.ScaleThreads = max(c.ScaleThreads, t)
	}
	c.Work = *work
	if c.Work == "" {
		c.Work = os.TempDir()
	}
	c.Store = *store
	c.Budget = *budget
	c.Settle = *settle
	return o, nil
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == bench.ChildCommand {
		return bench.ChildMain(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == bench.CellCommand {
		// Run's measurement processes: Ctrl-C reaches them too, and Run sends SIGTERM when its own
		// run stops; either way they report what they measured.
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, unix.SIGTERM)
		defer stop()
		return bench.CellMain(ctx, args[1:], stdout)
	}
	o, err := parseBenchArgs(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, benchUsage)
			return nil
		}
		return fmt.Errorf("bench: %v (see fsvirt bench --help)", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: cannot find this program to run children: %w", err)
	}
	o.cfg.Exe = exe
	o.cfg.Host = bench.ProbeHost()
	if len(o.cfg.Runnable()) == 0 {
		var why []string
		for _, m := range o.cfg.Modes {
			why = append(why, m.Name+": "+m.Check(o.cfg.Host).Error())
		}
		return fmt.Errorf("bench: %v (%s)", bench.ErrNoModes, strings.Join(why, "; "))
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("bench: --out: %w", err)
	}
	for flag, dir := range map[string]string{"--work": o.cfg.Work, "--store": o.cfg.Store} {
		if st, err := os.Stat(dir); dir != "" && (err != nil || !st.IsDir()) {
			return fmt.Errorf("bench: %s %s is not a directory", flag, dir)
		}
	}
	o.cfg.Progress = bench.NewBar(stderr, isTerminal(stderr))
	// A closed stderr or stdout (bench ... | head) stops the run as Ctrl-C does: without this, the
	// progress bar's next write would kill the process with SIGPIPE, leaving --work's scratch tree
	// behind. A caught signal is reset on exec: children are not affected.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, unix.SIGTERM, unix.SIGPIPE)
	defer stop()
	rep, runErr := bench.Run(ctx, o.cfg)
	if rep == nil {
		return fmt.Errorf("bench: %w", runErr)
	}
	if rep.End.IsZero() {
		rep.End = time.Now()
	}
	if err := writeBenchOutputs(o.out, rep, "fsvirt bench "+shellJoin(args)); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	for _, st := range rep.Modes {
		if st.Reason != "" {
			fmt.Fprintf(stdout, "mode %s not run: %s\n", st.Mode.Name, st.Reason)
		}
	}
	for _, tg := range bench.Targets(rep) {
		fmt.Fprintf(stdout, "target %q: %s (%s)\n", tg.Name, tg.Verdict(), tg.Detail)
	}
	fmt.Fprintf(stdout, "results in %s (summary.md, results.csv; figures: go run ./cmd/fsvirt-plot %s)\n", o.out, o.out)
	if runErr != nil {
		return fmt.Errorf("bench: stopped early: %w", runErr)
	}
	return nil
}

func writeBenchOutputs(dir string, rep *bench.Report, command string) error {
	f, err := os.Create(filepath.Join(dir, "results.csv"))
	if err != nil {
		return err
	}
	if err := bench.WriteCSV(f, rep); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	f, err = os.Create(filepath.Join(dir, bench.FiguresFile))
	if err != nil {
		return err
	}
	if err := bench.WriteFigures(f, bench.FiguresOf(rep)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	f, err = os.Create(filepath.Join(dir, "summary.md"))
	if err != nil {
		return err
	}
	if err := bench.WriteMarkdown(f, rep, command); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// shellJoin quotes args for the summary's record of the command line.
func shellJoin(args []string) string {
	var q []string
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q = append(q, a)
	}
	return strings.Join(q, " ")
}

// isTerminal reports whether w is a terminal, where the progress bar redraws itself in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
