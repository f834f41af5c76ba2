package impl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/internal/notify"
	"golang.org/x/sys/unix"
)

// Micro-benchmarks of issue 7. Each benchmark measures its variants side by side, interleaved in
// short rounds, and reports each as a metric and fsvirt's as ratios to the kernel's floor: on a
// noisy machine only ratios from one run mean anything. Nothing here asserts a speed.
//
//	go test ./impl -run '^$' -bench . -benchtime 20000x

// variant is a loop body run on a thread of its own: thread sets the thread up (a filter, an
// invocation), body runs once per iteration.
type variant struct {
	name string
	// run starts the variant's thread and returns a function that runs n iterations there and
	// returns their time, and one that ends the thread.
	run func(b *testing.B) (iter func(n int) []time.Duration, stop func())
}

// latency is a variant's time per iteration: mean, median and 99th percentile, in ns.
type latency struct{ mean, p50, p99 float64 }

// interleave runs b.N iterations of each variant, in rounds of at most 200 per variant, and
// reports each variant's time per iteration as NAME-ns/op (the mean), NAME-p50-ns and
// NAME-p99-ns: Go's scheduler makes a few iterations far slower than the rest, which moves the
// mean and not the median. It returns those times by name.
func interleave(b *testing.B, vs []variant) map[string]latency {
	b.Helper()
	iters := make([]func(int) []time.Duration, len(vs))
	for i, v := range vs {
		iter, stop := v.run(b)
		defer stop()
		iters[i] = iter
		iter(min(b.N, 50)) // warm up: first touches, page cache, wake-up affinity
	}
	lats := make([][]time.Duration, len(vs))
	b.ResetTimer()
	for done := 0; done < b.N; {
		k := min(200, b.N-done)
		for i := range vs {
			lats[i] = append(lats[i], iters[i](k)...)
		}
		done += k
	}
	b.StopTimer()
	out := map[string]latency{}
	for i, v := range vs {
		var total time.Duration
		for _, d := range lats[i] {
			total += d
		}
		slices.Sort(lats[i])
		q := func(p float64) float64 { return float64(lats[i][int(p*float64(len(lats[i])-1))]) }
		l := latency{mean: float64(total) / float64(len(lats[i])), p50: q(0.5), p99: q(0.99)}
		out[v.name] = l
		b.ReportMetric(l.mean, v.name+"-ns/op")
		b.ReportMetric(l.p50, v.name+"-p50-ns")
		b.ReportMetric(l.p99, v.name+"-p99-ns")
	}
	return out
}

// timeEach runs body n times and returns the time of each run.
func timeEach(n int, body func() error) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	for i := range lat {
		start := time.Now()
		if err := body(); err != nil {
			return nil, err
		}
		lat[i] = time.Since(start)
	}
	return lat, nil
}

// lockedThread runs fn on a new goroutine locked to a new thread that exits with it (and takes any
// filter with it). setup runs first, on the thread; iterations are requested over a channel.
func lockedThread(b *testing.B, setup func() error, body func() error) (func(int) []time.Duration, func()) {
	b.Helper()
	req := make(chan int)
	resp := make(chan []time.Duration)
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread, and its filter, end with the goroutine
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			ready <- err
			return
		}
		if setup != nil {
			if err := setup(); err != nil {
				ready <- err
				return
			}
		}
		ready <- nil
		for n := range req {
			lat, err := timeEach(n, body)
			if err != nil {
				panic(err)
			}
			resp <- lat
		}
	}()
	if err := <-ready; err != nil {
		b.Fatal(err)
	}
	return func(n int) []time.Duration { req <- n; return <-resp }, func() { close(req) }
}

func openClose(path string, flags int) func() error {
	return func() error {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		return unix.Close(fd)
	}
}

// bareFilter notifies openat and allows everything else (other architectures included: the
// benchmark thread makes no such calls).
func bareFilter() []unix.SockFilter {
	var b bpfBuilder
	b.ld(dataNr)
	b.jeq(unix.SYS_OPENAT, "", "allow")
	b.ret(unix.SECCOMP_RET_USER_NOTIF)
	b.label("allow")
	b.ret(unix.SECCOMP_RET_ALLOW)
	prog, err := b.program()
	if err != nil {
		panic(err) // a constant program: TestBPFBuilder assembles it too
	}
	return prog
}

// bareSupervisor answers every notification of lfd with answer and nothing else, on an unfiltered
// thread of its own, until no task uses the filter (POLLHUP).
func bareSupervisor(lfd int, syncWake bool, answer func(n *notify.Notif) error) error {
	if syncWake {
		if err := notify.SetSyncWakeUp(lfd); err != nil {
			return err
		}
	}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer unix.Close(lfd)
		var n notify.Notif
		pfd := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
				return
			}
			if pfd[0].Revents&unix.POLLIN == 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
				return
			}
			if err := notify.Recv(lfd, &n); err != nil {
				continue // ENOENT: a signal withdrew it
			}
			if err := answer(&n); err != nil && err != unix.ENOENT {
				panic(err)
			}
		}
	}()
	return nil
}

