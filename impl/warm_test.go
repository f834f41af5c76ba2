package impl

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// warmShell is a warm worker running sh, which executes one line of its input per step and says
// "done" after each.
type warmShell struct {
	t   *testing.T
	in  *os.File
	out *bufio.Reader
	w   *WarmWorker
}

func startWarmShell(t *testing.T, tree string) (*Warm, *warmShell) {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	script := `while IFS= read -r line; do eval "$line"; echo done; done`
	h, err := NewWarm(WarmConfig{Trees: []string{tree}, Store: t.TempDir(), Path: "/bin/sh",
		Args: []string{"sh", "-c", script}, Stdin: inR, Stdout: outW})
	if err != nil {
		t.Fatal(err)
	}
	w, err := h.Start("T=" + tree)
	inR.Close()
	outW.Close()
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { inW.Close(); outR.Close() })
	return h, &warmShell{t: t, in: inW, out: bufio.NewReader(outR), w: w}
}

// do runs one line of shell in the worker and returns what it printed before "done".
func (s *warmShell) do(line string) string {
	s.t.Helper()
	if _, err := s.in.WriteString(line + "\n"); err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for {
		l, err := s.out.ReadString('\n')
		if err != nil {
			s.t.Fatalf("%q: %v (output so far %q)", line, err, out)
		}
		l = strings.TrimSuffix(l, "\n")
		if l == "done" {
			return strings.Join(out, "\n")
		}
		out = append(out, l)
	}
}

func (s *warmShell) request(line string) (string, *WarmRequest) {
	s.t.Helper()
	if err := s.w.BeginRequest(); err != nil {
		s.t.Fatal(err)
	}
	out := s.do(line)
	res, err := s.w.EndRequest(true)
	if err != nil {
		s.t.Fatal(err)
	}
	return out, res
}

// TestWarmRequestsSeeFreshViews: one worker process serves requests one after another; each sees
// the shared tree and its own writes, nothing of the previous request's, and the shared tree stays
// as it was. Between requests the worker changes nothing.
func TestWarmRequestsSeeFreshViews(t *testing.T) {
	tree := t.TempDir()
	mkTree(t, tree, "file log base", "dir d")
	before := hashTree(t, tree)
	h, s := startWarmShell(t, tree)
	defer h.Close()

	out, res := s.request(`echo one >> $T/log; echo new > $T/d/new; cat $T/log $T/d/new`)
	if out != "baseone\nnew" { // mkTree writes "base" without a newline
		t.Errorf("first request read %q", out)
	}
	if len(res.Changes) != 2 || res.Tainted != "" {
		t.Errorf("first request: changes %v, tainted %q", res.Changes, res.Tainted)
	}
	out, res = s.request(`cat $T/log; cat $T/d/new 2>/dev/null || echo no-new`)
	if out != "baseno-new" {
		t.Errorf("second request read %q, want the shared file only", out)
	}
	if len(res.Changes) != 0 {
		t.Errorf("second request changed %v", res.Changes)
	}
	if out := s.do(`{ echo x > $T/between; } 2>/dev/null && echo wrote || echo refused`); out != "refused" {
		t.Errorf("a write between requests: %q", out)
	}
	if after := hashTree(t, tree); after != before {
		t.Error("the shared tree changed")
	}
}

// TestWarmLeftoverProcessesFencedAndKilled: a process the worker started in a request and left
// running sees nothing of the next request and is killed when it begins.
func TestWarmLeftoverProcessesFencedAndKilled(t *testing.T) {
	tree := t.TempDir()
	mkTree(t, tree, "file f shared")
	h, s := startWarmShell(t, tree)
	defer h.Close()
	// The leftover writes its pid, then waits to be killed.
	out, res := s.request(`sh -c 'echo $$ > $T/pid; exec sleep 100' & sleep 0.2; cat $T/pid`)
	pid, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("first request printed %q", out)
	}
	if res.Fenced == 0 {
		t.Errorf("no process fenced; the sleep (pid %d) was left running", pid)
	}
	if _, err := os.Stat("/proc/" + out); err != nil {
		t.Fatalf("leftover already gone before the next request: %v", err)
	}
	if err := s.w.BeginRequest(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + out + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			break // killed (a zombie until its parent, the worker, reaps it)
		}
		if time.Now().After(deadline) {
			t.Fatalf("leftover %d still running after the next request began", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := s.w.EndRequest(true); err != nil {
		t.Fatal(err)
	}
}

// TestWarmTaintedWorker: a worker that keeps a descriptor of a file in a request's private layer is
// reported, so that it serves no other request.
func TestWarmTaintedWorker(t *testing.T) {
	tree := t.TempDir()
	h, s := startWarmShell(t, tree)
	defer h.Close()
	_, res := s.request(`exec 7>$T/held; echo secret >&7`)
	if !strings.Contains(res.Tainted, "descriptor 7") {
		t.Errorf("Tainted = %q, want descriptor 7", res.Tainted)
	}
	_, res = s.request(`exec 7>&-; echo x > $T/other`)
	if res.Tainted != "" {
		t.Errorf("Tainted = %q after the descriptor was closed", res.Tainted)
	}
	if _, err := os.Stat(filepath.Join(tree, "held")); err == nil {
		t.Error("the held file reached the shared tree")
	}
}
