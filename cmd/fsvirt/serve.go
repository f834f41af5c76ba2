package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsvirt/fsvirt/impl"
)

const serveUsage = `Usage: fsvirt serve [flags] -- CMD [ARGS...]

Starts --workers processes of CMD and keeps them warm. Each request is handed to a free worker
in a fresh private view; when the worker has answered, the view is discarded, and processes the
worker started for the request are fenced (from then on they see the shared tree read-only and
nothing of any request) and killed when the worker's next request begins; the worker's own
descriptors of the request's files are revoked (a worker that keeps one it cannot be made to
give up, or a mapping of one, is replaced). A request never sees another request's files; what
a worker keeps in its memory between requests is its own.

The gateway: HTTP on --listen. A POST (any path) is a request: its body is the event, and the
answer's body is the handler's response (200), as with a Lambda function URL; its header
Fsvirt-Worker says which worker (0 to N-1) answered. Other statuses:
  502  the handler reported an error (its error JSON is the body), or the worker exited while
       answering (it is replaced)
  504  the request ran past --timeout: the worker and its processes are killed, and replaced
  503  the queue is full (--queue requests wait for a worker already; with --queue 0 a
       request is taken only when a worker is free), no worker was free within --timeout, or
       fsvirt is shutting down
  413  the event is larger than --max-event
To have the request's changes returned with the answer, add the header "Fsvirt-Changes: json"
(or the query parameter fsvirt-changes=json): the answer carries them in its header
Fsvirt-Changes as one line of JSON, [{"kind":"A","path":"/tmp/x"},...]; with "diff", one header
field Fsvirt-Diff per change, "A PATH" (added), "M PATH" (modified), "D PATH" (deleted), as
fsvirt run --diff prints them.

The workers: each gets its own AWS Lambda Runtime API on a loopback address, in its environment
as AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT (a new port for each worker process). A handler loop
GETs /2018-06-01/runtime/invocation/next (the event, with the headers
Lambda-Runtime-Aws-Request-Id, Lambda-Runtime-Deadline-Ms, Lambda-Runtime-Invoked-Function-Arn
and Lambda-Runtime-Trace-Id), then POSTs the answer to
/2018-06-01/runtime/invocation/ID/response, or an error to .../invocation/ID/error; a worker
that cannot start POSTs /2018-06-01/runtime/init/error. examples/lambda/ has such loops in
Python, Node, shell and Go. The Runtime API answers only the worker and processes it started
that no finished request left behind (403 for any other local process). Outside a request (its
start-up included) a worker reads the shared tree and can change nothing in it (EROFS); outside
the trees (with --tree), files are the host's own, as for fsvirt run.

Flags:
  --workers N     warm worker processes (default 1)
  --listen ADDR   where the gateway listens: HOST:PORT on a loopback address (default
                  127.0.0.1:8080; port 0 picks one) or unix:PATH for a UNIX socket
  --timeout D     how long one request may take once a worker has it, and how long it may
                  wait for one (default 30s; a Go duration: 500ms, 2s, 1m)
  --queue N       requests that may wait for a free worker (default 256; 0: a request is
                  taken only when a worker is free)
  --max-event SIZE
                  the largest event accepted (default 6M, Lambda's own)
  --tree, --store, --policy, --max-bytes, --max-files, --min-free
                  as for fsvirt run (see fsvirt run --help); the limits bound each request's
                  private layer. Under --min-free, what would add to a layer fails with ENOSPC,
                  but a request's writes through descriptors it holds are not stopped
  --log           log each request (id, worker, status, duration) to stderr
  --no-isolation  run the workers without fsvirt: no filter, no view, the host's files read and
                  changed. Only for measuring what isolation costs (docs/benchmarks.md).

On start it prints "fsvirt serve: listening on ADDR" to stdout. SIGTERM or SIGINT shuts it down
gracefully: no new requests are taken, those taken are answered (each within --timeout), then
the workers are killed; the exit status is 0.

Example:
  fsvirt serve --workers 4 --listen 127.0.0.1:9000 -- python3 examples/lambda/handler.py &
  curl -d '{"name":"x"}' http://127.0.0.1:9000/
`

