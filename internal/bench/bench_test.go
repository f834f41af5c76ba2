package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

func TestSummarize(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name           string
		in             []time.Duration
		mean, p50, p99 time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one-value", ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{"unsorted-input", ms(3, 1, 2), 2 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond},
		{"even-count-p50-is-lower-middle", ms(1, 2, 3, 4), 2500 * time.Microsecond, 2 * time.Millisecond, 4 * time.Millisecond},
		{"p99-of-hundred-is-99th", ms(seq(1, 100)...), 50500 * time.Microsecond, 50 * time.Millisecond, 99 * time.Millisecond},
		{"p99-of-thousand-with-outliers", ms(append(repeat(1, 989), repeat(1000, 11)...)...), 11989 * time.Microsecond, time.Millisecond, 1000 * time.Millisecond},
		{"p99-ignores-ten-outliers-in-thousand", ms(append(repeat(1, 990), repeat(1000, 10)...)...), 10990 * time.Microsecond, time.Millisecond, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Summarize(tt.in)
			if s.Mean != tt.mean || s.P50 != tt.p50 || s.P99 != tt.p99 || s.N != len(tt.in) {
				t.Errorf("Summarize = %+v, want mean %v p50 %v p99 %v", s, tt.mean, tt.p50, tt.p99)
			}
		})
	}
}

