package conformance

import (
	"context"
	"fmt"
	"io"

	"github.com/fsvirt/fsvirt/conformance/driver"
)

// Report is one implementation's results.
type Report struct {
	Impl    string   `json:"impl"`
	Skipped string   `json:"skipped,omitempty"` // why it did not run
	Results []Result `json:"results,omitempty"`
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
}

// CheckAll makes an implementation with f and checks every case of s in it.
// An error is returned only when the implementation could not be made or
// closed; failed cases are in the report.
func (s *Suite) CheckAll(ctx context.Context, name string, f Factory) (*Report, error) {
	im, err := f(s.Dir())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	rep := &Report{Impl: name}
	for _, c := range s.Cases {
		if ctx.Err() != nil {
			break
		}
		rep.add(s.Check(ctx, im, c))
	}
	if cl, ok := im.(io.Closer); ok {
		if err := cl.Close(); err != nil {
			return rep, fmt.Errorf("%s: close: %w", name, err)
		}
	}
	return rep, ctx.Err()
}

func (r *Report) add(res Result) {
	r.Results = append(r.Results, res)
	if res.Passed() {
		r.Passed++
	} else {
		r.Failed++
	}
}

// byCategory counts passed and failed cases per category.
func (r *Report) byCategory() map[string][2]int {
	m := map[string][2]int{}
	for _, res := range r.Results {
		n := m[res.Category]
		if res.Passed() {
			n[0]++
		} else {
			n[1]++
		}
		m[res.Category] = n
	}
	return m
}

// WriteText prints r: per category, cases passed and failed; each failed
// case with its failures; and the line "N passed, M failed".
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	if r.Skipped != "" {
		ew.printf("== %s: skipped: %s\n", r.Impl, r.Skipped)
		return ew.err
	}
	ew.printf("== %s\n", r.Impl)
	counts := r.byCategory()
	for _, cat := range driver.Categories {
		if n, ok := counts[cat]; ok {
			ew.printf("  %-12s %3d passed, %d failed\n", cat, n[0], n[1])
		}
	}
	for _, res := range r.Results {
		if !res.Passed() {
			ew.printf("  FAIL %s/%s\n", res.Category, res.Case)
			for _, f := range res.Failures {
				ew.printf("       %s\n", f)
			}
		}
	}
	ew.printf("%s: %d passed, %d failed\n", r.Impl, r.Passed, r.Failed)
	return ew.err
}

// WriteTable prints a Markdown table: a row per category, a column per
// report, each cell "passed/total"; the last row totals.
func WriteTable(w io.Writer, reports []*Report) error {
	ew := &errWriter{w: w}
	head, rule := "| category |", "|---|"
	for _, r := range reports {
		head += " " + r.Impl + " |"
		rule += "---|"
	}
	ew.printf("%s\n%s\n", head, rule)
	cell := func(n [2]int) string {
		if n[0]+n[1] == 0 {
			return "–"
		}
		return fmt.Sprintf("%d/%d", n[0], n[0]+n[1])
	}
	for _, cat := range append(append([]string{}, driver.Categories...), "total") {
		row := "| " + cat + " |"
		for _, r := range reports {
			switch {
			case r.Skipped != "":
				row += " n/a |"
			case cat == "total":
				row += fmt.Sprintf(" **%s** |", cell([2]int{r.Passed, r.Failed}))
			default:
				row += " " + cell(r.byCategory()[cat]) + " |"
			}
		}
		ew.printf("%s\n", row)
	}
	return ew.err
}

// FailedCases lists "category/case" of every failed case.
func (r *Report) FailedCases() []string {
	var out []string
	for _, res := range r.Results {
		if !res.Passed() {
			out = append(out, res.Category+"/"+res.Case)
		}
	}
	return out
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
