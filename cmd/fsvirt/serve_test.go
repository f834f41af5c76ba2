package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// serveFixture is a running `fsvirt serve` with one of examples/lambda's handlers, on a private
// copy of its data directory (the shared tree).
type serveFixture struct {
	t      testing.TB
	tree   string // holds data/ and the handler's copy
	store  string
	cmd    *exec.Cmd
	client *http.Client
	stderr *lockedBuffer
	exited chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lambdaHandlers are examples/lambda's handlers: how to run each, given its copy in dir.
var lambdaHandlers = []struct {
	name, file string
	need       string // a program that must be installed
	argv       func(dir string) []string
}{
	{"python", "handler.py", "python3", func(d string) []string { return []string{"python3", filepath.Join(d, "handler.py")} }},
	{"node", "handler.js", "node", func(d string) []string { return []string{"node", filepath.Join(d, "handler.js")} }},
	{"shell", "handler.sh", "curl", func(d string) []string { return []string{"sh", filepath.Join(d, "handler.sh")} }},
	{"go", "handler.go", "go", func(d string) []string { return []string{filepath.Join(d, "handler")} }},
}

// startServe starts fsvirt serve with handler (the name of one of lambdaHandlers, or "sh:SCRIPT"
// for a shell script that needs curl) and flags.
func startServe(t testing.TB, handler string, flags ...string) *serveFixture {
	t.Helper()
	requireEngine(t)
	var h = lambdaHandlers[0]
	for _, x := range lambdaHandlers {
		if x.name == handler {
			h = x
		}
	}
	if script, ok := strings.CutPrefix(handler, "sh:"); ok {
		h.name, h.need = "script", "curl"
		h.argv = func(string) []string { return []string{"sh", "-c", script} }
	}
	if _, err := exec.LookPath(h.need); err != nil {
		t.Skipf("%s is not installed (scripts/test.sh installs it; the kernel matrix's VMs lack it): %v", h.need, err)
	}
	tree := t.TempDir()
	src := filepath.Join("..", "..", "examples", "lambda")
	if err := os.CopyFS(tree, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if h.name == "go" {
		build := exec.Command("go", "build", "-o", filepath.Join(tree, "handler"), filepath.Join(tree, "handler.go"))
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build handler.go: %v\n%s", err, out)
		}
	}
	f := &serveFixture{t: t, tree: tree, store: t.TempDir(), stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	sock := filepath.Join(t.TempDir(), "gw.sock")
	args := append([]string{"serve", "--listen", "unix:" + sock, "--tree", tree, "--store", f.store}, flags...)
	args = append(append(args, "--"), h.argv(tree)...)
	f.cmd = exec.Command(fsvirtBin, args...)
	f.cmd.Env = append(os.Environ(), "FSVIRT_EXAMPLE_DATA="+filepath.Join(tree, "data"))
	f.cmd.Stderr = f.stderr
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.exited <- f.cmd.Wait() }()
	t.Cleanup(func() {
		f.cmd.Process.Kill()
		<-f.exited
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "fsvirt serve: listening on unix:") {
		t.Fatalf("first line %q, %v; stderr:\n%s", line, err, f.stderr)
	}
	go io.Copy(io.Discard, stdout)
	f.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	return f
}

type serveAnswer struct {
	status int
	body   string
	header http.Header
}

// post sends one request with the event tag; a failure is reported as status 0. It may be called
// from any goroutine.
func (f *serveFixture) post(tag string, header ...string) serveAnswer {
	req, _ := http.NewRequest("POST", "http://fsvirt/", strings.NewReader(tag))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return serveAnswer{body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return serveAnswer{resp.StatusCode, string(b), resp.Header}
}

// stop sends SIGTERM and waits for fsvirt to exit.
func (f *serveFixture) stop() error {
	f.t.Helper()
	f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-f.exited:
		f.exited <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		f.t.Fatalf("fsvirt serve still running 20 s after SIGTERM; stderr:\n%s", f.stderr)
		return nil
	}
}

// handlerProcesses lists the processes still running a program from the fixture's tree.
func (f *serveFixture) handlerProcesses() []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), f.tree) && !strings.Contains(string(b), "serve\x00") {
			out = append(out, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// TestServeHandlers runs each example handler behind fsvirt serve with two workers: concurrent
// requests each see their own append to the log only, so do consecutive ones on one worker, the
// shared tree is unchanged, and the changes come back on request.
func TestServeHandlers(t *testing.T) {
	for _, h := range lambdaHandlers {
		t.Run(h.name, func(t *testing.T) {
			if testing.Short() && h.name != "python" && h.name != "shell" {
				t.Skip("-short runs the python and shell handlers only")
			}
			f := startServe(t, h.name, "--workers", "2")
			before := treetest.Snap(t, f.tree)
			const n = 6
			var wg sync.WaitGroup
			answers := make([]serveAnswer, n)
			for i := range answers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					answers[i] = f.post(fmt.Sprintf("req%d", i))
				}()
			}
			wg.Wait()
			perWorker := map[string]int{}
			for i, a := range answers {
				if want := fmt.Sprintf("base\nreq%d\n", i); a.status != 200 || a.body != want {
					t.Errorf("request %d: %d %q, want 200 %q", i, a.status, a.body, want)
				}
				perWorker[a.header.Get("Fsvirt-Worker")]++
			}
			// Six requests on two workers: at least one served several, one after another, and
			// each saw only its own append.
			if len(perWorker) > 2 || perWorker["0"]+perWorker["1"] != n {
				t.Errorf("requests per worker: %v", perWorker)
			}
			a := f.post("tagged", "Fsvirt-Changes", "json")
			var changes []change
			if err := json.Unmarshal([]byte(a.header.Get("Fsvirt-Changes")), &changes); err != nil {
				t.Errorf("Fsvirt-Changes %q: %v", a.header.Get("Fsvirt-Changes"), err)
			}
			log := filepath.Join(f.tree, "data", "log.txt")
			if len(changes) != 1 || changes[0] != (change{"M", log}) {
				t.Errorf("changes %v, want M %s", changes, log)
			}
			a = f.post("diffed", "Fsvirt-Changes", "diff")
			if d := a.header.Values("Fsvirt-Diff"); len(d) != 1 || d[0] != "M "+log {
				t.Errorf("Fsvirt-Diff %q, want [M %s]", d, log)
			}
			if err := f.stop(); err != nil {
				t.Errorf("exit after SIGTERM: %v; stderr:\n%s", err, f.stderr)
			}
			if d := before.Diff(treetest.Snap(t, f.tree), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}

// TestServeTimeoutCrashShutdown: a request past --timeout is answered 504 and its worker killed and
// replaced, a handler's error is answered 502 with its body, a worker that exits is answered 502
// and replaced, and SIGTERM answers the request in
// flight before fsvirt exits 0, leaving no worker and no store behind.
func TestServeTimeoutCrashShutdown(t *testing.T) {
	f := startServe(t, "python", "--workers", "1", "--timeout", "1s")
	// The one worker may still be starting (python, in a view, on a loaded machine: 503 NoWorker
	// after --timeout, seen in a run beside a fuzzing VM and pjdfstest).
	if a := f.postReplaced(t, "sleep"); a.status != http.StatusGatewayTimeout {
		t.Errorf("sleep: %d %q, want 504", a.status, a.body)
	}
	if a := f.postReplaced(t, "after-timeout"); a.status != 200 || a.body != "base\nafter-timeout\n" {
		t.Errorf("after the timeout: %d %q", a.status, a.body)
	}
	if a := f.post("fail"); a.status != http.StatusBadGateway || !strings.Contains(a.body, `"errorType":"Failed"`) {
		t.Errorf("fail: %d %q, want 502 with the handler's error", a.status, a.body)
	}
	if a := f.post("crash"); a.status != http.StatusBadGateway || !strings.Contains(a.body, "WorkerExited") {
		t.Errorf("crash: %d %q, want 502 WorkerExited", a.status, a.body)
	}
	if a := f.postReplaced(t, "after-crash"); a.status != 200 || a.body != "base\nafter-crash\n" {
		t.Errorf("after the crash: %d %q", a.status, a.body)
	}
	if ps := f.handlerProcesses(); len(ps) != 1 {
		t.Errorf("handler processes: %q, want the one worker", ps)
	}
	inflight := make(chan serveAnswer, 1)
	go func() { inflight <- f.post("sleep") }()
	f.waitSleeping(t) // a request that arrives after SIGTERM is refused (503), not timed out
	if err := f.stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v; stderr:\n%s", err, f.stderr)
	}
	select {
	case a := <-inflight:
		if a.status != http.StatusGatewayTimeout {
			t.Errorf("request in flight at SIGTERM: %d %q, want 504", a.status, a.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("request in flight at SIGTERM: no answer")
	}
	if ps := f.handlerProcesses(); len(ps) != 0 {
		t.Errorf("handler processes left after exit: %q", ps)
	}
	if left, _ := filepath.Glob(filepath.Join(f.store, "fsvirt-*", "store-*")); len(left) != 0 {
		t.Errorf("stores left: %v", left)
	}
}

func TestServeUsage(t *testing.T) {
	out, err := exec.Command(fsvirtBin, "serve", "--help").Output()
	if err != nil || !strings.Contains(string(out), "AWS_LAMBDA_RUNTIME_API") {
		t.Errorf("serve --help: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workers", "0", "--", "true"}, "--workers 0: want 1 to 1024"},
		{[]string{"--timeout", "0s", "--", "true"}, "--timeout 0s: want a positive duration"},
		{[]string{"--listen", "0.0.0.0:0", "--", "true"}, "not a loopback address"},
		{[]string{"--listen", "unix:", "--", "true"}, "no socket path"},
		{[]string{"--workers", "1"}, "no command given"},
		{[]string{"--", "/nonexistent/handler"}, "/nonexistent/handler"},
		{[]string{"--max-event", "x", "--", "true"}, "not a size"},
	} {
		cmd := exec.Command(fsvirtBin, append([]string{"serve"}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 125 || !strings.Contains(string(out), tc.want) {
			t.Errorf("serve %q: %v %q, want exit 125 and %q", tc.args, err, out, tc.want)
		}
	}
}

// postReplaced posts tag once the worker that the last request ended (a timeout, a crash) has
// been replaced, or the first one has started: with --timeout 1s, a request that finds no worker within a second is answered
// 503 NoWorker, which a loaded machine's python start-up can take (half the runs at a load of 14).
// It gives up after 30 s.
func (f *serveFixture) postReplaced(t *testing.T, tag string) serveAnswer {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		a := f.post(tag)
		if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "NoWorker") ||
			time.Now().After(deadline) {
			return a
		}
	}
}

// waitSleeping waits until the one worker sleeps in a "sleep" request: clock_nanosleep, syscall
// 230 on x86-64. A fixed pause is not enough on a loaded machine.
func (f *serveFixture) waitSleeping(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps := f.handlerProcesses()
		if len(ps) == 1 {
			b, _ := os.ReadFile(strings.TrimSuffix(strings.SplitN(ps[0], ":", 2)[0], "cmdline") + "syscall")
			if strings.HasPrefix(string(b), "230 ") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker never slept in its request: %q", ps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeQueueFull: with --queue 0, a request that finds no worker free is answered 503 at once;
// the busy worker's own request is unaffected.
func TestServeQueueFull(t *testing.T) {
	f := startServe(t, "python", "--workers", "1", "--queue", "0", "--timeout", "2s")
	busy := make(chan serveAnswer, 1)
	go func() {
		for { // 503 until the worker asks for its first event
			if a := f.post("sleep"); a.status != http.StatusServiceUnavailable {
				busy <- a
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	f.waitSleeping(t)
	if a := f.post("extra"); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "queue full") {
		t.Errorf("a request with the one worker busy and --queue 0: %d %q, want 503 queue full", a.status, a.body)
	}
	if a := <-busy; a.status != http.StatusGatewayTimeout {
		t.Errorf("the busy worker's request: %d %q, want 504", a.status, a.body)
	}
}

// TestServeInitError: a worker that reports an init error is replaced (with a growing pause), and
// a request that finds no worker within --timeout is answered 503.
func TestServeInitError(t *testing.T) {
	f := startServe(t, `sh:curl -sS -o /dev/null -d '{"errorMessage":"no config","errorType":"InitFailed"}' `+
		`"http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error"; sleep 100`, "--timeout", "1s")
	if a := f.post("event"); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "NoWorker") {
		t.Errorf("a request with no worker ready: %d %q, want 503 NoWorker", a.status, a.body)
	}
	if log := f.stderr.String(); !strings.Contains(log, `worker 0 reported an init error: {"errorMessage":"no config"`) ||
		!strings.Contains(log, "replacing it") {
		t.Errorf("stderr does not report the init error and the replacement:\n%s", log)
	}
	if err := f.stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v; stderr:\n%s", err, f.stderr)
	}
}

// TestServeRuntimeAPIRefusesStrangers: a process that is not the worker or one of its own cannot
// take the worker's events from its Runtime API.
func TestServeRuntimeAPIRefusesStrangers(t *testing.T) {
	f := startServe(t, "python", "--workers", "1", "--timeout", "5s")
	if a := f.post("first"); a.status != 200 {
		t.Fatalf("first request: %d %q", a.status, a.body)
	}
	ps := f.handlerProcesses()
	if len(ps) != 1 {
		t.Fatalf("handler processes %q, want one", ps)
	}
	env, err := os.ReadFile(strings.TrimSuffix(strings.SplitN(ps[0], ":", 2)[0], "cmdline") + "environ")
	if err != nil {
		t.Fatal(err)
	}
	api := ""
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, "AWS_LAMBDA_RUNTIME_API="); ok {
			api = "http://" + v + "/2018-06-01/runtime/invocation/"
		}
	}
	if api == "" {
		t.Fatal("the worker has no AWS_LAMBDA_RUNTIME_API")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(api + "next")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET next from the test process: %d, want 403", resp.StatusCode)
	}
	if a := f.post("second"); a.status != 200 || a.body != "base\nsecond\n" {
		t.Errorf("the worker's own next request: %d %q", a.status, a.body)
	}
}
