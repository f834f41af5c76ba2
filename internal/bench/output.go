package bench

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// csvHeader names the columns of WriteCSV; times are in microseconds.
var csvHeader = []string{"table", "mode", "workload", "threads", "supervisors", "executions",
	"mean_us", "p50_us", "p99_us", "min_us", "max_us", "wall_s", "throughput_per_s",
	"calls_per_invocation", "overhead_per_call_us", "bytes_copied_per_invocation",
	"peak_rss_kib", "child_peak_rss_kib", "errors", "first_error"}

func us(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 2, 64) }

// WriteCSV writes one line per measurement: table "main" for the rows, "scaling" for the
// supervisor sweep.
func WriteCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	cw.Write(csvHeader)
	write := func(table string, rows []Row) {
		for _, r := range rows {
			over := ""
			if r.HasOverhead {
				over = us(r.OverheadPerCall)
			}
			cw.Write([]string{table, r.Mode, r.Workload, strconv.Itoa(r.Threads), strconv.Itoa(r.Supervisors),
				strconv.Itoa(r.Executions), us(r.Mean), us(r.P50), us(r.P99), us(r.Min), us(r.Max),
				strconv.FormatFloat(r.Wall.Seconds(), 'f', 3, 64), strconv.FormatFloat(r.Throughput, 'f', 1, 64),
				strconv.FormatFloat(r.CallsPerInv, 'f', 2, 64), over, strconv.FormatFloat(r.BytesPerInv, 'f', 0, 64),
				strconv.FormatInt(r.PeakRSSKiB, 10), strconv.FormatInt(r.ChildRSSKiB, 10),
				strconv.Itoa(r.Errors), r.FirstError})
		}
	}
	write("main", rep.Rows)
	write("scaling", rep.Scaling)
	cw.Flush()
	return cw.Error()
}

// Target is one of issue 7's targets that a bench run can decide.
type Target struct {
	Name   string
	Value  float64 // the measured ratio
	Limit  float64
	AtMost bool // met when Value <= Limit; else when Value >= Limit
	Detail string
	Known  bool // false: the run lacks the measurements
}

// Met reports whether the target is met.
func (t Target) Met() bool {
	if !t.Known {
		return false
	}
	if t.AtMost {
		return t.Value <= t.Limit
	}
	return t.Value >= t.Limit
}

// Verdict is "met", "missed by X%" or "not measured".
func (t Target) Verdict() string {
	switch {
	case !t.Known:
		return "not measured"
	case t.Met():
		return "met"
	case t.AtMost:
		return fmt.Sprintf("missed by %.0f%%", (t.Value/t.Limit-1)*100)
	default:
		return fmt.Sprintf("missed: %.1fx short", t.Limit/t.Value)
	}
}

// FindRow returns the row of mode and workload at threads and executions, or nil.
func FindRow(rows []Row, mode, workload string, threads, n int) *Row {
	for i := range rows {
		r := &rows[i]
		if r.Mode == mode && r.Workload == workload && r.Threads == threads && r.Executions == n {
			return r
		}
	}
	return nil
}

// largest returns the largest of xs, or 0.
func largest(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// Targets decides the targets that concern `fsvirt bench` at the largest thread count and the
// largest number of executions of the run. The micro-benchmark targets (open against the kernel's
// round trip) come from go test -bench instead.
func Targets(rep *Report) []Target {
	t, n := largest(rep.Config.Threads), largest(rep.Config.Executions)
	at := fmt.Sprintf("%d threads, %d executions", t, n)
	ratio := func(name, num, den, workload string, limit float64, atMost bool) Target {
		tg := Target{Name: name, Limit: limit, AtMost: atMost}
		a, b := FindRow(rep.Rows, num, workload, t, n), FindRow(rep.Rows, den, workload, t, n)
		if a == nil || b == nil || a.Errors > 0 || b.Errors > 0 || a.Mean <= 0 || b.Mean <= 0 {
			tg.Detail = "needs " + num + " and " + den + " " + workload + " at " + at + " without errors"
			return tg
		}
		tg.Known = true
		tg.Value = float64(a.Mean) / float64(b.Mean)
		tg.Detail = fmt.Sprintf("%s %s / %s %s = %.1f µs / %.1f µs at %s", num, workload, den, workload,
			float64(a.Mean)/1e3, float64(b.Mean)/1e3, at)
		return tg
	}
	out := []Target{
		ratio("thread-mode Hello World within 5% of none", ModeThreadFast, ModeNone, Hello, 1.05, true),
		ratio("thread-mode Fibonacci within 5% of none", ModeThreadFast, ModeNone, Fibonacci, 1.05, true),
		ratio("thread-mode Misc at least 20x faster than chroot", ModeChroot, ModeThreadFast, Misc, 20, false),
	}
	// Peak RSS: the largest ratio over the workloads measured in both modes.
	rss := Target{Name: "peak RSS of thread mode at most 1.1x none", Limit: 1.1, AtMost: true}
	for _, w := range rep.Config.Workloads {
		a, b := FindRow(rep.Rows, ModeThreadFast, w.Name, t, n), FindRow(rep.Rows, ModeNone, w.Name, t, n)
		if a == nil || b == nil || b.PeakRSSKiB <= 0 {
			continue
		}
		if v := float64(a.PeakRSSKiB) / float64(b.PeakRSSKiB); !rss.Known || v > rss.Value {
			rss.Known, rss.Value = true, v
			rss.Detail = fmt.Sprintf("worst workload %s: %d KiB / %d KiB at %s", w.Name, a.PeakRSSKiB, b.PeakRSSKiB, at)
		}
	}
	if !rss.Known {
		rss.Detail = "needs thread-fast and none at " + at
	}
	return append(out, rss)
}

func fmtUs(d time.Duration) string {
	v := float64(d) / 1e3
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func fmtRatio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	if x >= 10 {
		return strconv.FormatFloat(x, 'f', 0, 64) + "x"
	}
	return strconv.FormatFloat(x, 'f', 2, 64) + "x"
}

func fmtKiB(k int64) string {
	if k == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(k)/1024, 'f', 1, 64)
}

