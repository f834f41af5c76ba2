package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/conformance/driver"
	"github.com/fsvirt/fsvirt/internal/sysexec"
)

// Impl is an implementation under test: it gives every Run a fresh private
// view of the shared directory it was made for.
type Impl interface {
	// Run performs one run of a case with the driver, in a fresh private
	// view of a.Root (the shared directory), and returns the driver's output:
	// JSON lines of [driver.Observation]. Concurrent calls get views of
	// their own.
	Run(ctx context.Context, a driver.Args) ([]byte, error)
}

// Factory makes an implementation for the shared directory dir. dir exists
// until the suite ends; the suite rebuilds its content for every case, so an
// implementation must not cache it between runs. If the Impl is an
// [io.Closer], the suite closes it at the end.
type Factory func(dir string) (Impl, error)

// InProcess adapts a Go implementation: run must call fn once, on a thread
// whose file-system calls see a fresh private view of the shared directory,
// and return what fn returns. The driver runs inside fn; it changes the
// thread's working directory and umask, so the thread must have a
// file-system context of its own (unshare(CLONE_FS)), and it makes every
// system call on fn's goroutine.
func InProcess(run func(ctx context.Context, fn func() error) error) Impl {
	return inProcess(run)
}

type inProcess func(ctx context.Context, fn func() error) error

func (run inProcess) Run(ctx context.Context, a driver.Args) ([]byte, error) {
	var out bytes.Buffer
	err := run(ctx, func() error { return driver.Run(ctx, a, &out) })
	return out.Bytes(), err
}

// onOwnThread runs fn on a new thread with a file-system context of its own;
// the thread exits with fn, its working directory and umask with it.
func onOwnThread(_ context.Context, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- os.NewSyscallError("unshare(CLONE_FS)", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// None runs the driver on the shared directory itself: no isolation at all.
// The suite must fail it.
func None(string) (Impl, error) { return InProcess(onOwnThread), nil }

// Copy runs the driver on a private full copy of the shared directory, made
// for every run: the reference the suite compares other implementations with.
func Copy(string) (Impl, error) { return copyImpl{}, nil }

type copyImpl struct{}

func (copyImpl) Run(ctx context.Context, a driver.Args) ([]byte, error) {
	dir, err := os.MkdirTemp("", "fsvirt-conform-copy-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	t, err := sysexec.Walk(a.Root)
	if err == nil {
		err = sysexec.Build(dir, t)
	}
	if err != nil {
		return nil, fmt.Errorf("copy %s: %w", a.Root, err)
	}
	a.Root = dir
	return InProcess(onOwnThread).Run(ctx, a)
}

// Command returns a factory of implementations that run the driver program,
// whose argv is driverArgv, under a command prefix: a shell fragment, to
// which the driver's argv is appended, in which {dir} stands for the shared
// directory and {tmp} for a fresh empty directory outside it, removed after
// the run. "fsvirt run --tree {dir} --" is one; "" runs the driver on the
// shared directory itself.
func Command(prefix string, driverArgv []string) Factory {
	return func(string) (Impl, error) { return command{prefix, driverArgv}, nil }
}

type command struct {
	prefix string
	driver []string
}

// stderrLimit bounds how much of a failed run's stderr an error quotes.
const stderrLimit = 2000

func (c command) Run(ctx context.Context, a driver.Args) ([]byte, error) {
	scratch, err := os.MkdirTemp("", "fsvirt-conform-run-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	tmp, caseFile := filepath.Join(scratch, "tmp"), filepath.Join(scratch, "case.json")
	if err := errors.Join(os.WriteFile(caseFile, mustMarshal(a.Case), 0o644), os.Mkdir(tmp, 0o755)); err != nil {
		return nil, err
	}
	script := strings.NewReplacer("{dir}", shellQuote(a.Root), "{tmp}", shellQuote(tmp)).Replace(c.prefix)
	argv := append([]string{"-c", script + ` "$@"`, "sh"}, c.driver...)
	argv = append(argv, "--root", a.Root, "--run", strconv.Itoa(a.Run), "--sync", a.Sync, caseFile)
	cmd := exec.CommandContext(ctx, "/bin/sh", argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The prefix may start daemons (fuse-overlayfs) or namespaces: kill the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%v: %s", err, tail(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > stderrLimit {
		s = "..." + s[len(s)-stderrLimit:]
	}
	return s
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// probe runs a command prefix once with true(1) on an empty directory: an
// error says why the implementation cannot run here.
func probe(ctx context.Context, prefix string) error {
	dir, err := os.MkdirTemp("", "fsvirt-conform-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tree, tmp := filepath.Join(dir, "tree"), filepath.Join(dir, "tmp")
	if err := errors.Join(os.Mkdir(tree, 0o755), os.Mkdir(tmp, 0o755)); err != nil {
		return err
	}
	script := strings.NewReplacer("{dir}", shellQuote(tree), "{tmp}", shellQuote(tmp)).Replace(prefix)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", script+` "$@"`, "sh", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, tail(string(out)))
	}
	return nil
}

func mustMarshal(c *driver.Case) []byte {
	data, err := json.Marshal(c)
	if err != nil {
		panic("[bug] conformance: " + err.Error())
	}
	return data
}
