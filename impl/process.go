package impl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/fsvirt/fsvirt/internal/notify"
	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"
)

// RunConfig configures one process-mode invocation.
type RunConfig struct {
	Trees  []string // as Config.Trees
	Store  string   // as Config.Store
	Policy Policy
	Logger *slog.Logger
	Limits Limits // as Config.Limits

	Path string   // the program to execute, already looked up
	Args []string // its argv, Args[0] included
	Env  []string // its environment; nil means the current one
	Dir  string   // its working directory; "" means the current one

	Stdin, Stdout, Stderr *os.File // nil means the corresponding file of this process

	// Keep, when set, receives a copy of the private layer before it is removed.
	Keep string
	// Layer, when set, is a named layer (see layerrun.go): the view starts from its changes,
	// and they and the command's are saved back into it at the end, whatever the command's
	// exit status. Not with Keep.
	Layer string
	// Reap makes this process a child subreaper that reaps the command's orphaned descendants,
	// which keep the view alive until they exit. Set it only in a process that starts no other
	// children of its own (the CLI).
	Reap bool
	// ForwardSignals relays SIGINT, SIGTERM, SIGHUP and SIGQUIT to the command; SIGINT and
	// SIGQUIT not while both are in the terminal's foreground process group, where the terminal
	// sends them to the command itself.
	ForwardSignals bool
}

// Result is what a process-mode invocation left.
type Result struct {
	// ExitStatus is the command's exit code, or 128+N when signal N killed it.
	ExitStatus int
	Changes    []Change
	Stats      Stats
	Usage      Usage // what the private layer held at the end
	// Signal is the signal that killed the command, 0 if it exited.
	Signal int
	// NotRun, when set, says why the command could not be executed in the view (ExitStatus
	// is then ExitCannotRun or ExitNotFound): "exec PATH: ERROR" or "chdir DIR: ERROR".
	NotRun string
	// Stopped, when set, says why fsvirt killed the command: the store's file system ran out of
	// the free space Limits.MinFree keeps (guard.go).
	Stopped string
}

// commandEnd is how a command run in a view ended.
type commandEnd struct {
	status  int    // exit status, 128+N for signal N
	signal  int    // the signal that killed it, or 0
	notRun  string // why fsvirt-init could not execute it, or ""
	stopped string // why the guard killed it, or ""
}

// initArg0 marks a re-executed fsvirt that is to become the command (see initRole).
const initArg0 = "fsvirt-init"

// Exit codes of the fsvirt-init stage, as env(1) uses them.
const (
	ExitFailure   = 125 // fsvirt itself failed
	ExitCannotRun = 126 // the command was found but could not be executed
	ExitNotFound  = 127 // the command was not found
)

// fsvirt-init's argv: initArg0, options (comma-separated flags below), the number of its socket
// to the parent, the directory to change to in the view ("" for none), the program, its argv.
const (
	initFlagWaitKil  = "wait-killable" // load the filter with SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
	initFlagQuiet    = "quiet"         // say why a step failed on the socket only, not on stderr
	initFlagLandlock = "landlock="     // + the Landlock ABI version to restrict the thread with
	initArgs         = 5
)

// initArgv is the argv that makes this program fsvirt-init (see initRole): its socket to the parent is
// fd sock, it changes to dir ("" for none) in the view and executes path with args. quiet keeps
// its errors off stderr (they come over the socket only). feat, the serving supervisor's feature
// set, says how it loads the filter and whether Landlock restricts it.
func initArgv(feat notify.FeatureSet, quiet bool, sock int, dir, path string, args []string) []string {
	var flags []string
	if quiet {
		flags = append(flags, initFlagQuiet)
	}
	if feat.WaitKillableRecv {
		flags = append(flags, initFlagWaitKil)
	}
	if abi := landlockABI(feat); abi > 0 {
		flags = append(flags, initFlagLandlock+strconv.Itoa(abi))
	}
	opts := strings.Join(flags, ",")
	if opts == "" {
		opts = "plain"
	}
	return append([]string{initArg0, opts, strconv.Itoa(sock), dir, path}, args...)
}

// What fsvirt-init sends when a step after the listener fails: the step, then the errno (4 bytes,
// native endian).
const (
	initFailChdir = 'c'
	initFailExec  = 'e'
)