func fmtBytes(b float64) string {
	switch {
	case b == 0:
		return "0"
	case b >= 1<<20:
		return strconv.FormatFloat(b/(1<<20), 'f', 2, 64) + " MiB"
	case b >= 1<<10:
		return strconv.FormatFloat(b/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatFloat(b, 'f', 0, 64) + " B"
}

// WriteMarkdown writes a human-readable summary of rep. cmd/fsvirt-plot adds the figures.
func WriteMarkdown(w io.Writer, rep *Report, command string) error {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "# fsvirt bench\n\n")
	fmt.Fprintf(&b, "Command: `%s`\n\n", command)
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %s memory, kernel %s, %s\n", m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.Go)
	fmt.Fprintf(&b, "- Seccomp features: %s\n", m.Features)
	fmt.Fprintf(&b, "- Run: %s, from %s to %s; load average %s at the start, %s at the end\n",
		rep.End.Sub(rep.Start).Round(time.Second), rep.Start.Format(time.DateTime), rep.End.Format(time.TimeOnly),
		rep.LoadAtStart, rep.LoadAtEnd)
	if rep.Config.Settle > 0 {
		fmt.Fprintf(&b, "- Before each measurement, waited up to %s for the CPUs to be %.0f%% idle: %s in all",
			rep.Config.Settle, settleIdle*100, rep.Settled.Round(100*time.Millisecond))
		if rep.Unsettled > 0 {
			fmt.Fprintf(&b, "; %d measurements started on a busy machine", rep.Unsettled)
		}
		fmt.Fprintf(&b, "\n")
	}
	fmt.Fprintf(&b, "- Times are per invocation, in µs; compare modes within this run only, as ratios.\n\n")

	fmt.Fprintf(&b, "## Modes\n\n| mode | status | one invocation |\n|---|---|---|\n")
	for _, st := range rep.Modes {
		status := "ran"
		if st.Reason != "" {
			status = "**not run**: " + st.Reason
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", st.Mode.Name, status, st.Mode.Desc)
	}

	t, n := largest(rep.Config.Threads), largest(rep.Config.Executions)
	fmt.Fprintf(&b, "\n## Targets (issue 7) decided by this run, at %d threads and %d executions\n\n", t, n)
	fmt.Fprintf(&b, "| target | ratio | limit | verdict | from |\n|---|---|---|---|---|\n")
	for _, tg := range Targets(rep) {
		val := "-"
		if tg.Known {
			val = fmtRatio(tg.Value)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", tg.Name, val, fmtRatio(tg.Limit), tg.Verdict(), tg.Detail)
	}

	for _, threads := range rep.Config.Threads {
		fmt.Fprintf(&b, "\n## Mean time per invocation (µs) and ratio to none: %d threads, %d executions\n\n", threads, n)
		var modes []string
		for _, st := range rep.Modes {
			if st.Reason == "" {
				modes = append(modes, st.Mode.Name)
			}
		}
		fmt.Fprintf(&b, "| workload | %s |\n|---|%s\n", strings.Join(modes, " | "), strings.Repeat("---|", len(modes)))
		for _, wl := range rep.Config.Workloads {
			fmt.Fprintf(&b, "| %s |", wl.Name)
			base := FindRow(rep.Rows, ModeNone, wl.Name, threads, n)
			for _, mode := range modes {
				r := FindRow(rep.Rows, mode, wl.Name, threads, n)
				switch {
				case r == nil:
					fmt.Fprintf(&b, " - |")
				case r.Errors > 0:
					fmt.Fprintf(&b, " %s (%d errors) |", fmtUs(r.Mean), r.Errors)
				case base != nil && mode != ModeNone:
					fmt.Fprintf(&b, " %s (%s) |", fmtUs(r.Mean), fmtRatio(Ratio(float64(r.Mean), float64(base.Mean))))
				default:
					fmt.Fprintf(&b, " %s |", fmtUs(r.Mean))
				}
			}
			b.WriteString("\n")
		}
	}

	if len(rep.Starts) > 0 {
		fmt.Fprintf(&b, "\n## Start-up per mode\n\nFor fsvirt thread mode this is `impl.NewPool`: per worker, a thread that unshares its\nfs_struct and installs the filter with its own listener (the filter installation time of the research).\n\n")
		fmt.Fprintf(&b, "| mode | threads | starts | median total (ms) | median per thread (ms) |\n|---|---|---|---|---|\n")
		for _, s := range MedianStarts(rep.Starts) {
			fmt.Fprintf(&b, "| %s | %d | %d | %.2f | %.3f |\n", s.Mode, s.Threads, s.Count, float64(s.Total)/1e6, float64(s.PerThread)/1e6)
		}
	}

	if len(rep.Scaling) > 0 {
		r0 := rep.Scaling[0]
		fmt.Fprintf(&b, "\n## Supervisor threads: %s, %s, %d workers, %d executions\n\n", r0.Mode, r0.Workload, r0.Threads, r0.Executions)
		fmt.Fprintf(&b, "| supervisors | throughput (/s) | ratio to 1 | mean (µs) | p99 (µs) | errors |\n|---|---|---|---|---|---|\n")
		for _, r := range rep.Scaling {
			fmt.Fprintf(&b, "| %d | %.0f | %s | %s | %s | %d |\n", r.Supervisors, r.Throughput,
				fmtRatio(Ratio(r.Throughput, r0.Throughput)), fmtUs(r.Mean), fmtUs(r.P99), r.Errors)
		}
	}

	fmt.Fprintf(&b, "\n## All measurements\n\n")
	fmt.Fprintf(&b, "Overhead per call is (mean − none's mean) / intercepted syscalls per invocation. Peak RSS is\nthat of the process that measured the mode (one per mode and thread count; MiB); child RSS the\nlargest of the per-invocation processes.\n\n")
	fmt.Fprintf(&b, "| mode | workload | threads | executions | mean | p50 | p99 | throughput (/s) | calls/inv | overhead/call (µs) | copied/inv | peak RSS | child RSS | errors |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.Rows {
		over := "-"
		if r.HasOverhead {
			over = fmtUs(r.OverheadPerCall)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %s | %s | %.0f | %.1f | %s | %s | %s | %s | %d |\n",
			r.Mode, r.Workload, r.Threads, r.Executions, fmtUs(r.Mean), fmtUs(r.P50), fmtUs(r.P99), r.Throughput,
			r.CallsPerInv, over, fmtBytes(r.BytesPerInv), fmtKiB(r.PeakRSSKiB), fmtKiB(r.ChildRSSKiB), r.Errors)
	}
	var errs []string
	for _, r := range append(append([]Row{}, rep.Rows...), rep.Scaling...) {
		if r.Errors > 0 {
			errs = append(errs, fmt.Sprintf("- %s %s t=%d n=%d: %d errors, first: %s", r.Mode, r.Workload, r.Threads, r.Executions, r.Errors, r.FirstError))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(&b, "\n## Errors\n\n%s\n", strings.Join(errs, "\n"))
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(&b, "\n## Skipped (time budget)\n\n- %s\n", strings.Join(rep.Skipped, "\n- "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// StartSummary is the median start cost of a mode at a thread count over Count starts.
type StartSummary struct {
	StartCost
	Count int
}

// MedianStarts groups starts by mode and threads, in order of first appearance, and takes the
// median of each group. Modes with nothing to start (under 10 µs) are left out.
func MedianStarts(starts []StartCost) []StartSummary {
	type key struct {
		mode    string
		threads int
	}
	var order []key
	groups := map[key][]time.Duration{}
	for _, s := range starts {
		k := key{s.Mode, s.Threads}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s.Total)
	}
	var out []StartSummary
	for _, k := range order {
		med := Summarize(groups[k]).P50
		if med < 10*time.Microsecond {
			continue
		}
		out = append(out, StartSummary{StartCost{Mode: k.mode, Threads: k.threads, Total: med,
			PerThread: med / time.Duration(k.threads)}, len(groups[k])})
	}
	return out
}
