package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/conformance/driver"
	"github.com/fsvirt/fsvirt/internal/sysexec"
	"github.com/fsvirt/fsvirt/internal/treetest"
)

// RunTimeout bounds one run of a case in an implementation.
const RunTimeout = 60 * time.Second

// Suite checks implementations against the cases. It owns a workspace with
// the shared directory, and caches the reference's observations per case.
// A Suite checks one case at a time.
type Suite struct {
	Cases []*driver.Case
	ws    string // workspace: tree/ is the shared directory, sync-*/ the runs' sync directories
	ref   map[string][]runOutput
}

// NewSuite makes a workspace for cases under $TMPDIR.
func NewSuite(cases []*driver.Case) (*Suite, error) {
	ws, err := os.MkdirTemp("", "fsvirt-conform-")
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(ws, "tree"), 0o755); err != nil {
		return nil, errors.Join(err, os.RemoveAll(ws))
	}
	return &Suite{Cases: cases, ws: ws, ref: map[string][]runOutput{}}, nil
}

// Dir is the shared directory to make implementations for.
func (s *Suite) Dir() string { return filepath.Join(s.ws, "tree") }

// Close removes the workspace.
func (s *Suite) Close() error { return os.RemoveAll(s.ws) }

// Result is the verdict on one case for one implementation.
type Result struct {
	Case     string   `json:"case"`
	Category string   `json:"category"`
	Failures []string `json:"failures,omitempty"` // none: passed
}

// Passed reports whether the case passed.
func (r Result) Passed() bool { return len(r.Failures) == 0 }

// runOutput is what one run observed, or why it could not run.
type runOutput struct {
	obs []driver.Observation
	err error
}

// Check runs case c in im, and in the reference, on a fresh shared tree:
// the observations must be the reference's, the case's expectations must
// hold, and the shared tree must be as it was (treetest.Exact: contents,
// modes, owners, xattrs, links, inode numbers and times).
func (s *Suite) Check(ctx context.Context, im Impl, c *driver.Case) Result {
	res := Result{Case: c.Name, Category: c.Category}
	failf := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
	ref, ok := s.ref[c.Name]
	if !ok {
		if err := s.reset(c); err != nil {
			failf("build the shared tree: %v", err)
			return res
		}
		ref = s.runAll(ctx, copyImpl{}, c)
		s.ref[c.Name] = ref
	}
	if err := s.reset(c); err != nil {
		failf("build the shared tree: %v", err)
		return res
	}
	before, err := treetest.Walk(s.Dir())
	if err != nil {
		failf("snapshot the shared tree: %v", err)
		return res
	}
	got := s.runAll(ctx, im, c)
	after, err := treetest.Walk(s.Dir())
	if err != nil {
		failf("snapshot the shared tree afterwards: %v", err)
	} else if d := before.Diff(after, treetest.Exact); d != nil {
		if len(d) > maxSnapshotDiffs {
			d = append(d[:maxSnapshotDiffs], fmt.Sprintf("and %d more", len(d)-maxSnapshotDiffs))
		}
		failf("the shared tree changed: %s", strings.Join(d, "; "))
	}
	scripts := c.Scripts()
	for r := range scripts {
		run := ""
		if len(scripts) > 1 {
			run = fmt.Sprintf("run %d ", r)
		}
		if ref[r].err != nil {
			failf("%sreference failed: %v", run, ref[r].err)
			continue
		}
		if got[r].err != nil {
			failf("%sfailed: %v", run, got[r].err)
		}
		for _, f := range compare(scripts[r], ref[r].obs, got[r].obs) {
			failf("%s%s", run, f)
		}
	}
	return res
}

// reset empties the shared directory and builds c's tree in it.
func (s *Suite) reset(c *driver.Case) error {
	entries, err := os.ReadDir(s.Dir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.Dir(), e.Name())); err != nil {
			return err
		}
	}
	return sysexec.Build(s.Dir(), fsvirt.MustParseTree(c.Tree...))
}