// runtimeAPIPrefix is the Lambda Runtime API's version path.
const runtimeAPIPrefix = "/2018-06-01/runtime/"

type serveConfig struct {
	workers  int
	timeout  time.Duration
	queue    int
	maxEvent int64
	logReqs  bool
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		trees    stringList
		store    = fs.String("store", "", "")
		policy   = fs.String("policy", "fast", "")
		listen   = fs.String("listen", "127.0.0.1:8080", "")
		workers  = fs.Int("workers", 1, "")
		timeout  = fs.Duration("timeout", 30*time.Second, "")
		queue    = fs.Int("queue", 256, "")
		logReqs  = fs.Bool("log", false, "")
		noIso    = fs.Bool("no-isolation", false, "")
		maxEvent = int64(6 << 20)
		limits   impl.Limits
	)
	fs.Func("max-event", "", func(s string) (err error) {
		maxEvent, err = parseSize(s)
		return err
	})
	limitFlags(fs, &limits)
	fs.Var(&trees, "tree", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, serveUsage)
			return nil
		}
		return fmt.Errorf("serve: %v (see fsvirt serve --help)", err)
	}
	switch {
	case *workers < 1 || *workers > 1024:
		return fmt.Errorf("serve: --workers %d: want 1 to 1024", *workers)
	case *timeout <= 0:
		return fmt.Errorf("serve: --timeout %v: want a positive duration", *timeout)
	case *queue < 0:
		return fmt.Errorf("serve: --queue %d: want 0 or more", *queue)
	}
	if wantsUserNamespace(limits) {
		return reexecInUserNamespace(append([]string{"serve"}, args...), 2)
	}
	pol, err := impl.ParsePolicy(*policy)
	if err != nil {
		return fmt.Errorf("serve: --policy: %v", err)
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		return errors.New("serve: no command given (usage: fsvirt serve [flags] -- CMD [ARGS...])")
	}
	path, err := exec.LookPath(cmd[0])
	if err != nil {
		return fmt.Errorf("serve: %s: %v", cmd[0], unwrapExec(err))
	}
	ln, err := listenGateway(*listen)
	if err != nil {
		return fmt.Errorf("serve: --listen %s: %v", *listen, err)
	}
	defer ln.Close()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := impl.NewWarm(impl.WarmConfig{Trees: trees, Store: *store, Policy: pol, Limits: limits,
		Logger: logger, Path: path, Args: cmd, Unisolated: *noIso})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	g := &gateway{h: h, cfg: serveConfig{workers: *workers, timeout: *timeout, queue: *queue,
		maxEvent: maxEvent, logReqs: *logReqs}, stderr: stderr, queue: make(chan *invocation, *queue),
		stopping: make(chan struct{})}
	for i := 0; i < *workers; i++ {
		s := &slot{g: g, n: i}
		if err := s.start(); err != nil {
			g.stopAll()
			h.Close()
			return fmt.Errorf("serve: worker %d: %w", i, err)
		}
		g.slots = append(g.slots, s)
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "fsvirt serve: listening on %s\n", gatewayAddr(ln))
	if f, ok := stdout.(interface{ Sync() error }); ok {
		f.Sync()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var serveErr error
	select {
	case <-sigs:
	case <-ctx.Done():
	case serveErr = <-served:
	}
	// Graceful: no new connections; requests taken are answered, each within the timeout.
	sctx, cancel := context.WithTimeout(context.Background(), *timeout+5*time.Second)
	srv.Shutdown(sctx)
	cancel()
	close(g.stopping)
	g.stopAll()
	if err := h.Close(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	return nil
}

// listenGateway listens on a loopback HOST:PORT or on unix:PATH.
func listenGateway(addr string) (net.Listener, error) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		if p == "" {
			return nil, errors.New("no socket path after unix:")
		}
		return net.Listen("unix", p)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("want HOST:PORT or unix:PATH (%v)", err)
	}
	if host == "localhost" {
		return net.Listen("tcp", addr)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%q is not a loopback address: the gateway has no authentication", host)
	}
	return net.Listen("tcp", addr)
}

func gatewayAddr(ln net.Listener) string {
	if ln.Addr().Network() == "unix" {
		return "unix:" + ln.Addr().String()
	}
	return ln.Addr().String()
}

