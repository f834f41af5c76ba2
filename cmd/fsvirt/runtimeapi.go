package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsvirt/fsvirt/impl"
)

// A slot is one of the gateway's --workers places: a warm worker process and the Lambda Runtime API
// it talks to. When the worker is replaced (timeout, crash, a worker that still holds something of
// a request's private layer) the slot gets a new process with a new API port: an old worker's
// connections, or a process it left, cannot take a request meant for the new one.
type slot struct {
	g *gateway
	n int

	mu      sync.Mutex
	inst    *instance // nil while being replaced
	cur     *invocation
	timer   *time.Timer
	stopped bool
	backoff time.Duration // before restarting a worker that died before serving anything
}

// instance is one worker process of a slot, with its Runtime API server.
type instance struct {
	w      *impl.WarmWorker
	ln     net.Listener
	srv    *http.Server
	dead   chan struct{} // closed when the slot gives the instance up
	served int
}

// peerKey marks, in a Runtime API connection's context, whether its client may use the API.
type peerKey struct{}

// start starts a worker process in s with its Runtime API. Preconditions: s.mu is held, or s is
// not yet shared.
func (s *slot) start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("runtime API: %w", err)
	}
	inst := &instance{ln: ln, dead: make(chan struct{})}
	w, err := s.g.h.Start("AWS_LAMBDA_RUNTIME_API="+ln.Addr().String(),
		"AWS_LAMBDA_FUNCTION_NAME=fsvirt", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(int(s.g.cfg.timeout.Seconds())),
		"FSVIRT_WORKER="+strconv.Itoa(s.n))
	if err != nil {
		ln.Close()
		return err
	}
	inst.w = w
	inst.srv = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if owned, _ := r.Context().Value(peerKey{}).(bool); !owned {
			http.Error(rw, `{"errorMessage":"only the worker and its processes may use its Runtime API","errorType":"Forbidden"}`, http.StatusForbidden)
			return
		}
		s.api(inst, rw, r)
	}), ReadHeaderTimeout: 10 * time.Second,
		// Once per connection: is its client the worker, or a process it started that no ended
		// request left behind? Any local process can connect to a loopback port.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			pid, err := tcpPeerPID(c, w.Processes())
			return context.WithValue(ctx, peerKey{}, err == nil && pid != 0 && w.Owns(pid))
		}}
	go inst.srv.Serve(ln)
	s.inst = inst
	go s.watch(inst)
	return nil
}

// watch replaces the worker when it exits on its own.
func (s *slot) watch(inst *instance) {
	<-inst.w.Exited()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst != inst || s.stopped {
		return
	}
	if s.cur != nil {
		s.failLocked(http.StatusBadGateway, errorJSON("WorkerExited",
			fmt.Sprintf("the worker exited (status %d) before answering", inst.w.ExitStatus())))
	}
	s.replaceLocked(inst, fmt.Sprintf("worker %d (pid %d) exited with status %d", s.n, inst.w.Pid(), inst.w.ExitStatus()))
}

// failLocked answers the running request with status and body, after killing the worker and
// ending the request. Preconditions: s.mu is held, s.cur is set.
func (s *slot) failLocked(status int, body []byte) {
	inv := s.cur
	s.cur = nil
	s.timer.Stop()
	s.inst.w.Kill()
	res, err := s.inst.w.EndRequest(inv.changes != "")
	if err != nil {
		s.g.logf("worker %d: %v", s.n, err)
	}
	a := answer{status: status, body: body, ctype: "application/json", worker: s.n}
	if res != nil {
		a.changes = res.Changes
	}
	inv.done <- a
}

// replaceLocked gives inst up and starts another worker in its place. Preconditions: s.mu is held.
func (s *slot) replaceLocked(inst *instance, why string) {
	if inst.w != nil {
		inst.w.Kill() // before its API goes: a worker seeing it gone would complain on stderr
		go inst.srv.Close()
	}
	close(inst.dead)
	s.inst = nil
	delay := time.Duration(0)
	if inst.served == 0 { // it may fail again at once: do not spin
		if s.backoff == 0 {
			s.backoff = 100 * time.Millisecond
		} else if s.backoff < 10*time.Second {
			s.backoff *= 2
		}
		delay = s.backoff
	} else {
		s.backoff = 0
	}
	s.g.logf("%s; replacing it", why)
	go func() {
		time.Sleep(delay)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.stopped {
			return
		}
		if err := s.start(); err != nil {
			s.g.logf("worker %d: %v; retrying", s.n, err)
			s.replaceLocked(&instance{dead: make(chan struct{})}, "") // to start again, later
		}
	}()
}

// stop kills the slot's worker; a request it runs is answered 503.
func (s *slot) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.inst == nil {
		return
	}
	if s.cur != nil {
		s.failLocked(http.StatusServiceUnavailable, errorJSON("ShuttingDown", "fsvirt serve is shutting down"))
	}
	s.inst.w.Kill() // first, as in replaceLocked
	close(s.inst.dead)
	s.inst.srv.Close()
	s.inst = nil
}