// initRole turns a process started as "fsvirt-init" into the invocation's first task: it loads the
// filter on its own thread, hands the listener to the parent over its socket, and executes the
// command. It runs from this package's init (reexec.go), before anything else of the program.
func initRole() {
	if len(os.Args) < initArgs+1 {
		return
	}
	runtime.LockOSThread()
	sock, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintf(os.Stderr, "fsvirt: fsvirt-init: bad socket %q\n", os.Args[2])
		os.Exit(ExitFailure)
	}
	var waitKillable, quiet bool
	abi := 0
	for _, f := range strings.Split(os.Args[1], ",") {
		waitKillable = waitKillable || f == initFlagWaitKil
		quiet = quiet || f == initFlagQuiet
		if v, ok := strings.CutPrefix(f, initFlagLandlock); ok {
			if abi, err = strconv.Atoi(v); err != nil {
				fmt.Fprintf(os.Stderr, "fsvirt: fsvirt-init: bad option %q\n", f)
				os.Exit(ExitFailure)
			}
		}
	}
	os.Exit(childInit(waitKillable, quiet, abi, sock, os.Args[3], os.Args[4], os.Args[5:]))
}

// childInit is fsvirt-init on its locked thread: Landlock (ABI abi, 0 for none) and the filter
// restrict this thread, which executes the command; the others end at the exec.
func childInit(waitKillable, quiet bool, abi, sock int, dir, path string, argv []string) int {
	err := restrictThread(abi)
	if err == nil && abi == 0 {
		// The kernel writes a core dump by path, in the crashing process's working directory,
		// without a call the filter sees: without Landlock to refuse it, there is none
		// (docs/kernel.md, "Landlock underneath").
		err = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	}
	var prog []unix.SockFilter
	if err == nil {
		prog, err = compiledFilter()
	}
	if err == nil {
		var lfd int
		lfd, err = notify.LoadFilter(prog, waitKillable)
		if err == nil {
			err = unix.Sendmsg(sock, []byte{0}, unix.UnixRights(lfd), nil, 0)
			unix.Close(lfd)
		}
	}
	if err != nil {
		unix.Close(sock)
		fmt.Fprintf(os.Stderr, "fsvirt: %v\n", err)
		return ExitFailure
	}
	unix.CloseOnExec(sock) // the parent reads end of file when the exec has succeeded
	report := func(step byte, what string, err error) int {
		errno, _ := err.(unix.Errno)
		msg := []byte{step, 0, 0, 0, 0}
		binary.NativeEndian.PutUint32(msg[1:], uint32(errno))
		unix.Sendmsg(sock, msg, nil, nil, unix.MSG_NOSIGNAL)
		if !quiet {
			fmt.Fprintf(os.Stderr, "fsvirt: %s: %v\n", what, err)
		}
		if step == initFailExec && errno == unix.ENOENT {
			return ExitNotFound
		}
		return ExitCannotRun
	}
	if dir != "" {
		if err := unix.Chdir(dir); err != nil {
			return report(initFailChdir, "chdir "+dir, err)
		}
	}
	// The command inherits no ambient capability: an fsvirt in a user namespace of its own holds
	// CAP_SYS_ADMIN there as an ambient one, to mount the layers (cmd/fsvirt, userns.go).
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		fmt.Fprintf(os.Stderr, "fsvirt: clear ambient capabilities: %v\n", err)
		return ExitFailure
	}
	return report(initFailExec, path, unix.Exec(path, argv, os.Environ()))
}