// kernelVariant: a thread with the bare filter, served by a bare supervisor answering with answer.
func kernelVariant(name, path string, syncWake bool, answer func(lfd int, n *notify.Notif) error) variant {
	return variant{name: name, run: func(b *testing.B) (func(int) []time.Duration, func()) {
		setup := func() error {
			lfd, err := notify.LoadFilter(bareFilter(), notify.Features().WaitKillableRecv)
			if err != nil {
				return err
			}
			return bareSupervisor(lfd, syncWake, func(n *notify.Notif) error { return answer(lfd, n) })
		}
		return lockedThread(b, setup, openClose(path, unix.O_RDONLY))
	}}
}

// poolVariant: the body runs inside one long invocation of a one-worker pool; prepare runs first,
// in the same invocation.
func poolVariant(name string, cfg Config, prepare, body func() error) variant {
	return variant{name: name, run: func(b *testing.B) (func(int) []time.Duration, func()) {
		p, err := NewPool(cfg)
		if err != nil {
			b.Fatal(err)
		}
		req := make(chan int)
		resp := make(chan []time.Duration)
		done := make(chan error, 1)
		go func() {
			done <- p.Invoke(context.Background(), func(*Invocation) error {
				if prepare != nil {
					if err := prepare(); err != nil {
						close(resp)
						return err
					}
				}
				for n := range req {
					lat, err := timeEach(n, body)
					if err != nil {
						return err
					}
					resp <- lat
				}
				return nil
			})
		}()
		iter := func(n int) []time.Duration {
			req <- n
			d, ok := <-resp
			if !ok {
				b.Fatal(<-done)
			}
			return d
		}
		stop := func() {
			close(req)
			if err := <-done; err != nil {
				b.Error(err)
			}
			p.Close()
		}
		return iter, stop
	}}
}

