package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/internal/bench"
)

func sampleFigures() bench.Figures {
	row := func(mode, wl string, mean time.Duration) bench.Row {
		return bench.Row{Mode: mode, Workload: wl, Threads: 50, Executions: 1000,
			Summary: bench.Summary{N: 1000, Mean: mean}, PeakRSSKiB: 20000, ChildRSSKiB: 3000}
	}
	return bench.Figures{Threads: []int{50}, Executions: []int{1000}, Workloads: []string{"hello", "misc"},
		Modes: []string{"none", "thread-fast", "overlayfs"},
		Rows: []bench.Row{row("none", "hello", 10*time.Microsecond), row("thread-fast", "hello", 11*time.Microsecond),
			row("none", "misc", 30*time.Microsecond), row("thread-fast", "misc", 40*time.Microsecond)},
		Scaling: []bench.Row{{Mode: "thread-fast", Workload: "readonly", Threads: 50, Supervisors: 1, Throughput: 1000},
			{Mode: "thread-fast", Workload: "readonly", Threads: 50, Supervisors: 2, Throughput: 1500}}}
}

// TestPlot: fsvirt-plot draws every figure from figures.json and links them from summary.md once.
func TestPlot(t *testing.T) {
	dir := t.TempDir()
	var js bytes.Buffer
	if err := bench.WriteFigures(&js, sampleFigures()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bench.FiguresFile), js.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte("# fsvirt bench\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		var out bytes.Buffer
		if err := run([]string{dir}, &out); err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(out.String(), "\n"); got != 4 {
			t.Errorf("printed %d figures, want 4:\n%s", got, out.String())
		}
	}
	for _, n := range []string{"time-hello-t50.png", "time-misc-t50.png", "memory-t50.png", "supervisors.png"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG (%v)", n, err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "summary.md"))
	if strings.Count(string(md), "## Figures") != 1 || !strings.Contains(string(md), "![supervisors.png](supervisors.png)") {
		t.Errorf("summary.md:\n%s", md)
	}
}

// TestPlotRefusesBadInput: a directory without figures.json, or with something else in it, is
// refused with the file named.
func TestPlotRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{dir}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "figures.json") {
		t.Errorf("missing figures.json: err = %v", err)
	}
	os.WriteFile(filepath.Join(dir, bench.FiguresFile), []byte("[1,2]"), 0o644)
	if err := run([]string{dir}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "figures.json") {
		t.Errorf("bad figures.json: err = %v", err)
	}
	if err := run(nil, &bytes.Buffer{}); err == nil {
		t.Error("no argument accepted")
	}
	var help bytes.Buffer
	if err := run([]string{"--help"}, &help); err != nil || !strings.Contains(help.String(), "Usage: fsvirt-plot DIR") {
		t.Errorf("--help: %v %q", err, help.String())
	}
}