// Run executes a command and all its descendants in one fresh private view, and removes the view
// once no task of the command is left (the listener reports POLLHUP:
// docs/kernel.md, "A listener hangs up").
//
// Cancelling ctx kills the command with SIGKILL; descendants it left behind keep the view alive
// until they exit.
//
// Run makes the calling process non-dumpable (PR_SET_DUMPABLE 0), for good: it is the supervisor,
// which the command must not be able to ptrace or read through /proc
// (docs/kernel.md, "Reaching the supervisor").
//
// Run is long because it is one sequence of set-up steps (checks, named layer, store, namespace,
// view, supervisor), each undone by a defer in reverse order, and a tear-down (keep, save) whose
// errors join the deferred store close's in one result: split, the defers and that joined error
// would have to be handed between functions.
func Run(ctx context.Context, cfg RunConfig) (res *Result, err error) {
	feat, err := engineFeatures()
	if err != nil {
		return nil, err
	}
	if _, err := compiledFilter(); err != nil {
		return nil, err
	}
	if cfg.Keep != "" {
		if cfg.Layer != "" {
			return nil, errors.New("a layer (Layer) is saved in its own directory: Keep too is refused")
		}
		if err := checkKeepDir(cfg.Keep); err != nil {
			return nil, err
		}
	}
	var named *namedLayer
	if cfg.Layer != "" {
		if named, err = openLayer(cfg.Layer); err != nil {
			return nil, err
		}
		defer named.close()
	}
	// The command must not reach the supervisor through ptrace, process_vm_*, pidfd_getfd or
	// /proc/PID/{mem,fd,...}: the filter denies the calls, the view the entries (supervisorOnly),
	// and the kernel refuses all of them to a task without CAP_SYS_PTRACE once this process is not
	// dumpable (docs/kernel.md, "Reaching the supervisor"). The command's own processes become
	// dumpable again at their execve.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st, err := openStore(cfg.Store)
	if err != nil {
		return nil, err
	}
	var cleanup *multierror.Error
	defer func() {
		if cerr := st.close(); cerr != nil {
			cleanup = multierror.Append(cleanup, cerr)
		}
		if cleanup != nil {
			err = multierror.Append(cleanup, err).ErrorOrNil()
		}
	}()
	ns, err := newNamespace(cfg.Trees, st.root, cfg.Policy)
	if err != nil {
		return nil, err
	}
	if err := st.limit(ns, cfg.Limits); err != nil {
		return nil, err
	}
	if named != nil {
		if err := named.checkTrees(ns); err != nil {
			return nil, err
		}
	}
	v, err := st.newView(ns)
	if err != nil {
		return nil, err
	}
	sup, err := newSupervisor(log, feat)
	if err != nil {
		return nil, err
	}
	defer sup.stop()

	if named != nil {
		if err := named.load(ctx, v, sup, cfg); err != nil {
			v.closeGhosts()
			return nil, err
		}
	}
	end, err := v.runCommand(ctx, sup, cfg)
	v.closeGhosts()
	if err != nil {
		return nil, err
	}
	res = &Result{ExitStatus: end.status, Signal: end.signal, NotRun: end.notRun, Stopped: end.stopped,
		Changes: v.Changes(), Stats: v.Stats(), Usage: v.Usage()}
	if cfg.Keep != "" {
		if kerr := v.keep(cfg.Keep, nil); kerr != nil {
			cleanup = multierror.Append(cleanup, fmt.Errorf("keep private layer in %s: %w", cfg.Keep, kerr))
		}
	}
	if named != nil {
		if serr := named.save(v); serr != nil {
			cleanup = multierror.Append(cleanup, serr)
		}
	}
	return res, nil
}

// runCommand starts the command through fsvirt-init, serves its view, and returns its exit status
// once every task that used the filter has gone, and why fsvirt-init could not execute it, if so.
func (v *View) runCommand(ctx context.Context, sup *supervisor, cfg RunConfig) (commandEnd, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return commandEnd{}, fmt.Errorf("socketpair: %w", err)
	}
	parentSock, childSock := fds[0], fds[1]
	defer unix.Close(parentSock)
	files := []*os.File{orStd(cfg.Stdin, os.Stdin), orStd(cfg.Stdout, os.Stdout), orStd(cfg.Stderr, os.Stderr),
		os.NewFile(uintptr(childSock), "fsvirt-init-sock")}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	if cfg.Reap {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			files[3].Close()
			return commandEnd{}, fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
		}
	}
	// The socket is the last of files; cfg.Dir is the kernel's to change to, before the filter.
	proc, err := os.StartProcess("/proc/self/exe", initArgv(sup.feat, false, len(files)-1, "", cfg.Path, cfg.Args),
		&os.ProcAttr{Dir: cfg.Dir, Env: env, Files: files})
	files[3].Close()
	if err != nil {
		return commandEnd{}, fmt.Errorf("start %s: %w", initArg0, err)
	}

	for _, f := range files[:3] {
		v.inherited = append(v.inherited, int(f.Fd()))
	}
	if _, start, err := procStat(proc.Pid); err == nil { // it waits for the listener to be taken
		v.mu.Lock()
		v.top = procID{proc.Pid, start}
		v.mu.Unlock()
	}
	lfd, recvErr := recvListener(parentSock)
	hup := make(chan struct{})
	if recvErr == nil {
		recvErr = sup.add(&listener{fd: lfd, view: func() *View { return v }, hup: func() { close(hup) }})
		if recvErr != nil {
			proc.Kill()
			unix.Close(lfd)
		}
	}
	if recvErr != nil {
		ps, _ := proc.Wait() // fsvirt-init said why on stderr
		if ps != nil && ps.ExitCode() > 0 {
			return commandEnd{status: ps.ExitCode()}, nil
		}
		return commandEnd{}, fmt.Errorf("receive listener: %w", recvErr)
	}
	defer unix.Close(lfd)
	return v.waitCommand(ctx, cfg, proc, parentSock, hup), nil
}

