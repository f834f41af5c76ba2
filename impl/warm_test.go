package impl

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/internal/treetest"
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
	script := `while IFS= read -r line; do eval "$line"; echo done; done`
	return startWarmLoop(t, tree, "/bin/sh", "sh", "-c", script)
}

// startWarmLoop starts a warm worker running path with args, a loop that executes one line of its
// input per step and prints "done" after each.
func startWarmLoop(t *testing.T, tree, path string, args ...string) (*Warm, *warmShell) {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewWarm(WarmConfig{Trees: []string{tree}, Store: t.TempDir(), Path: path,
		Args: args, Stdin: inR, Stdout: outW})
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
	treetest.Build(t, tree, "file log base", "dir d")
	before := treetest.Snap(t, tree)
	h, s := startWarmShell(t, tree)
	defer h.Close()

	out, res := s.request(`echo one >> $T/log; echo new > $T/d/new; cat $T/log $T/d/new`)
	if out != "baseone\nnew" { // treetest.Build writes "base" without a newline
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
	if d := before.Diff(treetest.Snap(t, tree), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}

// TestWarmLeftoverProcessesFencedAndKilled: a process the worker started in a request and left
// running sees nothing of the next request and is killed when it begins.
func TestWarmLeftoverProcessesFencedAndKilled(t *testing.T) {
	tree := t.TempDir()
	treetest.Build(t, tree, "file f shared")
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

// TestWarmHeldDescriptorRevoked: a descriptor of a file in a request's private layer that the
// worker keeps is revoked at its next notified call (an empty, sealed memfd in its place); until
// then the worker cannot begin another request.
func TestWarmHeldDescriptorRevoked(t *testing.T) {
	tree := t.TempDir()
	h, s := startWarmShell(t, tree)
	defer h.Close()
	_, res := s.request(`exec 7>$T/held; echo secret >&7`)
	if res.Revoking != 1 || res.Tainted != "" {
		t.Errorf("Revoking %d, Tainted %q; want 1 descriptor and nothing else", res.Revoking, res.Tainted)
	}
	if err := s.w.BeginRequest(); !errors.Is(err, ErrHeld) {
		t.Fatalf("BeginRequest before any notified call: %v, want ErrHeld", err)
	}
	s.do(`cd $T`) // chdir: a notification of the worker's own
	if out := s.do(`cat <&7; { echo more >&7; } 2>/dev/null && echo wrote || echo refused`); out != "refused" {
		t.Errorf("descriptor 7 after the next call: %q, want empty reads and refused writes", out)
	}
	out, res := s.request(`echo x > $T/other; cat $T/other`)
	if out != "x" || res.Revoking != 0 {
		t.Errorf("the next request: %q, Revoking %d", out, res.Revoking)
	}
	if _, err := os.Stat(filepath.Join(tree, "held")); err == nil {
		t.Error("the held file reached the shared tree")
	}
}

// TestWarmTaintedWorker: a worker that keeps a mapping of a file in a request's private layer is
// reported (Tainted): a mapping cannot be revoked, and the worker is to be replaced.
func TestWarmTaintedWorker(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed (scripts/test.sh installs it; the VMs lack it)")
	}
	tree := t.TempDir()
	loop := "import os, sys\nT = os.environ['T']\nfor line in sys.stdin:\n    exec(line)\n    print('done', flush=True)"
	h, s := startWarmLoop(t, tree, python, "python3", "-c", loop)
	defer h.Close()
	_, res := s.request(`import mmap; f = open(T + '/m', 'w+b'); f.write(b'x' * 4096); f.flush(); m = mmap.mmap(f.fileno(), 4096); f.close()`)
	if !strings.Contains(res.Tainted, "a mapping of "+filepath.Join(s.w.h.st.dir)) {
		t.Errorf("Tainted = %q, want a mapping in the store", res.Tainted)
	}
	s.do(`os.stat(T)`) // revokes the descriptor mmap keeps of its own
	_, res = s.request(`m.close()`)
	if res.Tainted != "" {
		t.Errorf("Tainted = %q after the mapping was closed", res.Tainted)
	}
}

// TestWarmKillTakesDescendants: killing a worker (a timeout) kills the processes it started, also
// one that left its process group.
func TestWarmKillTakesDescendants(t *testing.T) {
	setsid, err := exec.LookPath("setsid")
	if err != nil {
		t.Skip("setsid is not installed")
	}
	tree := t.TempDir()
	h, s := startWarmShell(t, tree)
	defer h.Close()
	if err := s.w.BeginRequest(); err != nil {
		t.Fatal(err)
	}
	pid := s.do(setsid + ` sleep 100 & echo $!`)
	state := func() string {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return "gone"
		}
		return string(b)
	}
	// Until it is sleep, in a session of its own: the worker's process group no longer holds it.
	deadline := time.Now().Add(5 * time.Second)
	for f := strings.Fields(state()); len(f) < 6 || f[1] != "(sleep)" || f[5] != pid; f = strings.Fields(state()) {
		if time.Now().After(deadline) {
			t.Fatalf("process %s never became a session of its own: %s", pid, state())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.w.Kill()
	if _, err := s.w.EndRequest(false); err != nil {
		t.Fatal(err)
	}
	for st := state(); st != "gone" && !strings.Contains(st, ") Z "); st = state() {
		if time.Now().After(deadline) {
			t.Fatalf("process %s outlived its worker's Kill: %s", pid, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