// api serves the Lambda Runtime API to instance inst.
func (s *slot) api(inst *instance, rw http.ResponseWriter, r *http.Request) {
	p, ok := strings.CutPrefix(r.URL.Path, runtimeAPIPrefix)
	switch {
	case !ok:
	case p == "invocation/next" && r.Method == http.MethodGet:
		s.next(inst, rw, r)
		return
	case p == "init/error" && r.Method == http.MethodPost:
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		rw.WriteHeader(http.StatusAccepted)
		io.WriteString(rw, `{"status":"OK"}`)
		s.mu.Lock()
		if s.inst == inst {
			s.replaceLocked(inst, fmt.Sprintf("worker %d reported an init error: %s", s.n, strings.TrimSpace(string(body))))
		}
		s.mu.Unlock()
		return
	case strings.HasPrefix(p, "invocation/") && r.Method == http.MethodPost:
		id, kind, _ := strings.Cut(strings.TrimPrefix(p, "invocation/"), "/")
		if kind == "response" || kind == "error" {
			s.answer(inst, id, kind, rw, r)
			return
		}
	}
	http.Error(rw, `{"errorMessage":"no such Runtime API endpoint","errorType":"NotFound"}`, http.StatusNotFound)
}

// next hands the worker the next request: it waits for one in the gateway's queue.
func (s *slot) next(inst *instance, rw http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.inst == inst && s.cur != nil {
		// Asking for the next event is the worker's word that it has finished the last.
		s.failLocked(http.StatusBadGateway, errorJSON("NoResponse", "the worker asked for the next event without answering"))
		s.replaceLocked(inst, fmt.Sprintf("worker %d skipped a response", s.n))
	}
	if s.inst == inst && inst.w.Holds() {
		// It kept descriptors of its last request's layer and made no call since, at which they
		// would have been revoked (an HTTP client that keeps its connection makes none).
		s.replaceLocked(inst, fmt.Sprintf("worker %d holds descriptors of a finished request's private layer", s.n))
	}
	s.mu.Unlock()
	for {
		var inv *invocation
		select {
		case inv = <-s.g.queue:
		case <-inst.dead:
			http.Error(rw, `{"errorType":"WorkerReplaced"}`, http.StatusGone)
			return
		case <-r.Context().Done():
			return
		}
		s.mu.Lock()
		if s.inst != inst { // replaced meanwhile: the next worker takes it
			s.mu.Unlock()
			go func() { s.g.queue <- inv }()
			http.Error(rw, `{"errorType":"WorkerReplaced"}`, http.StatusGone)
			return
		}
		if !inv.state.CompareAndSwap(invQueued, invTaken) { // its client left, or it waited too long
			s.mu.Unlock()
			continue
		}
		if err := inst.w.BeginRequest(); err != nil {
			s.mu.Unlock()
			inv.done <- answer{status: http.StatusInternalServerError, body: errorJSON("FsvirtError", err.Error()), ctype: "application/json", worker: s.n}
			continue
		}
		inv.deadline = time.Now().Add(s.g.cfg.timeout)
		s.cur = inv
		inst.served++
		s.timer = time.AfterFunc(s.g.cfg.timeout, func() { s.expire(inst, inv) })
		s.mu.Unlock()
		h := rw.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:local:000000000000:function:fsvirt")
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-"+strings.ReplaceAll(inv.id[:17], "-", ""))
		h.Set("Content-Type", "application/json")
		rw.Write(inv.event)
		return
	}
}

// expire ends a request that ran past the timeout: the worker and its processes are killed.
func (s *slot) expire(inst *instance, inv *invocation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst != inst || s.cur != inv {
		return
	}
	s.failLocked(http.StatusGatewayTimeout, errorJSON("Timeout",
		fmt.Sprintf("the request ran past --timeout %v", s.g.cfg.timeout)))
	s.replaceLocked(inst, fmt.Sprintf("worker %d timed out", s.n))
}

// answer takes the worker's response or error for request id.
func (s *slot) answer(inst *instance, id, kind string, rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 6<<20+1))
	if err == nil && len(body) > 6<<20 {
		err = errors.New("response larger than 6 MiB")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst != inst || s.cur == nil || s.cur.id != id {
		http.Error(rw, `{"errorMessage":"no such invocation running","errorType":"InvalidRequestID"}`, http.StatusBadRequest)
		return
	}
	a := answer{status: http.StatusOK, body: body, ctype: r.Header.Get("Content-Type"), worker: s.n}
	if err != nil {
		a = answer{status: http.StatusBadGateway, body: errorJSON("InvalidResponse", err.Error()), ctype: "application/json", worker: s.n}
	} else if kind == "error" {
		a.status, a.ctype = http.StatusBadGateway, "application/json"
	}
	inv := s.cur
	s.cur = nil
	s.timer.Stop()
	res, err := inst.w.EndRequest(inv.changes != "")
	if err != nil {
		s.g.logf("worker %d: %v", s.n, err)
	}
	if res != nil {
		a.changes = res.Changes
	}
	inv.done <- a
	rw.WriteHeader(http.StatusAccepted)
	io.WriteString(rw, `{"status":"OK"}`)
	if res != nil && res.Tainted != "" {
		s.replaceLocked(inst, fmt.Sprintf("worker %d keeps %s of a finished request's private layer", s.n, res.Tainted))
	}
}

func (g *gateway) logf(format string, args ...any) {
	if format == "" {
		return
	}
	g.logMu.Lock()
	defer g.logMu.Unlock()
	fmt.Fprintf(g.stderr, "fsvirt serve: "+format+"\n", args...)
}
