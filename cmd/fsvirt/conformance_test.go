package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// The reference passes, no isolation fails, and --impl-cmd runs fsvirt through its own CLI.
func TestConformance(t *testing.T) {
	requireEngine(t)
	r := fsvirt(t, "conformance", "--impl", "copy", "--impl", "none", "--run", "^isolation/", "--table")
	if r.code != 1 {
		t.Errorf("exit status %d, want 1 (none fails)\n%s%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if last := lines[len(lines)-1]; last != "8 passed, 8 failed" {
		t.Errorf("last line %q, want %q\n%s", last, "8 passed, 8 failed", r.stdout)
	}
	for _, want := range []string{"copy: 8 passed, 0 failed", "none: 0 passed, 8 failed", "| isolation | 8/8 | 0/8 |"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("no %q in\n%s", want, r.stdout)
		}
	}

	r = fsvirt(t, "conformance", "--json", "--impl-cmd", fsvirtBin+" run --tree {dir} --", "--run", "^(isolation|copy-up)/(concurrent|write)")
	var rep struct {
		Impl           string
		Passed, Failed int
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || rep.Passed == 0 || rep.Failed != 0 {
		t.Errorf("exit status %d, report %+v (%v)\n%s%s", r.code, rep, err, r.stdout, r.stderr)
	}
}

func TestConformanceUsage(t *testing.T) {
	r := fsvirt(t, "conformance", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "--impl-cmd") || !strings.Contains(r.stdout, "fuse-overlayfs") {
		t.Errorf("exit status %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := fsvirt(t, "conformance", "--impl", "nosuch"); r.code != 125 || !strings.Contains(r.stderr, "nosuch") {
		t.Errorf("--impl nosuch: exit status %d:\n%s", r.code, r.stderr)
	}
}
