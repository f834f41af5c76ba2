package impl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Start starts cmd in the invocation's view, where cmd.Start would fail: a function in thread mode
// cannot start processes itself (see vfork.go; os/exec reports "operation not supported"). The
// process, and every process it starts, reads and changes the invocation's view; whatever of them
// still runs once the invocation has ended is answered in the pool's fence view, as processes
// left running are (read-only, none of any invocation's changes: see lineage.go). Use cmd as
// after cmd.Start: Wait, Process, its pipes.
//
// Start re-executes this program (/proc/self/exe) from a thread without the filter, as process
// mode does: the new process loads a filter of its own, hands its listener to the invocation's
// supervisor, changes to cmd.Dir in the view (default: the function's working directory there,
// also when Start is called from another goroutine), and executes cmd.Path there. Errors of
// those two steps come back from Start, as from cmd.Start.
// That costs a start of this program (its runtime and package initialisation) on top of the
// command's: BenchmarkStartVsExec. cmd.Path, Args and ExtraFiles are what the caller set again
// when Start returns. SysProcAttr applies to the re-executed program, which keeps it across the
// exec; SysProcAttr.Chroot is refused, since it would take the process out of the view. A process
// still running when the pool closes gets ENOSYS from every call the filter intercepts.
//
// Start may be called from the function or from goroutines it starts, until the invocation ends.
func (inv *Invocation) Start(cmd *exec.Cmd) error {
	if cmd.Err != nil {
		return cmd.Err
	}
	if cmd.Process != nil {
		return errors.New("exec: already started")
	}
	if cmd.Path == "" {
		return errors.New("exec: no command")
	}
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.Chroot != "" {
		return errors.New("fsvirt: Start: SysProcAttr.Chroot would take the process out of the view")
	}
	v := inv.view
	if v.busy.isEnded() {
		return errors.New("fsvirt: Start called after the invocation ended")
	}
	dir := cmd.Dir
	if !filepath.IsAbs(dir) {
		wd, err := inv.workingDir()
		if err != nil {
			return fmt.Errorf("fsvirt: Start: working directory: %w", err)
		}
		dir = filepath.Join(wd, dir)
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsvirt: Start: socketpair: %w", err)
	}
	sock := fds[0]
	defer unix.Close(sock)
	child := os.NewFile(uintptr(fds[1]), "fsvirt-init-sock")
	path, args, extra := cmd.Path, cmd.Args, cmd.ExtraFiles
	prog := path
	if !filepath.IsAbs(prog) { // relative to Dir, as for cmd.Start; long enough for /dev/fd/N (see exec)
		prog = filepath.Join(dir, prog)
	}
	cmd.Path = "/proc/self/exe"
	cmd.Args = initArgv(inv.w.sup.feat, true, 3+len(extra), dir, prog, args)
	cmd.ExtraFiles = append(extra[:len(extra):len(extra)], child)
	started := make(chan error, 1)
	// Not on this thread: a goroutine that is not locked to a worker never runs on one.
	go func() { started <- cmd.Start() }()
	err = <-started
	cmd.Path, cmd.Args, cmd.ExtraFiles = path, args, extra
	child.Close()
	if err != nil {
		return fmt.Errorf("fsvirt: start %s: %w", path, err)
	}
	fail := func(err error) error {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}

	lfd, err := recvListener(sock)
	if err != nil {
		return fail(fmt.Errorf("fsvirt: start %s: %w", path, err))
	}
	// Once the invocation has ended, v refuses calls, and the supervisor answers them in the fence.
	l := &listener{fd: lfd, view: func() *View { return v }, fence: inv.w.lis.fence, owned: true}
	if err := inv.w.sup.add(l); err != nil {
		unix.Close(lfd)
		return fail(fmt.Errorf("fsvirt: start %s: %w", path, err))
	}
	// The child changes directory and executes: its socket closes on exec, or says what failed.
	failed, err := readInitReport(sock, 0)
	switch {
	case err != nil:
		return fail(fmt.Errorf("fsvirt: start %s: %w", path, err))
	case failed == nil:
		return nil
	case failed.chdir:
		return fail(&fs.PathError{Op: "chdir", Path: dir, Err: failed.errno})
	}
	return fail(&fs.PathError{Op: "fork/exec", Path: path, Err: failed.errno})
}

// workingDir returns the view path of the function's working directory, whichever goroutine asks.
// It reads the worker thread's from a thread the filter does not trap (see Changes).
func (inv *Invocation) workingDir() (string, error) {
	type result struct {
		dir string
		err error
	}
	out := make(chan result, 1)
	go func() {
		s, err := inv.view.startDir(tracee{tid: inv.w.lineage.worker}, unix.AT_FDCWD)
		if err == nil && s.gone {
			err = unix.ENOENT // the view removed it
		}
		out <- result{s.path, err}
	}()
	r := <-out
	return r.dir, r.err
}
