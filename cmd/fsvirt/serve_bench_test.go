package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkServe measures per-request latency (p50, p99), throughput and memory for the Python and
// Node handlers of examples/lambda, with two clients at once:
//
//	serve      fsvirt serve, two warm workers, a fresh view per request
//	none       the same warm workers without isolation (fsvirt serve --no-isolation)
//	run        a cold start per request: fsvirt run -- HANDLER, answering one event
//	overlay    a cold start per request in a private mount namespace with an overlayfs on the tree
//	           (unshare -m, mount -t overlay; needs root)
//	cold       a cold start per request without isolation, for reference
//
// Run it once: go test -run '^$' -bench Serve -benchtime 1x ./cmd/fsvirt. docs/benchmarks.md has
// the results. b.N is not used: each mode runs a fixed number of requests.
func BenchmarkServe(b *testing.B) {
	for _, lang := range []string{"python", "node"} {
		for _, mode := range []string{"serve", "none", "run", "overlay", "cold"} {
			b.Run(lang+"/"+mode, func(b *testing.B) { benchServeMode(b, lang, mode) })
		}
	}
}

const (
	benchClients   = 2
	benchWarmReqs  = 400
	benchColdReqs  = 40
	benchWarmWorks = 2
)

func benchServeMode(b *testing.B, lang, mode string) {
	requireEngine(b)
	if mode == "overlay" && os.Geteuid() != 0 {
		b.Skip("overlayfs in a mount namespace needs root")
	}
	var f *serveFixture
	var send func(tag string) error
	n := benchColdReqs
	switch mode {
	case "serve", "none":
		flags := []string{"--workers", strconv.Itoa(benchWarmWorks)}
		if mode == "none" {
			flags = append(flags, "--no-isolation")
		}
		f = startServe(b, lang, flags...)
		send = func(tag string) error {
			if a := f.post(tag); a.status != 200 {
				return fmt.Errorf("%d %s", a.status, a.body)
			}
			return nil
		}
		n = benchWarmReqs
		for i := 0; i < 2*benchWarmWorks; i++ { // warm up: imports, the first view
			if err := send("warm"); err != nil {
				b.Fatal(err)
			}
		}
	default:
		f = benchTree(b, lang)
		send = func(tag string) error { return coldRequest(f.tree, lang, mode, tag) }
		if err := send("warm"); err != nil { // page cache
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchClients)
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < benchClients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := send("req" + strconv.Itoa(i)); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[n/2]), "p50-ms")
	b.ReportMetric(ms(lat[n*99/100]), "p99-ms")
	b.ReportMetric(float64(n)/wall.Seconds(), "req/s")
	b.ReportMetric(0, "ns/op")
	if mode == "serve" || mode == "none" {
		var sum int64
		ps := f.handlerProcesses()
		for _, p := range ps {
			sum += rssKB(strings.TrimSuffix(strings.SplitN(p, ":", 2)[0], "/cmdline"))
		}
		if len(ps) > 0 {
			b.ReportMetric(float64(sum)/float64(len(ps))/1024, "worker-RSS-MB")
		}
		b.ReportMetric(float64(rssKB("/proc/"+strconv.Itoa(f.cmd.Process.Pid)))/1024, "fsvirt-RSS-MB")
	}
}

// benchTree is a copy of examples/lambda, as startServe makes, for the cold modes.
func benchTree(b *testing.B, lang string) *serveFixture {
	need := map[string]string{"python": "python3", "node": "node"}[lang]
	if _, err := exec.LookPath(need); err != nil {
		b.Skipf("%s is not installed", need)
	}
	tree := b.TempDir()
	if err := os.CopyFS(tree, os.DirFS(filepath.Join("..", "..", "examples", "lambda"))); err != nil {
		b.Fatal(err)
	}
	return &serveFixture{t: b, tree: tree}
}

// rssKB reads VmRSS of /proc/PID.
func rssKB(proc string) int64 {
	b, _ := os.ReadFile(proc + "/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// coldRequest starts the handler for one event (mode run, overlay or cold), with a Runtime API of
// its own, and returns once it has answered it. Its second request for an event fails, and it
// exits; that exit is waited for too, as a cold start's teardown.
func coldRequest(tree, lang, mode, tag string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	answered := make(chan []byte, 1)
	var gave atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/invocation/next"):
			if gave.Swap(true) {
				if hj, ok := w.(http.Hijacker); ok {
					c, _, _ := hj.Hijack()
					c.Close() // the handler's loop ends with an error
				}
				return
			}
			w.Header().Set("Lambda-Runtime-Aws-Request-Id", "r1")
			io.WriteString(w, tag)
		case strings.HasSuffix(r.URL.Path, "/response"):
			body, _ := io.ReadAll(r.Body)
			w.WriteHeader(http.StatusAccepted)
			answered <- body
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	handler := map[string][]string{"python": {"python3", tree + "/handler.py"}, "node": {"node", tree + "/handler.js"}}[lang]
	var argv []string
	up := ""
	switch mode {
	case "run":
		argv = append([]string{fsvirtBin, "run", "--tree", tree, "--"}, handler...)
	case "overlay":
		if up, err = os.MkdirTemp("", "fsvirt-bench-overlay-"); err != nil {
			return err
		}
		defer os.RemoveAll(up)
		script := `mkdir "$1/u" "$1/w" && mount -t overlay overlay -o "lowerdir=$2,upperdir=$1/u,workdir=$1/w" "$2" && shift 2 && exec "$@"`
		argv = append([]string{"unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", up, tree}, handler...)
	case "cold":
		argv = handler
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_RUNTIME_API="+ln.Addr().String(), "FSVIRT_EXAMPLE_DATA="+tree+"/data")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case body := <-answered:
		<-exited
		if want := "base\n" + tag + "\n"; mode != "cold" && string(body) != want {
			return fmt.Errorf("%s: answered %q, want %q", mode, body, want)
		}
		return nil
	case err := <-exited:
		return fmt.Errorf("%s: exited before answering: %v\n%s", mode, err, stderr.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return fmt.Errorf("%s: no answer in 30 s", mode)
	}
}