// gateway hands requests to warm workers through its queue.
type gateway struct {
	h        *impl.Warm
	cfg      serveConfig
	stderr   io.Writer
	queue    chan *invocation
	slots    []*slot
	stopping chan struct{}
	logMu    sync.Mutex
}

// invocation is one request on its way through the gateway.
type invocation struct {
	id       string
	event    []byte
	changes  string // "", "json" or "diff"
	deadline time.Time
	done     chan answer // buffered: the one answer
	// state: queued, taken by a worker, or abandoned by the gateway (its client left, or it
	// waited --timeout for a worker); whoever moves it from queued first decides.
	state atomic.Int32
}

const (
	invQueued int32 = iota
	invTaken
	invAbandoned
)

type answer struct {
	status  int
	body    []byte
	ctype   string
	changes []impl.Change
	worker  int
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "fsvirt serve: POST the event", http.StatusMethodNotAllowed)
		return
	}
	changes := r.Header.Get("Fsvirt-Changes")
	if q := r.URL.Query(); q.Has("fsvirt-changes") {
		changes = q.Get("fsvirt-changes")
	}
	if changes != "" && changes != "json" && changes != "diff" {
		http.Error(w, fmt.Sprintf("fsvirt serve: Fsvirt-Changes %q: want json or diff", changes), http.StatusBadRequest)
		return
	}
	event, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.maxEvent))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("fsvirt serve: event larger than %d bytes", tooBig.Limit), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "fsvirt serve: reading the event: "+err.Error(), http.StatusBadRequest)
		return
	}
	inv := &invocation{id: newRequestID(), event: event, changes: changes, done: make(chan answer, 1)}
	select {
	case <-g.stopping:
		http.Error(w, "fsvirt serve: shutting down", http.StatusServiceUnavailable)
		return
	default:
	}
	select {
	case g.queue <- inv:
	default:
		http.Error(w, "fsvirt serve: queue full", http.StatusServiceUnavailable)
		return
	}
	var a answer
	wait := time.NewTimer(g.cfg.timeout)
	select {
	case a = <-inv.done:
	case <-r.Context().Done():
		if inv.state.CompareAndSwap(invQueued, invAbandoned) {
			return // no worker will take it
		}
		a = <-inv.done // a worker has it: its view must still be ended
	case <-wait.C:
		if inv.state.CompareAndSwap(invQueued, invAbandoned) {
			a = answer{status: http.StatusServiceUnavailable, worker: -1,
				body: errorJSON("NoWorker", fmt.Sprintf("no worker was free within --timeout %v", g.cfg.timeout)), ctype: "application/json"}
		} else {
			a = <-inv.done
		}
	}
	wait.Stop()
	w.Header().Set("Lambda-Runtime-Aws-Request-Id", inv.id)
	if a.worker >= 0 {
		w.Header().Set("Fsvirt-Worker", strconv.Itoa(a.worker))
	}
	switch changes {
	case "json":
		list := []change{}
		for _, c := range a.changes {
			list = append(list, change{Kind: string(c.Kind), Path: c.Path})
		}
		b, _ := json.Marshal(list)
		w.Header().Set("Fsvirt-Changes", string(b))
	case "diff":
		for _, c := range a.changes {
			w.Header().Add("Fsvirt-Diff", fmt.Sprintf("%c %s", c.Kind, c.Path))
		}
	}
	if a.ctype != "" {
		w.Header().Set("Content-Type", a.ctype)
	}
	w.WriteHeader(a.status)
	w.Write(a.body)
	if g.cfg.logReqs {
		g.logMu.Lock()
		fmt.Fprintf(g.stderr, "fsvirt serve: request %s worker %d status %d %v\n", inv.id, a.worker, a.status,
			time.Since(start).Round(time.Microsecond))
		g.logMu.Unlock()
	}
}

func (g *gateway) stopAll() {
	for _, s := range g.slots {
		s.stop()
	}
}

// newRequestID returns a random UUID (version 4), as Lambda's request ids are.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func errorJSON(typ, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"errorType": typ, "errorMessage": msg})
	return b
}
