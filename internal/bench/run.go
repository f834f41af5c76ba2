package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsvirt/fsvirt/internal/notify"
)

// Config says what Run measures.
type Config struct {
	Modes      []*Mode
	Workloads  []*Workload
	Executions []int // invocations per measurement
	Threads    []int // concurrent invocations

	// Supervisors, when set, adds a sweep of fsvirt thread mode (fast) over these numbers of
	// supervisor threads, with ScaleThreads workers running ScaleExecutions of ScaleWorkload.
	Supervisors     []int
	ScaleWorkload   *Workload
	ScaleThreads    int
	ScaleExecutions int

	Work string // scratch directory; Run creates and removes its own below it
	// Store is where fsvirt's private layers go; "" means under Work.
	Store string
	Exe   string // this program, re-executed to measure each mode (CellMain) and as a workload's child (ChildMain)
	Host  Host

	// Budget, when positive, is the wall time after which no further measurement starts; the
	// ones left are reported as skipped.
	Budget time.Duration
	// Settle is the longest a measurement waits, before it starts, for the machine to be idle
	// (see settle); 0 starts at once.
	Settle time.Duration
	// Progress, when set, is told how far the run is.
	Progress Progress
}

// Progress follows a run: Start once with the total number of invocations, Add as they finish.
type Progress interface {
	Start(total int)
	Add(n int, label string)
	Done()
}

// Row is one measurement: one mode, workload, thread count and number of executions.
type Row struct {
	Mode        string
	Workload    string
	Threads     int
	Supervisors int // fsvirt thread mode; 0 elsewhere
	Executions  int
	Summary
	Wall       time.Duration
	Throughput float64 // invocations per second of wall time
	// CallsPerInv is the mean number of syscalls fsvirt intercepted per invocation.
	CallsPerInv float64
	// OverheadPerCall is (Mean - none's Mean) / CallsPerInv, when HasOverhead: the mode
	// intercepted syscalls and none ran the same measurement.
	OverheadPerCall time.Duration
	HasOverhead     bool
	BytesPerInv     float64 // mean bytes copied per invocation
	PeakRSSKiB      int64   // the measuring process's peak RSS during the measurement
	ChildRSSKiB     int64   // the largest peak RSS of an invocation's own process
	Errors          int
	FirstError      string
}

// ModeStatus says whether a mode ran, and why not.
type ModeStatus struct {
	Mode   *Mode
	Reason string // empty: available
}

// StartCost is how long a mode took to get ready for a number of threads: for fsvirt thread mode
// that is NewPool, whose cost per worker is dominated by the filter installation.
type StartCost struct {
	Mode      string
	Threads   int
	Total     time.Duration
	PerThread time.Duration
}

// Report is everything Run measured.
type Report struct {
	Start, End time.Time
	Machine    Machine
	Config     Config
	Modes      []ModeStatus
	Rows       []Row
	Scaling    []Row
	Starts     []StartCost
	Skipped    []string // measurements left out by the budget
	// Settled is the time spent waiting for an idle machine before measurements; Unsettled counts
	// those that started after waiting Config.Settle in vain.
	Settled     time.Duration
	Unsettled   int
	LoadAtStart string
	LoadAtEnd   string
}

// Machine describes where the run happened.
type Machine struct {
	Kernel   string
	CPUs     int
	CPUModel string
	MemTotal string
	Go       string
	Features string
}

// ProbeMachine describes this machine.
func ProbeMachine() Machine {
	m := Machine{Kernel: notify.KernelRelease(), CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Features: notify.Features().String()}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.MemTotal = procField("/proc/meminfo", "MemTotal")
	return m
}