// waitCommand waits for the command runCommand started, proc, to exit (killing it when ctx is
// cancelled) and then for every task that used the filter to be gone (hup), forwarding signals
// and letting the guard stop it meanwhile, and says how it ended.
func (v *View) waitCommand(ctx context.Context, cfg RunConfig, proc *os.Process, parentSock int, hup chan struct{}) commandEnd {
	stopFwd := forwardSignals(cfg.ForwardSignals, proc)
	defer stopFwd()
	var stopped atomic.Pointer[string]
	if g := v.ns.guard; g != nil {
		stopGuard := make(chan struct{})
		defer close(stopGuard)
		go g.watch(stopGuard, func(why string) {
			stopped.Store(&why)
			v.killCommand(cfg.Reap)
		})
	}
	waited := make(chan *os.ProcessState, 1)
	go func() {
		ps, _ := proc.Wait()
		waited <- ps
	}()
	var ps *os.ProcessState
	select {
	case ps = <-waited:
	case <-ctx.Done():
		proc.Kill()
		ps = <-waited
	}
	if cfg.Reap {
		go reapOrphans(hup)
	}
	<-hup
	end := commandEnd{status: exitStatus(ps), notRun: initFailure(parentSock, cfg)}
	if why := stopped.Load(); why != nil {
		end.stopped = *why
	}
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			end.signal = int(ws.Signal())
		}
	}
	return end
}

// initFailure reads what fsvirt-init sent on sock before it exited, if it could not change to
// the directory or execute the command, and says so; "" when it executed it.
func initFailure(sock int, cfg RunConfig) string {
	failed, err := readInitReport(sock, unix.MSG_DONTWAIT)
	switch {
	case err != nil || failed == nil:
		return ""
	case failed.chdir:
		return fmt.Sprintf("chdir %s: %v", cfg.Dir, failed.errno)
	}
	return fmt.Sprintf("exec %s: %v", cfg.Path, failed.errno)
}

// initStep is the step fsvirt-init reports it failed: the change of directory (chdir) or the
// exec, and its errno.
type initStep struct {
	chdir bool
	errno unix.Errno
}

// readInitReport reads what fsvirt-init, at the other end of sock, says of its last steps:
// nothing once its socket closed on exec (nil), or the step that failed. flags are Recvmsg's.
func readInitReport(sock, flags int) (*initStep, error) {
	var msg [5]byte
	n, _, _, _, err := unix.Recvmsg(sock, msg[:], nil, flags)
	switch {
	case err != nil:
		return nil, err
	case n == 0:
		return nil, nil
	case n != len(msg):
		return nil, fmt.Errorf("fsvirt-init sent %d bytes", n)
	}
	return &initStep{chdir: msg[0] == initFailChdir, errno: unix.Errno(binary.NativeEndian.Uint32(msg[1:]))}, nil
}

func orStd(f, std *os.File) *os.File {
	if f != nil {
		return f
	}
	return std
}

// recvListener receives the listener fd that fsvirt-init sends, or an error once it exited first.
func recvListener(sock int) (int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, errors.New("fsvirt-init exited without sending its listener")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, errors.New("fsvirt-init sent no listener")
	}
	return fds[0], nil
}

// reapOrphans waits for descendants reparented to this subreaper until the view is released.
func reapOrphans(hup <-chan struct{}) {
	for {
		select {
		case <-hup:
			return
		default:
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, 0, nil); err == unix.ECHILD {
			return
		}
	}
}

func forwardSignals(on bool, proc *os.Process) func() {
	if !on {
		return func() {}
	}
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				if (s == syscall.SIGINT || s == syscall.SIGQUIT) && sameForegroundGroup(proc.Pid) {
					continue // the terminal sent it to the command's process group too
				}
				proc.Signal(s)
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// sameForegroundGroup reports whether the command (process pid) is in this process's group and
// that group is the foreground one of the controlling terminal: Ctrl-C and Ctrl-\ then reach the
// command from the terminal itself, and forwarding them would deliver them twice. Signals sent to
// fsvirt alone (kill -INT) are then not forwarded either; SIGTERM and SIGHUP always are.
func sameForegroundGroup(pid int) bool {
	pgid, err := unix.Getpgid(pid)
	if err != nil || pgid != unix.Getpgrp() {
		return false
	}
	tty, err := long.Open("/dev/tty", unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false // no controlling terminal: nobody else sends it
	}
	defer unix.Close(tty)
	fg, err := unix.IoctlGetInt(tty, unix.TIOCGPGRP)
	return err == nil && fg == pgid
}

// exitStatus maps a wait status to a shell-style exit code.
func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return ExitFailure
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
