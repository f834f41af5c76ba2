package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A cell is one mode started once, at one number of threads and supervisors, running a number of
// executions of each of some workloads. Run measures every cell in a process of its own (the
// program re-executed with CellCommand), so that a cell's peak RSS and heap are its own and not
// what an earlier mode left resident (all modes in one process moved the RSS ratio by up to 0.37),
// and no mode inherits another's garbage collector state or threads.

// CellCommand is the hidden subcommand of `fsvirt bench` that measures one cell; its one argument
// is the cellSpec in JSON. It writes cellEvents, one JSON object per line, on stdout.
const CellCommand = "__cell"

type cellSpec struct {
	Mode        string
	Workloads   []string
	Threads     int
	Supervisors int
	Executions  int
	Env         Env
	// Deadline, when set, is the time after which no further workload starts (Config.Budget).
	Deadline time.Time `json:",omitzero"`
}

// cellEvent is one line of a cell's output: progress, or the result, which is the last line.
type cellEvent struct {
	Done   int         `json:",omitempty"`
	Label  string      `json:",omitempty"`
	Result *cellResult `json:",omitempty"`
}

type cellResult struct {
	Start    time.Duration // how long the mode took to start
	StartErr string        `json:",omitempty"` // the mode could not start; nothing was measured
	CloseErr string        `json:",omitempty"`
	Rows     []Row
	Skipped  []string // workloads left out by the deadline
}

// CellMain measures the cell that args[0] describes and writes its events to stdout. It stops
// early, reporting what it measured, when ctx ends.
func CellMain(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("%s: want one argument, the cell in JSON", CellCommand)
	}
	var spec cellSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		return fmt.Errorf("%s: %w", CellCommand, err)
	}
	m := ModeByName(spec.Mode)
	if m == nil {
		return fmt.Errorf("%s: unknown mode %q (known: %s)", CellCommand, spec.Mode, modeNames())
	}
	var ws []*Workload
	for _, name := range spec.Workloads {
		w := WorkloadByName(name)
		if w == nil {
			return fmt.Errorf("%s: unknown workload %q (known: %s)", CellCommand, name, workloadNames())
		}
		ws = append(ws, w)
	}
	if spec.Threads < 1 || spec.Executions < 1 || spec.Supervisors < 1 || spec.Env.Fixture == "" {
		return fmt.Errorf("%s: need threads, executions and supervisors of at least 1, and a fixture", CellCommand)
	}
	out := &eventWriter{enc: json.NewEncoder(stdout)}
	res := &cellResult{}
	t0 := time.Now()
	inst, err := m.start(spec.Env, spec.Threads, spec.Supervisors)
	res.Start = time.Since(t0)
	if err != nil {
		res.StartErr = err.Error()
		return out.write(cellEvent{Result: res})
	}
	prog := newBatchedProgress(out, 100*time.Millisecond)
	for _, w := range ws {
		label := fmt.Sprintf("%s %s t=%d n=%d", m.Name, w.Name, spec.Threads, spec.Executions)
		if spec.Supervisors > 1 {
			label = fmt.Sprintf("%s %s t=%d supervisors=%d", m.Name, w.Name, spec.Threads, spec.Supervisors)
		}
		if ctx.Err() != nil {
			break
		}
		if !spec.Deadline.IsZero() && time.Now().After(spec.Deadline) {
			res.Skipped = append(res.Skipped, label)
			continue
		}
		res.Rows = append(res.Rows, measure(ctx, inst, m, w, spec.Threads, spec.Executions, prog, label))
	}
	prog.stop()
	if err := inst.close(); err != nil {
		res.CloseErr = err.Error()
	}
	return out.write(cellEvent{Result: res})
}

// eventWriter writes cellEvents from several goroutines.
type eventWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *eventWriter) write(ev cellEvent) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.enc.Encode(ev)
}

// batchedProgress is the Progress of a cell: it counts finished invocations and writes the count
// at most once a period, so that reporting costs the measured invocations next to nothing.
type batchedProgress struct {
	out  *eventWriter
	mu   sync.Mutex
	done int
	last string
	quit chan struct{}
	wg   sync.WaitGroup
}

func newBatchedProgress(out *eventWriter, period time.Duration) *batchedProgress {
	p := &batchedProgress{out: out, quit: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.flush()
			case <-p.quit:
				p.flush()
				return
			}
		}
	}()
	return p
}

func (p *batchedProgress) Start(int) {}
func (p *batchedProgress) Done()     {}

func (p *batchedProgress) Add(n int, label string) {
	p.mu.Lock()
	p.done += n
	p.last = label
	p.mu.Unlock()
}

func (p *batchedProgress) flush() {
	p.mu.Lock()
	n, label := p.done, p.last
	p.done = 0
	p.mu.Unlock()
	if n > 0 {
		p.out.write(cellEvent{Done: n, Label: label})
	}
}

func (p *batchedProgress) stop() {
	close(p.quit)
	p.wg.Wait()
}

// errCell is wrapped by the errors of a cell process that did not report a result.
var errCell = errors.New("measurement process failed")

// runCell measures spec in a process of its own and returns its result, passing its progress on
// to prog. When ctx ends, the process is asked to stop (SIGTERM) and reports what it measured.
func runCell(ctx context.Context, exe string, spec cellSpec, prog Progress) (*cellResult, error) {
	arg, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "bench", CellCommand, string(arg))
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %v", errCell, err)
	}
	var res *cellResult
	var bad error
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ev cellEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			bad = fmt.Errorf("unreadable output %.200q: %v", sc.Text(), err)
			continue
		}
		if ev.Done > 0 && prog != nil {
			prog.Add(ev.Done, ev.Label)
		}
		if ev.Result != nil {
			res = ev.Result
		}
	}
	if err := sc.Err(); err != nil && bad == nil {
		bad = err
	}
	waitErr := cmd.Wait()
	if res == nil {
		why := strings.TrimSpace(stderr.String())
		if why == "" && bad != nil {
			why = bad.Error()
		}
		if why == "" && waitErr != nil {
			why = waitErr.Error()
		}
		return nil, fmt.Errorf("%w (%s at %d threads): %s", errCell, spec.Mode, spec.Threads, why)
	}
	return res, nil
}