func procField(file, key string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Total is the number of invocations cfg asks for.
func (cfg *Config) Total() int {
	n := 0
	for _, e := range cfg.Executions {
		n += e
	}
	n *= len(cfg.Workloads) * len(cfg.Threads) * len(cfg.Modes)
	return n + len(cfg.Supervisors)*cfg.ScaleExecutions
}

// Run measures what cfg asks for. A mode that cannot run is reported, not an error; an error is
// returned only when the run itself cannot proceed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	rep := &Report{Start: time.Now(), Machine: ProbeMachine(), Config: cfg, LoadAtStart: loadAvg()}
	work, err := os.MkdirTemp(cfg.Work, "fsvirt-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	slots := 1
	for _, t := range cfg.Threads {
		slots = max(slots, t)
	}
	slots = max(slots, cfg.ScaleThreads)
	env := Env{Fixture: work + "/tree", Work: work, Store: work, Exe: cfg.Exe}
	if cfg.Store != "" {
		if env.Store, err = os.MkdirTemp(cfg.Store, "fsvirt-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(env.Store)
	}
	if err := BuildFixture(env.Fixture, slots); err != nil {
		return nil, fmt.Errorf("build the workloads' tree: %w", err)
	}
	var runnable []*Mode
	for _, m := range cfg.Modes {
		st := ModeStatus{Mode: m}
		if err := m.Check(cfg.Host); err != nil {
			st.Reason = err.Error()
		} else {
			runnable = append(runnable, m)
		}
		rep.Modes = append(rep.Modes, st)
	}
	if cfg.Progress != nil {
		cfg.Progress.Start(cfg.Total())
		defer cfg.Progress.Done()
	}
	overBudget := func() bool { return cfg.Budget > 0 && time.Since(rep.Start) > cfg.Budget }
	skip := func(label string, n int) {
		rep.Skipped = append(rep.Skipped, label)
		if cfg.Progress != nil {
			cfg.Progress.Add(n, "skipping "+label)
		}
	}
	var deadline time.Time
	if cfg.Budget > 0 {
		deadline = rep.Start.Add(cfg.Budget)
	}
	names := make([]string, len(cfg.Workloads))
	for i, w := range cfg.Workloads {
		names[i] = w.Name
	}
	// cell measures one mode started once, in a process of its own (see CellCommand).
	cell := func(m *Mode, workloads []string, threads, supervisors, n int) (*cellResult, error) {
		if cfg.Settle > 0 {
			waited := settle(ctx, cfg.Settle, procStatCPU, settleWindow)
			rep.Settled += waited
			if waited >= cfg.Settle {
				rep.Unsettled++
			}
		}
		res, err := runCell(ctx, cfg.Exe, cellSpec{Mode: m.Name, Workloads: workloads, Threads: threads,
			Supervisors: supervisors, Executions: n, Env: env, Deadline: deadline}, cfg.Progress)
		if err != nil {
			return nil, err
		}
		for _, label := range res.Skipped {
			skip(label, n)
		}
		if res.CloseErr != "" {
			return res, fmt.Errorf("%s: close: %s", m.Name, res.CloseErr)
		}
		return res, nil
	}
	// Smaller measurements first, each with a fresh instance of its mode, so that a budget cuts the
	// largest ones and every mode gets measured.
	for _, n := range cfg.Executions {
		for _, threads := range cfg.Threads {
			for _, m := range cfg.Modes {
				size := len(cfg.Workloads) * n
				if !contains(runnable, m) {
					if cfg.Progress != nil {
						cfg.Progress.Add(size, m.Name+" unavailable")
					}
					continue
				}
				if err := ctx.Err(); err != nil {
					return rep, err
				}
				if overBudget() {
					skip(fmt.Sprintf("%s at %d threads, %d executions", m.Name, threads, n), size)
					continue
				}
				res, err := cell(m, names, threads, 1, n)
				if res == nil {
					return rep, err
				}
				if res.StartErr != "" {
					setReason(rep, m, fmt.Sprintf("could not start at %d threads: %s", threads, res.StartErr))
					if cfg.Progress != nil {
						cfg.Progress.Add(size, m.Name+" failed")
					}
					continue
				}
				rep.Starts = append(rep.Starts, StartCost{Mode: m.Name, Threads: threads, Total: res.Start,
					PerThread: res.Start / time.Duration(threads)})
				rep.Rows = append(rep.Rows, res.Rows...)
				if err != nil {
					return rep, err
				}
			}
		}
	}
	if len(cfg.Supervisors) > 0 && cfg.ScaleWorkload != nil {
		m := ModeByName(ModeThreadFast)
		for _, s := range cfg.Supervisors {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			if m.Check(cfg.Host) != nil || overBudget() {
				skip(fmt.Sprintf("%s %s t=%d supervisors=%d", m.Name, cfg.ScaleWorkload.Name, cfg.ScaleThreads, s), cfg.ScaleExecutions)
				continue
			}
			res, err := cell(m, []string{cfg.ScaleWorkload.Name}, cfg.ScaleThreads, s, cfg.ScaleExecutions)
			if res == nil {
				return rep, err
			}
			if res.StartErr != "" {
				return rep, fmt.Errorf("%s with %d supervisors: %s", m.Name, s, res.StartErr)
			}
			for _, r := range res.Rows {
				r.Supervisors = s
				rep.Scaling = append(rep.Scaling, r)
			}
			if err != nil {
				return rep, err
			}
		}
	}
	finish(rep.Rows)
	rep.End = time.Now()
	rep.LoadAtEnd = loadAvg()
	return rep, nil
}

func setReason(rep *Report, m *Mode, reason string) {
	for i := range rep.Modes {
		if rep.Modes[i].Mode == m && rep.Modes[i].Reason == "" {
			rep.Modes[i].Reason = reason
		}
	}
}

func contains(ms []*Mode, m *Mode) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// measure runs n invocations of w on threads goroutines, slot i on goroutine i.
func measure(ctx context.Context, inst instance, m *Mode, w *Workload, threads, n int, prog Progress, label string) Row {
	durs := make([]time.Duration, n)
	samples := make([]Sample, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	resetPeakRSS()
	start := time.Now()
	for slot := 0; slot < threads; slot++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				s, err := inst.invoke(ctx, w, slot, i)
				samples[i], durs[i], errs[i] = s, s.Dur, err
				if prog != nil {
					prog.Add(1, label)
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	row := Row{Mode: m.Name, Workload: w.Name, Threads: threads, Executions: n, Wall: wall,
		Throughput: float64(n) / wall.Seconds(), PeakRSSKiB: peakRSS()}
	var calls, bytes float64
	for i, s := range samples {
		calls += float64(s.Calls)
		bytes += float64(s.BytesCopied)
		row.ChildRSSKiB = max(row.ChildRSSKiB, s.ChildRSSKiB)
		if errs[i] != nil {
			row.Errors++
			if row.FirstError == "" {
				row.FirstError = oneLine(errs[i].Error())
			}
		}
	}
	row.CallsPerInv, row.BytesPerInv = calls/float64(n), bytes/float64(n)
	row.Summary = Summarize(durs)
	return row
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// finish fills in the overhead per intercepted syscall of every row, against the row of mode none
// with the same workload, threads and executions.
func finish(rows []Row) {
	type key struct {
		w    string
		t, n int
	}
	none := map[key]time.Duration{}
	for _, r := range rows {
		if r.Mode == ModeNone {
			none[key{r.Workload, r.Threads, r.Executions}] = r.Mean
		}
	}
	for i := range rows {
		r := &rows[i]
		base, ok := none[key{r.Workload, r.Threads, r.Executions}]
		if ok && r.CallsPerInv > 0 {
			r.OverheadPerCall = time.Duration(float64(r.Mean-base) / r.CallsPerInv)
			r.HasOverhead = true
		}
	}
}

// resetPeakRSS returns freed memory to the kernel and resets the process's peak RSS (VmHWM), so
// that the next measurement's peak is its own (Linux 4.0, clear_refs value 5).
func resetPeakRSS() {
	debug.FreeOSMemory()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS is VmHWM of this process in KiB, or 0.
func peakRSS() int64 {
	v := procField("/proc/self/status", "VmHWM")
	n, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// ErrNoModes is returned when no requested mode can run here.
var ErrNoModes = errors.New("none of the requested modes can run here")

// Runnable reports the modes of cfg that can run on cfg.Host.
func (cfg *Config) Runnable() []*Mode {
	var out []*Mode
	for _, m := range cfg.Modes {
		if m.Check(cfg.Host) == nil {
			out = append(out, m)
		}
	}
	return out
}