// BenchmarkOpenVsKernelFloor measures, side by side: a native open+close; the bare kernel round
// trip answered with CONTINUE, with ADDFD of a descriptor opened once, and with ADDFD of a
// descriptor the supervisor opens for each call; and fsvirt's pass-through open (fast policy),
// redirected open of an already copied file, and strict-policy open of an unchanged file. It
// reports passthrough/continue and redirected/addfd (issue 7's targets: at most 1.3), with
// SYNC_WAKE_UP on and off, as ratios of the means and, with -p50 and -p99, of the medians and the
// 99th percentiles.
func BenchmarkOpenVsKernelFloor(b *testing.B) {
	if err := notify.Require(); err != nil {
		b.Skip(err)
	}
	for _, syncWake := range []bool{true, false} {
		b.Run(fmt.Sprintf("sync-wakeup=%v", syncWake), func(b *testing.B) {
			feat := notify.Features()
			if syncWake && !feat.SyncWakeUp {
				b.Skip("kernel lacks SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (6.6)")
			}
			feat.SyncWakeUp = syncWake
			restore := notify.SetForTest(feat) // captured by NewPool for its supervisors
			defer restore()

			dir := b.TempDir()
			shared := filepath.Join(dir, "shared")
			copied := filepath.Join(dir, "copied")
			for _, f := range []string{shared, copied} {
				if err := os.WriteFile(f, []byte("benchmark file\n"), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			preopened, err := unix.Open(shared, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(preopened)
			fast := Config{Workers: 1, Trees: []string{dir}, Store: b.TempDir()}
			strict := fast
			strict.Policy, strict.Store = PolicyStrict, b.TempDir()

			res := interleave(b, []variant{
				{name: "native", run: func(b *testing.B) (func(int) []time.Duration, func()) {
					return lockedThread(b, nil, openClose(shared, unix.O_RDONLY))
				}},
				kernelVariant("continue", shared, syncWake, func(lfd int, n *notify.Notif) error {
					return notify.Continue(lfd, n.ID)
				}),
				kernelVariant("addfd", shared, syncWake, func(lfd int, n *notify.Notif) error {
					_, err := feat.AddFD(lfd, n.ID, preopened, true)
					return err
				}),
				kernelVariant("addfd+open", shared, syncWake, func(lfd int, n *notify.Notif) error {
					fd, err := unix.Open(shared, unix.O_RDONLY|unix.O_CLOEXEC, 0)
					if err != nil {
						return err
					}
					defer unix.Close(fd)
					_, err = feat.AddFD(lfd, n.ID, fd, true)
					return err
				}),
				poolVariant("passthrough", fast, nil, openClose(shared, unix.O_RDONLY)),
				poolVariant("redirected", fast, openClose(copied, unix.O_RDWR), openClose(copied, unix.O_RDONLY)),
				poolVariant("strict", strict, nil, openClose(shared, unix.O_RDONLY)),
			})
			for _, r := range [][2]string{{"passthrough", "continue"}, {"redirected", "addfd"},
				{"redirected", "addfd+open"}, {"continue", "native"}} {
				a, z := res[r[0]], res[r[1]]
				b.ReportMetric(a.mean/z.mean, r[0]+"/"+r[1])
				b.ReportMetric(a.p50/z.p50, r[0]+"/"+r[1]+"-p50")
				b.ReportMetric(a.p99/z.p99, r[0]+"/"+r[1]+"-p99")
			}
		})
	}
}

// BenchmarkInvokeFixedCost measures what an invocation costs when its function does nothing:
// Pool.Invoke against the floor of handing a function to a locked thread over channels and waiting
// for it. This is the cost the Hello World and Fibonacci workloads see.
func BenchmarkInvokeFixedCost(b *testing.B) {
	if err := notify.Require(); err != nil {
		b.Skip(err)
	}
	p, err := NewPool(Config{Workers: 1, Trees: []string{b.TempDir()}, Store: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	jobs := make(chan func())
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for fn := range jobs {
			fn()
			done <- struct{}{}
		}
	}()
	defer close(jobs)
	var handoff, invoke time.Duration
	noop := func() {}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		jobs <- noop
		<-done
		t1 := time.Now()
		if err := p.Invoke(ctx, func(*Invocation) error { return nil }); err != nil {
			b.Fatal(err)
		}
		handoff += t1.Sub(t0)
		invoke += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(handoff)/float64(b.N), "handoff-ns/op")
	b.ReportMetric(float64(invoke)/float64(b.N), "invoke-ns/op")
	b.ReportMetric(float64(invoke)/float64(handoff), "invoke/handoff")
}

// BenchmarkStartVsExec measures Invocation.Start and Wait of /bin/true in a function against
// exec.Command("/bin/true").Run() outside any view, alternately. Start re-executes this program
// (here the test binary) before it executes the command: a Go program's start-up, a filter, and
// the notified chdir and execve.
func BenchmarkStartVsExec(b *testing.B) {
	if err := notify.Require(); err != nil {
		b.Skip(err)
	}
	p, err := NewPool(Config{Workers: 1, Trees: []string{b.TempDir()}, Store: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	var plain, start time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
		plain += time.Since(t0)
		err := p.Invoke(ctx, func(inv *Invocation) error {
			t0 := time.Now()
			cmd := exec.Command("/bin/true")
			if err := inv.Start(cmd); err != nil {
				return err
			}
			err := cmd.Wait()
			start += time.Since(t0)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(plain)/float64(b.N), "exec-ns/op")
	b.ReportMetric(float64(start)/float64(b.N), "start-ns/op")
	b.ReportMetric(float64(start)/float64(plain), "start/exec")
}

// BenchmarkFilterInstall measures loading a worker's filter with a listener on a fresh thread (the
// research reports about 0.2 ms). Thread creation is outside the timed part.
func BenchmarkFilterInstall(b *testing.B) {
	if err := notify.Require(); err != nil {
		b.Skip(err)
	}
	prog, err := workerFilter()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		ch := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread exits with its filter
			t0 := time.Now()
			fd, err := notify.LoadFilter(prog, notify.Features().WaitKillableRecv)
			total += time.Since(t0)
			if err == nil {
				unix.Close(fd)
			}
			ch <- err
		}()
		if err := <-ch; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total)/float64(b.N), "ns/op")
	b.ReportMetric(float64(len(prog)), "bpf-insns")
}

// BenchmarkCopyUp measures fsvirt's copy-up (the first writable open of a shared file, in a fresh
// invocation) against `cp --reflink=auto` of the same file, and against cp of an empty file, the
// cost of starting cp at all.
func BenchmarkCopyUp(b *testing.B) {
	if err := notify.Require(); err != nil {
		b.Skip(err)
	}
	cp, err := exec.LookPath("cp")
	if err != nil {
		b.Skip("no cp")
	}
	for _, size := range []struct {
		name  string
		bytes int
	}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}, {"100MiB", 100 << 20}} {
		b.Run("size="+size.name, func(b *testing.B) {
			dir := b.TempDir()
			src := filepath.Join(dir, "src")
			empty := filepath.Join(dir, "empty")
			data := make([]byte, size.bytes)
			for i := range data {
				data[i] = byte(i * 7)
			}
			if err := os.WriteFile(src, data, 0o644); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(empty, nil, 0o644); err != nil {
				b.Fatal(err)
			}
			p, err := NewPool(Config{Workers: 1, Trees: []string{dir}, Store: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			out := b.TempDir()
			runCp := func(from string) time.Duration {
				dst := filepath.Join(out, "dst")
				t0 := time.Now()
				if o, err := exec.Command(cp, "--reflink=auto", from, dst).CombinedOutput(); err != nil {
					b.Fatalf("cp: %v: %s", err, o)
				}
				d := time.Since(t0)
				os.Remove(dst)
				return d
			}
			var fsv, cpd, cp0 time.Duration
			var copiedBytes int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				err := p.Invoke(context.Background(), func(inv *Invocation) error {
					t0 := time.Now()
					fd, err := unix.Open(src, unix.O_RDWR|unix.O_CLOEXEC, 0)
					fsv += time.Since(t0)
					if err != nil {
						return err
					}
					copiedBytes += inv.Stats().BytesCopied
					return unix.Close(fd)
				})
				if err != nil {
					b.Fatal(err)
				}
				cpd += runCp(src)
				cp0 += runCp(empty)
			}
			b.StopTimer()
			if copiedBytes != int64(b.N)*int64(size.bytes) {
				b.Fatal(errors.New("[bug] fsvirt copied " + fmt.Sprint(copiedBytes) + " bytes"))
			}
			n := float64(b.N)
			b.ReportMetric(float64(fsv)/n, "fsvirt-ns/op")
			b.ReportMetric(float64(cpd)/n, "cp-ns/op")
			b.ReportMetric(float64(cp0)/n, "cp-empty-ns/op")
			b.ReportMetric(float64(fsv)/float64(cpd), "fsvirt/cp")
			if cpd > cp0 {
				b.ReportMetric(float64(fsv)/float64(cpd-cp0), "fsvirt/(cp-start)")
			}
		})
	}
}

// BenchmarkConcurrentTail runs empty functions from 50 goroutines at once, on 50 worker threads,
// in two ways side by side in alternating rounds: a plain pool of locked threads that takes
// functions over channels (what fsvirt bench's mode none uses), and Pool.Invoke. It reports the
// median, p99, p99.9 and worst latency of each: the mean of such a run is decided by a few
// invocations that the Go scheduler leaves runnable for up to hundreds of milliseconds, in the plain
// pool as well (docs/benchmarks.md), so the median and the tail are reported, not the mean.
func BenchmarkConcurrentTail(b *testing.B) {
	if err := notify.Require(); err != nil {
		b.Skip(err)
	}
	const workers = 50
	p, err := NewPool(Config{Workers: workers, Trees: []string{b.TempDir()}, Store: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	idle := make(chan chan func(), workers)
	var done sync.WaitGroup
	for i := 0; i < workers; i++ {
		jobs := make(chan func())
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for fn := range jobs {
				fn()
			}
		}()
		idle <- jobs
	}
	defer func() {
		for i := 0; i < workers; i++ {
			close(<-idle)
		}
	}()
	handoff := func() {
		w := <-idle
		ran := make(chan struct{})
		w <- func() { close(ran) }
		<-ran
		idle <- w
	}
	ctx := context.Background()
	invoke := func() {
		if err := p.Invoke(ctx, func(*Invocation) error { return nil }); err != nil {
			b.Error(err)
		}
	}
	// round runs n calls of fn from workers goroutines and appends their latencies to lat.
	round := func(fn func(), n int, lat *[]time.Duration) {
		out := make([]time.Duration, n)
		var next atomic.Int64
		for g := 0; g < workers; g++ {
			done.Add(1)
			go func() {
				defer done.Done()
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					t0 := time.Now()
					fn()
					out[i] = time.Since(t0)
				}
			}()
		}
		done.Wait()
		*lat = append(*lat, out...)
	}
	var hl, il []time.Duration
	b.ResetTimer()
	for left := b.N; left > 0; left -= 2000 {
		n := min(left, 2000)
		round(handoff, n, &hl)
		round(invoke, n, &il)
	}
	b.StopTimer()
	for _, v := range []struct {
		name string
		lat  []time.Duration
	}{{"handoff", hl}, {"invoke", il}} {
		slices.Sort(v.lat)
		q := func(f float64) float64 { return float64(v.lat[int(f*float64(len(v.lat)-1))]) }
		b.ReportMetric(q(0.5), v.name+"-p50-ns")
		b.ReportMetric(q(0.99), v.name+"-p99-ns")
		b.ReportMetric(q(0.999), v.name+"-p99.9-ns")
		b.ReportMetric(float64(v.lat[len(v.lat)-1]), v.name+"-max-ns")
	}
	b.ReportMetric(float64(il[len(il)/2])/float64(hl[len(hl)/2]), "invoke/handoff-p50")
}
