package bench

import (
	"fmt"
	"strconv"
	"strings"
)

func workloadNames() string {
	var names []string
	for _, w := range Workloads {
		names = append(names, w.Name)
	}
	return strings.Join(names, ",")
}

func modeNames() string {
	var names []string
	for _, m := range Modes {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}

// ParseInts parses a comma-separated list of integers in [lo, hi], such as "1,8,50".
func ParseInts(s string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		if n < lo || n > hi {
			return nil, fmt.Errorf("%d is out of range [%d, %d]", n, lo, hi)
		}
		out = append(out, n)
	}
	return out, nil
}

// ParseModes parses a comma-separated list of mode names; "all" stands for every mode.
func ParseModes(s string) ([]*Mode, error) {
	if s == "all" {
		return Modes, nil
	}
	var out []*Mode
	for _, f := range strings.Split(s, ",") {
		m := ModeByName(strings.TrimSpace(f))
		if m == nil {
			return nil, fmt.Errorf("unknown mode %q (known: %s)", f, modeNames())
		}
		out = append(out, m)
	}
	return out, nil
}

// ParseWorkloads parses a comma-separated list of workload names; "all" stands for every workload.
func ParseWorkloads(s string) ([]*Workload, error) {
	if s == "all" {
		return Workloads, nil
	}
	var out []*Workload
	for _, f := range strings.Split(s, ",") {
		w := WorkloadByName(strings.TrimSpace(f))
		if w == nil {
			return nil, fmt.Errorf("unknown workload %q (known: %s)", f, workloadNames())
		}
		out = append(out, w)
	}
	return out, nil
}