// runAll performs every run of c in im: all at once, or one after the other
// for a sequential case.
func (s *Suite) runAll(ctx context.Context, im Impl, c *driver.Case) []runOutput {
	scripts := c.Scripts()
	out := make([]runOutput, len(scripts))
	syncDir, err := os.MkdirTemp(s.ws, "sync-")
	if err != nil {
		for i := range out {
			out[i].err = err
		}
		return out
	}
	defer os.RemoveAll(syncDir)
	one := func(i int) {
		ctx, cancel := context.WithTimeout(ctx, RunTimeout)
		defer cancel()
		data, err := im.Run(ctx, driver.Args{Root: s.Dir(), Sync: syncDir, Case: c, Run: i})
		obs, perr := parse(data)
		out[i] = runOutput{obs, errors.Join(err, perr)}
	}
	if c.Sequential {
		for i := range scripts {
			one(i)
		}
		return out
	}
	var wg sync.WaitGroup
	for i := range scripts {
		wg.Go(func() { one(i) })
	}
	wg.Wait()
	return out
}

func parse(data []byte) ([]driver.Observation, error) {
	var obs []driver.Observation
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var o driver.Observation
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return obs, fmt.Errorf("driver output line %d: %w", len(obs)+1, err)
		}
		obs = append(obs, o)
	}
	return obs, sc.Err()
}

// maxStepDiffs bounds the steps a failure lists per run.
const maxStepDiffs = 4

// compare checks one run's observations against the reference's and the
// script's expectations: a line per step that differs.
func compare(script []driver.Op, ref, got []driver.Observation) []string {
	var fails []string
	differ := 0
	for i := range max(len(ref), len(got)) {
		var want map[string]any
		if i < len(script) {
			want = script[i].Expect
		}
		var problems []string
		switch {
		case i >= len(got):
			problems = append(problems, "no observation, the reference "+brief(ref[i]))
		case i >= len(ref):
			problems = append(problems, "observed "+brief(got[i])+", which the reference has not")
		default:
			if want != nil && !matches(want, ref[i]) {
				fails = append(fails, fmt.Sprintf("[case error] step %d %s: the reference observed %s, the case expects %s",
					i, ref[i].Op, brief(ref[i]), mustJSON(want)))
			}
			if b := brief(got[i]); b != brief(ref[i]) {
				problems = append(problems, "observed "+b+", the reference "+brief(ref[i]))
			} else if want != nil && !matches(want, got[i]) {
				problems = append(problems, "observed "+b) // and the case error above
			}
		}
		if len(problems) == 0 {
			continue
		}
		if differ++; differ > maxStepDiffs {
			continue
		}
		label := ""
		if i < len(got) {
			label = got[i].Op
		} else {
			label = ref[i].Op
		}
		line := fmt.Sprintf("step %d %s: %s", i, label, strings.Join(problems, "; "))
		if want != nil && i < len(got) && !matches(want, got[i]) {
			line += ", the case expects " + mustJSON(want)
		}
		fails = append(fails, line)
		if i >= len(got) || i >= len(ref) {
			break
		}
	}
	if differ > maxStepDiffs {
		fails = append(fails, fmt.Sprintf("and %d more steps differ", differ-maxStepDiffs))
	}
	return fails
}

// brief is an observation's JSON without its step and op label, which may differ between drivers.
func brief(o driver.Observation) string {
	o.Step, o.Op = 0, ""
	s := mustJSON(o)
	s = strings.TrimPrefix(s, `{"step":0,"op":"",`)
	return "{" + s
}

func mustJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("[bug] conformance: " + err.Error())
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// matches reports whether obs holds every field of want; a field obs omits is its zero value.
func matches(want map[string]any, obs driver.Observation) bool {
	var got map[string]any
	if err := json.Unmarshal([]byte(mustJSON(obs)), &got); err != nil {
		panic("[bug] conformance: " + err.Error())
	}
	return matchValue(want, got)
}

func matchValue(want, got any) bool {
	if w, ok := want.(map[string]any); ok {
		g, _ := got.(map[string]any)
		for k, v := range w {
			if !matchValue(v, g[k]) {
				return false
			}
		}
		return true
	}
	if got == nil {
		switch w := want.(type) {
		case nil:
			return true
		case string:
			return w == ""
		case float64:
			return w == 0
		case bool:
			return !w
		case []any:
			return len(w) == 0
		}
		return false
	}
	return reflect.DeepEqual(want, got)
}

// maxSnapshotDiffs bounds the differences (treetest.Snapshot.Diff) a changed shared tree is
// described by.
const maxSnapshotDiffs = 4
