package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/fsvirt/fsvirt/impl"
	"golang.org/x/sys/unix"
)

// Mode is one way of isolating invocations from each other.
type Mode struct {
	Name string
	// Desc says in a line what one invocation costs in this mode.
	Desc string
	// InProcess modes run the workload in the bench process; the others start a process per
	// invocation.
	InProcess bool
	// Check says why the mode cannot run on h, or returns nil.
	Check func(h Host) error
	start func(env Env, threads, supervisors int) (instance, error)
}

// Env is what every mode works with.
type Env struct {
	Fixture string // the shared tree the workloads run on
	Work    string // scratch space: new roots, upper directories
	Store   string // where fsvirt's private layers live
	Exe     string // this program, which runs a workload in a child process (ChildMain)
}

// Sample is what one invocation measured.
type Sample struct {
	Dur         time.Duration
	Calls       int   // syscalls fsvirt intercepted
	BytesCopied int64 // bytes copied into a private layer, a new root or an upper directory
	ChildRSSKiB int64 // peak RSS of the invocation's own process, if it had one
}

type instance interface {
	invoke(ctx context.Context, w *Workload, slot, seq int) (Sample, error)
	close() error
}

// Mode names, as the command line spells them.
const (
	ModeNone          = "none"
	ModeChroot        = "chroot"
	ModeThreadFast    = "thread-fast"
	ModeThreadStrict  = "thread-strict"
	ModeProcess       = "process"
	ModeOverlayfs     = "overlayfs"
	ModeFuseOverlayfs = "fuse-overlayfs"
)

// Modes are all the modes, the baseline first.
var Modes = []*Mode{
	{Name: ModeNone, InProcess: true, Check: checkNone, start: startNone,
		Desc: "no isolation: the function runs on a worker thread of a plain pool (the same hand-off as thread mode, no filter), on the shared tree"},
	{Name: ModeChroot, Check: checkChroot, start: startChroot,
		Desc: "a child process per invocation in a new root holding a copy of the files it needs, deleted afterwards"},
	{Name: ModeThreadFast, InProcess: true, Check: checkFsvirt, start: startThread(impl.PolicyFast),
		Desc: "fsvirt thread mode, fast policy: impl.Pool.Invoke on a worker thread that carries the filter"},
	{Name: ModeThreadStrict, InProcess: true, Check: checkFsvirt, start: startThread(impl.PolicyStrict),
		Desc: "fsvirt thread mode, strict policy: every intercepted open performed by the supervisor"},
	{Name: ModeProcess, Check: checkFsvirt, start: startProcess,
		Desc: "fsvirt process mode: impl.Run of a child process per invocation"},
	{Name: ModeOverlayfs, Check: checkOverlayfs, start: startOverlayfs,
		Desc: "a child process per invocation in a new mount namespace with a kernel overlayfs over the tree"},
	{Name: ModeFuseOverlayfs, InProcess: true, Check: checkFuseOverlayfs, start: startFuse,
		Desc: "a fuse-overlayfs mount per invocation; the function runs in the bench process on the mount"},
}