func seq(lo, hi int) []int {
	var out []int
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestParseInts(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr string
	}{
		{"1,8,50", []int{1, 8, 50}, ""},
		{" 100 , 10_000", []int{100, 10000}, ""},
		{"0", nil, "out of range"},
		{"1,x", nil, `"x" is not a number`},
		{"", nil, "not a number"},
		{"2000000", nil, "out of range"},
	}
	for _, tt := range tests {
		got, err := ParseInts(tt.in, 1, 1_000_000)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseInts(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !equalInts(got, tt.want) {
			t.Errorf("ParseInts(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseModesAndWorkloads(t *testing.T) {
	if ms, err := ParseModes("all"); err != nil || len(ms) != 7 {
		t.Errorf("ParseModes(all) = %d modes, %v; want 7", len(ms), err)
	}
	ms, err := ParseModes("none,thread-fast")
	if err != nil || len(ms) != 2 || ms[0].Name != ModeNone || ms[1].Name != ModeThreadFast {
		t.Errorf("ParseModes(none,thread-fast) = %v, %v", ms, err)
	}
	if _, err := ParseModes("none,docker"); err == nil || !strings.Contains(err.Error(), `unknown mode "docker"`) || !strings.Contains(err.Error(), "fuse-overlayfs") {
		t.Errorf("ParseModes(docker) error = %v, want one naming it and listing the known modes", err)
	}
	if ws, err := ParseWorkloads("all"); err != nil || len(ws) != 6 {
		t.Errorf("ParseWorkloads(all) = %d workloads, %v; want 6", len(ws), err)
	}
	if _, err := ParseWorkloads("fib"); err == nil || !strings.Contains(err.Error(), "fibonacci") {
		t.Errorf("ParseWorkloads(fib) error = %v, want one listing the known workloads", err)
	}
}

// TestModeAvailability: each mode says why it cannot run on a host that lacks what it needs.
func TestModeAvailability(t *testing.T) {
	full := Host{Root: true, Filesystems: "nodev\tsysfs\nnodev\toverlay\n", FuseOverlayfs: "/usr/bin/fuse-overlayfs"}
	noSeccomp := errors.New("kernel 5.4 lacks SECCOMP_IOCTL_NOTIF_ADDFD (Linux 5.9)")
	tests := []struct {
		name string
		host Host
		mode string
		want string // "" means available
	}{
		{"none-always-runs", Host{}, ModeNone, ""},
		{"chroot-as-root", full, ModeChroot, ""},
		{"chroot-needs-root", Host{}, ModeChroot, "needs root"},
		{"thread-needs-seccomp", Host{Seccomp: noSeccomp}, ModeThreadFast, "Linux 5.9"},
		{"strict-needs-seccomp", Host{Seccomp: noSeccomp}, ModeThreadStrict, "Linux 5.9"},
		{"process-needs-seccomp", Host{Seccomp: noSeccomp}, ModeProcess, "Linux 5.9"},
		{"thread-without-root", Host{}, ModeThreadFast, ""},
		{"overlayfs-as-root", full, ModeOverlayfs, ""},
		{"overlayfs-needs-root", Host{Filesystems: full.Filesystems}, ModeOverlayfs, "needs root"},
		{"overlayfs-needs-the-filesystem", Host{Root: true, Filesystems: "nodev\toverlayx\n"}, ModeOverlayfs, "no overlay file system"},
		{"fuse-overlayfs-installed", full, ModeFuseOverlayfs, ""},
		{"fuse-overlayfs-missing", Host{Root: true}, ModeFuseOverlayfs, "not installed"},
		{"fuse-without-dev-fuse", Host{Root: true, FuseOverlayfs: "/x", DevFuse: fs.ErrNotExist}, ModeFuseOverlayfs, "cannot use FUSE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ModeByName(tt.mode).Check(tt.host)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Check = %v, want available", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Check = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestWorkloadsLeaveTreeUnchanged: every workload succeeds on a fresh fixture, and after Restore
// the tree is byte for byte what it was: mode none can run them over and over.
func TestWorkloadsLeaveTreeUnchanged(t *testing.T) {
	root := t.TempDir()
	if err := BuildFixture(root, 2); err != nil {
		t.Fatal(err)
	}
	before := treetest.Snap(t, root)
	for _, w := range Workloads {
		for seq := 0; seq < 12; seq++ {
			if err := w.Run(root, seq%2, seq); err != nil {
				t.Fatalf("%s seq %d: %v", w.Name, seq, err)
			}
			if err := w.Restore(root, seq%2, seq); err != nil {
				t.Fatalf("%s seq %d: restore: %v", w.Name, seq, err)
			}
		}
		if d := before.Diff(treetest.Snap(t, root), treetest.Data); d != nil {
			t.Errorf("%s changed the tree: %q", w.Name, d)
		}
	}
}

// TestHashingReplacesContent: the hashing workload leaves the SHA-256 of the input in its place.
func TestHashingReplacesContent(t *testing.T) {
	root := t.TempDir()
	if err := BuildFixture(root, 1); err != nil {
		t.Fatal(err)
	}
	in, err := os.ReadFile(filepath.Join(root, hashPath(0)))
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != hashSize {
		t.Fatalf("input has %d bytes, want %d", len(in), hashSize)
	}
	if err := WorkloadByName(Hashing).Run(root, 0, 0); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(root, hashPath(0)))
	sum := sha256.Sum256(in)
	if want := []byte(strings.TrimSpace(string(got))); !bytes.Equal(want, []byte(hexString(sum[:]))) {
		t.Errorf("file holds %q, want the input's SHA-256", got)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

// TestMiscIsDeterministic: every mode sees the same sequence of picks, and all five are picked.
func TestMiscIsDeterministic(t *testing.T) {
	seen := map[string]bool{}
	for seq := 0; seq < 200; seq++ {
		a, b := miscPick(seq), miscPick(seq)
		if a != b {
			t.Fatalf("seq %d picked %s, then %s", seq, a.Name, b.Name)
		}
		if a.Name == Misc {
			t.Fatalf("seq %d picked misc itself", seq)
		}
		seen[a.Name] = true
	}
	if len(seen) != 5 {
		t.Errorf("200 picks chose %d workloads, want all 5: %v", len(seen), seen)
	}
}

// TestNeedsCoverWhatRunTouches: a workload run in a tree that holds only what Needs lists
// succeeds (the chroot mode copies nothing else).
func TestNeedsCoverWhatRunTouches(t *testing.T) {
	full := t.TempDir()
	if err := BuildFixture(full, 3); err != nil {
		t.Fatal(err)
	}
	for _, w := range Workloads {
		for seq := 0; seq < 10; seq++ {
			root := t.TempDir()
			os.MkdirAll(filepath.Join(root, "rw"), 0o755)
			for _, rel := range w.Needs(2, seq) {
				os.MkdirAll(filepath.Dir(filepath.Join(root, rel)), 0o755)
				if err := copyFile(filepath.Join(full, rel), filepath.Join(root, rel)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Run(root, 2, seq); err != nil {
				t.Errorf("%s seq %d with only %v: %v", w.Name, seq, w.Needs(2, seq), err)
			}
		}
	}
}

func sampleReport() *Report {
	wl := []*Workload{WorkloadByName(Hello), WorkloadByName(Misc)}
	row := func(mode, w string, mean time.Duration, rss int64, calls float64) Row {
		return Row{Mode: mode, Workload: w, Threads: 50, Executions: 1000,
			Summary:    Summary{N: 1000, Mean: mean, P50: mean, P99: 2 * mean},
			Throughput: 1e6 / float64(mean/time.Microsecond), CallsPerInv: calls, PeakRSSKiB: rss}
	}
	rows := []Row{
		row(ModeNone, Hello, 10*time.Microsecond, 10000, 0),
		row(ModeNone, Misc, 100*time.Microsecond, 10000, 0),
		row(ModeThreadFast, Hello, 10400*time.Nanosecond, 10500, 1),
		row(ModeThreadFast, Misc, 300*time.Microsecond, 12000, 5),
		row(ModeChroot, Hello, 5*time.Millisecond, 10000, 0),
		row(ModeChroot, Misc, 5*time.Millisecond, 10000, 0),
	}
	rows[5].Errors, rows[5].FirstError = 1, "child: exit status 1: boom, with a comma"
	finish(rows)
	return &Report{
		Start: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), End: time.Date(2026, 11, 23, 12, 5, 0, 0, time.UTC),
		Machine: Machine{Kernel: "6.18.0", CPUs: 2},
		Config:  Config{Workloads: wl, Threads: []int{50}, Executions: []int{1000}},
		Modes: []ModeStatus{{Mode: ModeByName(ModeNone)}, {Mode: ModeByName(ModeChroot)},
			{Mode: ModeByName(ModeThreadFast)}, {Mode: ModeByName(ModeOverlayfs), Reason: "needs root"}},
		Rows:    rows,
		Scaling: []Row{{Mode: ModeThreadFast, Workload: ReadOnly, Threads: 50, Supervisors: 1, Executions: 100, Throughput: 1000}, {Mode: ModeThreadFast, Workload: ReadOnly, Threads: 50, Supervisors: 2, Executions: 100, Throughput: 1500}},
		Starts:  []StartCost{{Mode: ModeThreadFast, Threads: 50, Total: 20 * time.Millisecond}, {Mode: ModeThreadFast, Threads: 50, Total: 10 * time.Millisecond}, {Mode: ModeThreadFast, Threads: 50, Total: 30 * time.Millisecond}, {Mode: ModeNone, Threads: 50}},
	}
}

func TestOverheadPerCall(t *testing.T) {
	rep := sampleReport()
	r := FindRow(rep.Rows, ModeThreadFast, Misc, 50, 1000)
	if !r.HasOverhead || r.OverheadPerCall != 40*time.Microsecond {
		t.Errorf("overhead per call = %v (%v), want (300-100)/5 = 40µs", r.OverheadPerCall, r.HasOverhead)
	}
	if r := FindRow(rep.Rows, ModeChroot, Misc, 50, 1000); r.HasOverhead {
		t.Errorf("chroot intercepts nothing but has an overhead per call: %v", r.OverheadPerCall)
	}
}

func TestTargets(t *testing.T) {
	got := map[string]Target{}
	for _, tg := range Targets(sampleReport()) {
		got[tg.Name] = tg
	}
	check := func(name, verdict string) {
		t.Helper()
		tg, ok := got[name]
		if !ok {
			t.Fatalf("no target %q among %v", name, got)
		}
		if tg.Verdict() != verdict {
			t.Errorf("%s: verdict %q (value %.3f, %s), want %q", name, tg.Verdict(), tg.Value, tg.Detail, verdict)
		}
	}
	check("thread-mode Hello World within 5% of none", "met")                 // 1.04x
	check("thread-mode Fibonacci within 5% of none", "not measured")          // no rows
	check("thread-mode Misc at least 20x faster than chroot", "not measured") // chroot misc had an error
	check("peak RSS of thread mode at most 1.1x none", "missed by 9%")        // 12000/10000 = 1.2
	if v := (Target{Value: 10, Limit: 20, Known: true}).Verdict(); v != "missed: 2.0x short" {
		t.Errorf("at-least verdict = %q", v)
	}
}

func TestWriteCSV(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCSV(&buf, sampleReport()); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("output is not valid CSV: %v", err)
	}
	if len(recs) != 1+6+2 {
		t.Fatalf("%d records, want header + 6 rows + 2 scaling rows", len(recs))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	hello := recs[3] // thread-fast hello
	if hello[col["mode"]] != ModeThreadFast || hello[col["mean_us"]] != "10.40" || hello[col["overhead_per_call_us"]] != "0.40" {
		t.Errorf("thread-fast hello row = %v", hello)
	}
	if got := recs[6][col["first_error"]]; got != "child: exit status 1: boom, with a comma" {
		t.Errorf("first_error = %q", got)
	}
	if recs[7][col["table"]] != "scaling" || recs[8][col["supervisors"]] != "2" {
		t.Errorf("scaling rows = %v, %v", recs[7], recs[8])
	}
}

func TestWriteMarkdown(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, sampleReport(), "fsvirt bench --quick"); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{
		"Command: `fsvirt bench --quick`",
		"| overlayfs | **not run**: needs root |",
		"| hello | 10.0 | 5000 (500x) | 10.4 (1.04x) |",
		"| thread-mode Hello World within 5% of none | 1.04x | 1.05x | met |",
		"| 2 | 1500 | 1.50x |",
		"| thread-fast | 50 | 3 | 20.00 | 0.400 |", // the median of three starts
		"chroot misc t=50 n=1000: 1 errors",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| none | 50 |") {
		t.Errorf("summary lists a start cost for none, which starts nothing")
	}
}

// TestFiguresRoundTrip: what cmd/fsvirt-plot reads back is what the report holds.
func TestFiguresRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	rep := sampleReport()
	if err := WriteFigures(&buf, FiguresOf(rep)); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFigures(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.Threads, f.Workloads, len(f.Modes), len(f.Rows), len(f.Scaling)) !=
		fmt.Sprint(rep.Config.Threads, []string{"hello", "misc"}, len(rep.Modes), len(rep.Rows), len(rep.Scaling)) {
		t.Errorf("read back %+v", f)
	}
	if f.Rows[0] != rep.Rows[0] {
		t.Errorf("row %+v, want %+v", f.Rows[0], rep.Rows[0])
	}
	if _, err := ReadFigures(strings.NewReader("{}")); err == nil || !strings.Contains(err.Error(), "not written by fsvirt bench") {
		t.Errorf("empty figures: err = %v", err)
	}
}

func TestProgressBar(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	b := NewBar(&buf, false)
	b.now = func() time.Time { return now }
	b.width = 10
	b.Start(200)
	now = now.Add(10 * time.Second)
	b.Add(50, "none hello")
	if got, want := b.Line(), "[==>       ]  25% 50/200 eta 30s  none hello"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
	b.Add(1, "x") // same decile: no new line when not a terminal
	b.Done()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "[==========] 100% 200/200 eta 0s  done") {
		t.Errorf("non-terminal output:\n%s", buf.String())
	}
	buf.Reset()
	tty := NewBar(&buf, true)
	tty.Start(10)
	tty.Add(10, "y")
	tty.Done()
	if !strings.HasPrefix(buf.String(), "\r\x1b[K[") || !strings.HasSuffix(buf.String(), "\n") {
		t.Errorf("terminal output %q: want in-place redraws ending in a newline", buf.String())
	}
}

func TestChildMainErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--workload", "nope", "--root", "/"},
		{"--workload", "hello"},
		{"--slot", "x"},
		{"--bogus", "1"},
		{"--root"},
	} {
		if err := ChildMain(args, &bytes.Buffer{}); err == nil {
			t.Errorf("ChildMain(%q) succeeded", args)
		}
	}
	var out bytes.Buffer
	if err := ChildMain([]string{"--workload", "fibonacci", "--root", "/nonexistent"}, &out); err != nil {
		t.Fatal(err)
	}
	if rss, err := parseChildReport(out.Bytes()); err != nil || rss <= 0 {
		t.Errorf("child report %q: rss %d, %v", out.String(), rss, err)
	}
}
