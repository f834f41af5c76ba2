package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for fsvirt as Run's measurement process: runCell executes
// "EXE bench __cell SPEC".
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "bench" && os.Args[2] == CellCommand {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := CellMain(ctx, os.Args[3:], os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(125)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// counter is a Progress that adds up what it is told.
type counter struct {
	mu     sync.Mutex
	done   int
	labels map[string]bool
	first  chan struct{} // closed at the first Add
}

func newCounter() *counter {
	return &counter{labels: map[string]bool{}, first: make(chan struct{})}
}

func (c *counter) Start(int) {}
func (c *counter) Done()     {}
func (c *counter) Add(n int, label string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == 0 {
		close(c.first)
	}
	c.done += n
	c.labels[label] = true
}

func cellEnv(t *testing.T) Env {
	t.Helper()
	env := Env{Fixture: t.TempDir() + "/tree", Work: t.TempDir(), Store: t.TempDir()}
	if err := BuildFixture(env.Fixture, 2); err != nil {
		t.Fatal(err)
	}
	return env
}

func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestRunCell: a cell runs in a process of its own, measures each workload, passes its progress
// on, and reports its own peak RSS.
func TestRunCell(t *testing.T) {
	prog := newCounter()
	spec := cellSpec{Mode: ModeNone, Workloads: []string{Hello, Fibonacci}, Threads: 2, Supervisors: 1,
		Executions: 7, Env: cellEnv(t)}
	res, err := runCell(context.Background(), testExe(t), spec, prog)
	if err != nil {
		t.Fatal(err)
	}
	if res.StartErr != "" || res.CloseErr != "" || len(res.Skipped) != 0 {
		t.Fatalf("result %+v", res)
	}
	if len(res.Rows) != 2 || res.Rows[0].Workload != Hello || res.Rows[1].Workload != Fibonacci {
		t.Fatalf("rows %+v, want hello and fibonacci", res.Rows)
	}
	for _, r := range res.Rows {
		if r.Mode != ModeNone || r.Threads != 2 || r.N != 7 || r.Errors != 0 || r.PeakRSSKiB <= 0 || r.Mean <= 0 {
			t.Errorf("row %+v", r)
		}
	}
	if prog.done != 14 || !prog.labels["none fibonacci t=2 n=7"] {
		t.Errorf("progress: %d invocations, labels %v; want 14", prog.done, prog.labels)
	}
}

// TestRunCellDeadline: workloads that would start after the deadline are reported as skipped.
func TestRunCellDeadline(t *testing.T) {
	spec := cellSpec{Mode: ModeNone, Workloads: []string{Hello, Fibonacci}, Threads: 1, Supervisors: 1,
		Executions: 3, Env: cellEnv(t), Deadline: time.Now().Add(-time.Second)}
	res, err := runCell(context.Background(), testExe(t), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 0 || strings.Join(res.Skipped, ";") != "none hello t=1 n=3;none fibonacci t=1 n=3" {
		t.Errorf("rows %v, skipped %q", res.Rows, res.Skipped)
	}
}

// TestRunCellCanceled: when the run stops, the cell process is asked to stop and reports what it
// measured instead of being killed with it.
func TestRunCellCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prog := newCounter()
	spec := cellSpec{Mode: ModeNone, Workloads: []string{Hashing, Hello}, Threads: 1, Supervisors: 1,
		Executions: 1_000_000, Env: cellEnv(t)} // about 1,000 s of hashing
	go func() {
		select {
		case <-prog.first:
		case <-time.After(time.Minute):
		}
		cancel()
	}()
	start := time.Now()
	res, err := runCell(ctx, testExe(t), spec, prog)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 || res.Rows[0].Workload != Hashing {
		t.Fatalf("rows %+v: want the one workload that had started", res.Rows)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the cell took %v to stop", d)
	}
}

// TestRunCellFailure: a cell process that fails without a result is an error that says why.
func TestRunCellFailure(t *testing.T) {
	spec := cellSpec{Mode: "nope", Workloads: []string{Hello}, Threads: 1, Supervisors: 1, Executions: 1,
		Env: cellEnv(t)}
	_, err := runCell(context.Background(), testExe(t), spec, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown mode "nope"`) {
		t.Errorf("runCell = %v, want the child's reason", err)
	}
	spec.Mode = ModeNone
	_, err = runCell(context.Background(), "/nonexistent/fsvirt", spec, nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/fsvirt") {
		t.Errorf("runCell of a missing program = %v", err)
	}
}

func TestCellMainErrors(t *testing.T) {
	good := cellSpec{Mode: ModeNone, Workloads: []string{Hello}, Threads: 1, Supervisors: 1, Executions: 1,
		Env: Env{Fixture: "/nonexistent"}}
	bad := func(f func(*cellSpec)) string {
		s := good
		f(&s)
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, args := range [][]string{
		nil,
		{"{"},
		{"{}", "{}"},
		{bad(func(s *cellSpec) { s.Mode = "nope" })},
		{bad(func(s *cellSpec) { s.Workloads = []string{"nope"} })},
		{bad(func(s *cellSpec) { s.Threads = 0 })},
		{bad(func(s *cellSpec) { s.Executions = 0 })},
		{bad(func(s *cellSpec) { s.Env.Fixture = "" })},
	} {
		if err := CellMain(context.Background(), args, &bytes.Buffer{}); err == nil {
			t.Errorf("CellMain(%q) succeeded", args)
		}
	}
}