// ModeByName returns the named mode, or nil.
func ModeByName(name string) *Mode {
	for _, m := range Modes {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// --- none

// noneInstance runs each invocation on one of a fixed set of worker threads, each a goroutine
// locked to its OS thread, and hands it over the way impl.Pool does (an idle list, a job channel, a
// done channel). A serverless runtime runs functions on worker threads whether or not it isolates
// them, so this is the runtime without isolation: what thread mode adds is what is left.
type noneInstance struct {
	env  Env
	idle chan *plainWorker
	all  []*plainWorker
}

type plainWorker struct {
	jobs chan func()
	done chan struct{}
}

func startNone(env Env, threads, _ int) (instance, error) {
	if threads < 1 {
		threads = 1
	}
	n := &noneInstance{env: env, idle: make(chan *plainWorker, threads)}
	for i := 0; i < threads; i++ {
		w := &plainWorker{jobs: make(chan func()), done: make(chan struct{})}
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for fn := range w.jobs {
				fn()
				w.done <- struct{}{}
			}
		}()
		n.all = append(n.all, w)
		n.idle <- w
	}
	return n, nil
}

func (n *noneInstance) invoke(ctx context.Context, w *Workload, slot, seq int) (Sample, error) {
	start := time.Now()
	var pw *plainWorker
	select {
	case <-ctx.Done():
		return Sample{}, ctx.Err()
	case pw = <-n.idle:
	}
	var err error
	pw.jobs <- func() { err = w.Run(n.env.Fixture, slot, seq) }
	<-pw.done
	n.idle <- pw
	s := Sample{Dur: time.Since(start)}
	// Outside the timed part: without isolation the next invocation must find the same tree.
	if rerr := w.Restore(n.env.Fixture, slot, seq); err == nil && rerr != nil {
		err = fmt.Errorf("restore: %w", rerr)
	}
	return s, err
}

func (n *noneInstance) close() error {
	for _, w := range n.all {
		close(w.jobs)
	}
	return nil
}

// --- fsvirt thread mode

type threadInstance struct {
	env  Env
	pool *impl.Pool
}

func startThread(policy impl.Policy) func(Env, int, int) (instance, error) {
	return func(env Env, threads, supervisors int) (instance, error) {
		store, err := os.MkdirTemp(env.Store, "store-")
		if err != nil {
			return nil, err
		}
		p, err := impl.NewPool(impl.Config{Workers: threads, Supervisors: supervisors,
			Trees: []string{env.Fixture}, Store: store, Policy: policy})
		if err != nil {
			os.RemoveAll(store)
			return nil, err
		}
		return threadInstance{env, p}, nil
	}
}

func (t threadInstance) invoke(ctx context.Context, w *Workload, slot, seq int) (Sample, error) {
	var st impl.Stats
	start := time.Now()
	err := t.pool.Invoke(ctx, func(inv *impl.Invocation) error {
		err := w.Run(t.env.Fixture, slot, seq)
		st = inv.Stats()
		return err
	})
	return Sample{Dur: time.Since(start), Calls: sumCalls(st.Calls), BytesCopied: st.BytesCopied}, err
}

func (t threadInstance) close() error { return t.pool.Close() }

func sumCalls(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// --- fsvirt process mode

type processInstance struct {
	env   Env
	store string
}

func startProcess(env Env, _, _ int) (instance, error) {
	store, err := os.MkdirTemp(env.Store, "store-")
	if err != nil {
		return nil, err
	}
	return processInstance{env, store}, nil
}

func (p processInstance) invoke(ctx context.Context, w *Workload, slot, seq int) (Sample, error) {
	out, err := newCapture()
	if err != nil {
		return Sample{}, err
	}
	defer out.close()
	start := time.Now()
	res, err := impl.Run(ctx, impl.RunConfig{
		Trees: []string{p.env.Fixture}, Store: p.store, Policy: impl.PolicyFast,
		Path: p.env.Exe, Args: childArgs(p.env.Exe, w, p.env.Fixture, slot, seq, ""),
		Stdin: out.null, Stdout: out.stdoutW, Stderr: out.stderrW,
	})
	s := Sample{Dur: time.Since(start)}
	if err != nil {
		return s, err
	}
	s.Calls, s.BytesCopied = sumCalls(res.Stats.Calls), res.Stats.BytesCopied
	s.ChildRSSKiB, err = out.result(res.ExitStatus)
	return s, err
}

func (p processInstance) close() error { return os.RemoveAll(p.store) }

// capture collects a child's stdout and stderr through pipes (impl.Run takes *os.File).
type capture struct {
	null                     *os.File
	stdoutR, stdoutW         *os.File
	stderrR, stderrW         *os.File
	stdout, stderr           bytes.Buffer
	stdoutDone, stderrDone   chan struct{}
	closedWriters, closedAll bool
}

func newCapture() (*capture, error) {
	c := &capture{stdoutDone: make(chan struct{}), stderrDone: make(chan struct{})}
	var err error
	if c.null, err = os.Open(os.DevNull); err != nil {
		return nil, err
	}
	if c.stdoutR, c.stdoutW, err = os.Pipe(); err != nil {
		c.null.Close()
		return nil, err
	}
	if c.stderrR, c.stderrW, err = os.Pipe(); err != nil {
		c.null.Close()
		c.stdoutR.Close()
		c.stdoutW.Close()
		return nil, err
	}
	go func() { io.Copy(&c.stdout, c.stdoutR); close(c.stdoutDone) }()
	go func() { io.Copy(&c.stderr, c.stderrR); close(c.stderrDone) }()
	return c, nil
}

// result waits for the child's output and decodes its report.
func (c *capture) result(exit int) (int64, error) {
	c.closeWriters()
	<-c.stdoutDone
	<-c.stderrDone
	if exit != 0 {
		return 0, fmt.Errorf("child exited with status %d: %s", exit, bytes.TrimSpace(c.stderr.Bytes()))
	}
	return parseChildReport(c.stdout.Bytes())
}

func (c *capture) closeWriters() {
	if !c.closedWriters {
		c.closedWriters = true
		c.stdoutW.Close()
		c.stderrW.Close()
	}
}

func (c *capture) close() {
	c.closeWriters()
	if !c.closedAll {
		c.closedAll = true
		<-c.stdoutDone
		<-c.stderrDone
		c.stdoutR.Close()
		c.stderrR.Close()
		c.null.Close()
	}
}

// --- chroot

type chrootInstance struct {
	env Env
	exe string // the child program, on the new roots' file system, hard-linked into each
}

// startChroot puts one copy of the program next to the new roots, before any invocation runs. Were
// it copied into each root instead (when --work is on another file system than the program), a
// copy still open for writing in one goroutine would be inherited by another's fork, and that
// child's exec would fail with ETXTBSY.
func startChroot(env Env, _, _ int) (instance, error) {
	exe := filepath.Join(env.Work, "chroot-child")
	os.Remove(exe)
	if err := os.Link(env.Exe, exe); err != nil {
		if err := copyFile(env.Exe, exe); err != nil {
			return nil, fmt.Errorf("copy %s to %s: %w", env.Exe, exe, err)
		}
	}
	return chrootInstance{env, exe}, nil
}

// childExe is where the program sits inside a new root.
const childExe = "/fsvirt-bench-child"

func (c chrootInstance) invoke(ctx context.Context, w *Workload, slot, seq int) (Sample, error) {
	start := time.Now()
	root, err := os.MkdirTemp(c.env.Work, "chroot-")
	if err != nil {
		return Sample{}, err
	}
	// The executable is hard-linked, not copied: generous to chroot (a copy of the 5-10 MB static
	// binary would cost more than everything else here). The files the function needs are copied.
	if err := os.Link(c.exe, root+childExe); err != nil {
		os.RemoveAll(root)
		return Sample{}, err
	}
	var copied int64
	for _, rel := range w.Needs(slot, seq) {
		dst := filepath.Join(root, "data", rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			os.RemoveAll(root)
			return Sample{}, err
		}
		if err := copyFile(filepath.Join(c.env.Fixture, rel), dst); err != nil {
			os.RemoveAll(root)
			return Sample{}, err
		}
		if st, err := os.Stat(dst); err == nil {
			copied += st.Size()
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "data", "rw"), 0o755); err != nil {
		os.RemoveAll(root)
		return Sample{}, err
	}
	cmd := exec.CommandContext(ctx, childExe, childArgs(childExe, w, "/data", slot, seq, "")[1:]...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	rss, err := runChild(cmd)
	if rerr := os.RemoveAll(root); err == nil && rerr != nil {
		err = rerr
	}
	return Sample{Dur: time.Since(start), BytesCopied: copied, ChildRSSKiB: rss}, err
}

func (c chrootInstance) close() error { return os.Remove(c.exe) }

// runChild runs a child started by childArgs and decodes its report.
func runChild(cmd *exec.Cmd) (int64, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("child: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return parseChildReport(stdout.Bytes())
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// --- kernel overlayfs in a mount namespace

type overlayInstance struct{ env Env }

func startOverlayfs(env Env, _, _ int) (instance, error) { return overlayInstance{env}, nil }

func (o overlayInstance) invoke(ctx context.Context, w *Workload, slot, seq int) (Sample, error) {
	start := time.Now()
	dir, upper, work, err := upperDirs(o.env.Work, "overlay-")
	if err != nil {
		return Sample{}, err
	}
	cmd := exec.CommandContext(ctx, o.env.Exe, childArgs(o.env.Exe, w, o.env.Fixture, slot, seq, upper+","+work)[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	rss, err := runChild(cmd)
	ran := time.Since(start)
	copied := treeBytes(upper) // not timed
	again := time.Now()
	if rerr := os.RemoveAll(dir); err == nil && rerr != nil {
		err = rerr
	}
	return Sample{Dur: ran + time.Since(again), BytesCopied: copied, ChildRSSKiB: rss}, err
}

func (overlayInstance) close() error { return nil }

func upperDirs(work, prefix string) (dir, upper, wdir string, err error) {
	dir, err = os.MkdirTemp(work, prefix)
	if err != nil {
		return "", "", "", err
	}
	upper, wdir = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{upper, wdir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			os.RemoveAll(dir)
			return "", "", "", err
		}
	}
	return dir, upper, wdir, nil
}

// treeBytes is the size of the regular files under dir.
func treeBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// --- fuse-overlayfs

type fuseInstance struct {
	env Env
	bin string
}

func startFuse(env Env, _, _ int) (instance, error) {
	bin, err := exec.LookPath("fuse-overlayfs")
	if err != nil {
		return nil, err
	}
	return fuseInstance{env, bin}, nil
}

func (f fuseInstance) invoke(ctx context.Context, w *Workload, slot, seq int) (Sample, error) {
	start := time.Now()
	dir, upper, work, err := upperDirs(f.env.Work, "fuse-")
	if err != nil {
		return Sample{}, err
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		os.RemoveAll(dir)
		return Sample{}, err
	}
	// fuse-overlayfs returns once the mount is ready; its daemon serves it until it is unmounted.
	opts := "lowerdir=" + f.env.Fixture + ",upperdir=" + upper + ",workdir=" + work
	if out, err := exec.CommandContext(ctx, f.bin, "-o", opts, mnt).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return Sample{}, fmt.Errorf("fuse-overlayfs: %v: %s", err, bytes.TrimSpace(out))
	}
	err = w.Run(mnt, slot, seq)
	if uerr := unmountFuse(mnt); uerr != nil {
		err = errors.Join(err, fmt.Errorf("unmount %s: %w", mnt, uerr))
	}
	ran := time.Since(start)
	copied := treeBytes(upper) // not timed
	again := time.Now()
	if rerr := os.RemoveAll(dir); err == nil && rerr != nil {
		err = rerr
	}
	return Sample{Dur: ran + time.Since(again), BytesCopied: copied}, err
}

func (fuseInstance) close() error { return nil }

// unmountFuse unmounts mnt. A child forked by a concurrent invocation holds copies of this
// process's descriptors, on the mount included, until it execs: the unmount is retried while it
// reports EBUSY, then detached.
func unmountFuse(mnt string) error {
	for i := 0; i < 100; i++ {
		err := unix.Unmount(mnt, 0)
		if err != unix.EBUSY {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return unix.Unmount(mnt, unix.MNT_DETACH)
}

// --- the child side

// ChildCommand is the hidden subcommand of `fsvirt bench` that runs one workload in a child
// process: fsvirt bench ChildCommand --workload W --root DIR --slot N --seq N [--overlay UP,WORK].
const ChildCommand = "__child"

func childArgs(exe string, w *Workload, root string, slot, seq int, overlay string) []string {
	args := []string{exe, "bench", ChildCommand, "--workload", w.Name, "--root", root,
		"--slot", strconv.Itoa(slot), "--seq", strconv.Itoa(seq)}
	if overlay != "" {
		args = append(args, "--overlay", overlay)
	}
	return args
}

// childReport is what a child prints on stdout when its workload succeeded.
type childReport struct {
	MaxRSSKiB int64 `json:"maxrss_kib"`
}

func parseChildReport(b []byte) (int64, error) {
	var r childReport
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("child report %q: %w", bytes.TrimSpace(b), err)
	}
	return r.MaxRSSKiB, nil
}

// ChildMain runs one workload as ChildCommand's arguments say, and prints a childReport.
func ChildMain(args []string, stdout io.Writer) error {
	var (
		name, root, overlay string
		slot, seq           int
	)
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			return fmt.Errorf("%s: flag %s needs a value", ChildCommand, args[i])
		}
		v := args[i+1]
		var err error
		switch args[i] {
		case "--workload":
			name = v
		case "--root":
			root = v
		case "--overlay":
			overlay = v
		case "--slot":
			slot, err = strconv.Atoi(v)
		case "--seq":
			seq, err = strconv.Atoi(v)
		default:
			return fmt.Errorf("%s: unknown flag %s", ChildCommand, args[i])
		}
		if err != nil {
			return fmt.Errorf("%s: %s: %w", ChildCommand, args[i], err)
		}
	}
	w := WorkloadByName(name)
	if w == nil || root == "" {
		return fmt.Errorf("%s: need --workload (one of %s) and --root", ChildCommand, workloadNames())
	}
	if overlay != "" {
		if err := mountOverlay(root, overlay); err != nil {
			return err
		}
	}
	if err := w.Run(root, slot, seq); err != nil {
		return err
	}
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return json.NewEncoder(stdout).Encode(childReport{MaxRSSKiB: ru.Maxrss})
}

// mountOverlay mounts an overlayfs over root, with upper and work directories given as "UP,WORK".
// The caller runs in a mount namespace of its own, which dies with it, mount included.
func mountOverlay(root, dirs string) error {
	up, work, ok := bytes.Cut([]byte(dirs), []byte(","))
	if !ok {
		return fmt.Errorf("--overlay %q: want UPPER,WORK", dirs)
	}
	if err := unix.Mount("none", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", root, up, work)
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", root, err)
	}
	return nil
}
