package main

import (
	"context"
	"encoding/csv"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBenchHelp(t *testing.T) {
	for _, args := range [][]string{{"bench", "--help"}, {"help", "bench"}, {"bench", "-h"}} {
		r := fsvirt(t, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: fsvirt bench") || !strings.Contains(r.stdout, "fuse-overlayfs") {
			t.Errorf("fsvirt %q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := fsvirt(t, "--help"); !strings.Contains(r.stdout, "fsvirt bench [flags]") {
		t.Errorf("fsvirt --help does not list bench:\n%s", r.stdout)
	}
}

func TestBenchBadArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"zero-threads", []string{"--threads", "0"}, "fsvirt: bench: --threads: 0 is out of range [1, 1024]"},
		{"not-a-number", []string{"--executions", "100,lots"}, `fsvirt: bench: --executions: "lots" is not a number`},
		{"unknown-mode", []string{"--modes", "none,docker"}, `fsvirt: bench: --modes: unknown mode "docker" (known: none,chroot,`},
		{"unknown-workload", []string{"--workloads", "sleep"}, `fsvirt: bench: --workloads: unknown workload "sleep"`},
		{"unknown-flag", []string{"--fast"}, "fsvirt: bench: flag provided but not defined: -fast (see fsvirt bench --help)"},
		{"stray-argument", []string{"now"}, `fsvirt: bench: unexpected argument "now"`},
		{"unknown-scale-workload", []string{"--scale-workload", "sleep"}, `fsvirt: bench: --scale-workload: unknown workload "sleep"`},
		{"negative-budget", []string{"--budget", "-1s"}, "fsvirt: bench: --budget: -1s is negative"},
		{"negative-settle", []string{"--settle", "-1s"}, "fsvirt: bench: --settle: -1s is negative"},
		{"missing-work-dir", []string{"--modes", "none", "--work", "/nonexistent/dir", "--out", "OUT"}, "fsvirt: bench: --work /nonexistent/dir is not a directory"},
		{"missing-store-dir", []string{"--modes", "none", "--store", "/nonexistent/s", "--out", "OUT"}, "fsvirt: bench: --store /nonexistent/s is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, a := range tt.args {
				if a == "OUT" {
					tt.args[i] = t.TempDir()
				}
			}
			r := fsvirt(t, append([]string{"bench"}, tt.args...)...)
			if r.code != 125 || !strings.HasPrefix(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 125 and %q", r.code, r.stderr, tt.want)
			}
		})
	}
}

func TestParseBenchArgsQuick(t *testing.T) {
	o, err := parseBenchArgs([]string{"--quick", "--threads", "2", "--out", "x"})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if len(c.Modes) != 7 || len(c.Workloads) != 6 {
		t.Errorf("quick runs %d modes and %d workloads, want all 7 and 6", len(c.Modes), len(c.Workloads))
	}
	if got := c.Threads; len(got) != 1 || got[0] != 2 {
		t.Errorf("--quick --threads 2: threads %v, want the explicit [2]", got)
	}
	if got := c.Executions; len(got) != 2 || got[0] != 10 || got[1] != 40 {
		t.Errorf("--quick executions %v, want [10 40]", got)
	}
	if c.Budget != 90*time.Second || c.ScaleExecutions != 300 || c.ScaleThreads != 2 || len(c.Supervisors) != 2 || c.Settle != 2*time.Second {
		t.Errorf("--quick: budget %v, scale executions %d, scale threads %d, supervisors %v, settle %v",
			c.Budget, c.ScaleExecutions, c.ScaleThreads, c.Supervisors, c.Settle)
	}
	if c.ScaleWorkload == nil || c.ScaleWorkload.Name != "readonly" {
		t.Errorf("--quick: scale workload %v, want readonly", c.ScaleWorkload)
	}
	o, err = parseBenchArgs([]string{"--supervisors", "0"})
	if err != nil || o.cfg.Supervisors != nil || o.out != "fsvirt-bench" || len(o.cfg.Threads) != 3 {
		t.Errorf("defaults with --supervisors 0: %+v, %v", o, err)
	}
	o, err = parseBenchArgs([]string{"--scale-workload", "misc"})
	if err != nil || o.cfg.ScaleWorkload == nil || o.cfg.ScaleWorkload.Name != "misc" {
		t.Errorf("--scale-workload misc: %+v, %v", o, err)
	}
}

// TestBenchSmallRun runs a tiny benchmark end to end and checks the files it writes, and that a
// mode that cannot run (fuse-overlayfs, hidden from PATH) is reported with its reason.
func TestBenchSmallRun(t *testing.T) {
	requireEngine(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, fsvirtBin, "bench", "--modes", "none,thread-fast,fuse-overlayfs",
		"--workloads", "hello,readwrite", "--executions", "3,6", "--threads", "2",
		"--supervisors", "1,2", "--scale-executions", "4", "--settle", "200ms", "--work", t.TempDir(), "--out", out)
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fsvirt bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "mode fuse-overlayfs not run: fuse-overlayfs is not installed") {
		t.Errorf("stdout does not say why fuse-overlayfs did not run:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "100%") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
	f, err := os.Open(filepath.Join(out, "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// 2 modes x 2 workloads x 2 execution counts, and 2 points of the supervisor sweep.
	if len(recs) != 1+8+2 {
		t.Errorf("results.csv has %d records, want 11:\n%v", len(recs), recs)
	}
	for _, r := range recs[1:] {
		if r[len(r)-2] != "0" {
			t.Errorf("measurement with errors: %v", r)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "summary.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| fuse-overlayfs | **not run**: fuse-overlayfs is not installed", "## Supervisor threads",
		"thread-mode Hello World within 5% of none", "waited up to 200ms for the CPUs to be 90% idle"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("summary.md lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "figures.json")); err != nil {
		t.Error(err)
	}
}

// TestBenchChildRefusesBadArguments: the hidden child entry point fails with a reason.
func TestBenchChildRefusesBadArguments(t *testing.T) {
	r := fsvirt(t, "bench", "__child", "--workload", "nope")
	if r.code != 125 || !strings.Contains(r.stderr, "need --workload") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestBenchClosedStderr: a bench whose stderr is a pipe nobody reads any more stops, writes what
// it measured, and leaves nothing in --work (it used to die of SIGPIPE at the progress bar's first
// write, with its scratch tree there).
func TestBenchClosedStderr(t *testing.T) {
	requireEngine(t)
	work, out := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, fsvirtBin, "bench", "--modes", "none,thread-fast",
		"--workloads", "hello,readwrite", "--executions", "200", "--threads", "2",
		"--supervisors", "0", "--settle", "0", "--work", work, "--out", out)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // every write to the pipe fails with EPIPE, and raises SIGPIPE
	cmd.Stdout, cmd.Stderr = w, w
	// It may still die of SIGPIPE at the very end, writing its last error to the closed stderr,
	// as `cmd | head` programs do; by then it has cleaned up.
	err = cmd.Run()
	w.Close()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("fsvirt bench: %v", err)
	}
	left, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("--work not empty: %v", left)
	}
	if _, err := os.Stat(filepath.Join(out, "summary.md")); err != nil {
		t.Errorf("no summary: %v", err)
	}
}
