// Command vmexec runs a statically linked test binary as root in a Debian kernel booted under
// QEMU. It is made to be go test's -exec program:
//
//	go build -o /tmp/vmexec ./vmtest/cmd/vmexec
//	go test -exec '/tmp/vmexec -kernel 5.10' -tags osusergo,netgo \
//		-ldflags '-linkmode external -extldflags "-static"' ./impl/...
//
// Usage: vmexec [flags] BINARY [ARG...]. The module holding the current directory is copied into
// the VM at the same path, less .git (outside a module: only the current directory's files and
// its testdata/ tree), and the binary runs in the current directory. FSVIRT_*, RAPID_*, GODEBUG,
// GOMAXPROCS and GOTRACEBACK are passed through to the binary, and FSVIRT_VM_RELEASE is set to
// the booted kernel's release. When the current directory holds a command (package main),
// vmexec builds it statically for the VM's `go build -o FILE .` stand-in (see -main). vmexec
// exits with the binary's status, 124 when -timeout ended the VM, or 125 when the VM itself
// failed or was interrupted; the tail of the kernel console is then printed to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fsvirt/fsvirt/vmtest"
)

// Exit statuses when the VM, not the binary, failed, or when -timeout ended it (as timeout(1)).
const (
	exitVMFailed = 125
	exitTimedOut = 124
)

// passEnv are the variables handed to the binary, besides those starting with passPrefixes.
var (
	passEnv      = []string{"GODEBUG", "GOMAXPROCS", "GOTRACEBACK"}
	passPrefixes = []string{"FSVIRT_", "RAPID_"}
)

// staticFlags build a static cgo binary, as the VM has no shared libraries.
var staticFlags = []string{"-tags", "osusergo,netgo", "-ldflags", `-linkmode external -extldflags "-static"`}

func main() {
	// A signal cancels the run, which kills QEMU rather than leaving it behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	status, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmexec:", err)
	}
	os.Exit(status)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fset := flag.NewFlagSet("vmexec", flag.ContinueOnError)
	fset.SetOutput(stderr)
	kernel := fset.String("kernel", "", "kernel version cached by scripts/vm-kernels.sh (5.10, 6.1, 6.12) or a kernel directory")
	qemu := fset.String("qemu", "qemu-system-x86_64", "QEMU binary")
	busybox := fset.String("busybox", "/bin/busybox", "static busybox binary")
	mem := fset.Int("mem", 2048, "VM memory in MiB")
	cpus := fset.Int("smp", 1, "VM CPUs (one is faster under TCG: docs/vmtest.md)")
	cpu := fset.String("cpu", "max,-cx16", "QEMU CPU model under TCG (KVM uses host)")
	timeout := fset.Duration("timeout", 20*time.Minute, "kill the VM after this long")
	verbose := fset.Bool("v", false, "copy the kernel console to stderr")
	tools := fset.String("tools", "", "comma-separated host programs (absolute paths) the VM gets too, with their shared libraries")
	mainProg := fset.String("main", "auto", "static build of the package's command for the VM's `go build -o FILE .`: a path, \"\" for none, or auto (build it when the current directory is package main)")
	fset.Usage = func() {
		fmt.Fprintln(stderr, "usage: vmexec [flags] BINARY [ARG...]")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0, nil
	} else if err != nil {
		return 2, nil
	}
	if fset.NArg() == 0 || *kernel == "" {
		fset.Usage()
		return 2, errors.New("need -kernel and a binary")
	}
	k, err := vmtest.FindKernel(*kernel)
	if err != nil {
		return exitVMFailed, err
	}
	dir, err := os.Getwd()
	if err != nil {
		return exitVMFailed, err
	}
	console := &tail{max: 64 << 10}
	m := &vmtest.Machine{Kernel: k, QEMU: *qemu, Busybox: *busybox, MemoryMiB: *mem, CPUs: *cpus, CPU: *cpu, Console: console}
	if *verbose {
		m.Console = io.MultiWriter(console, stderr)
	}
	job := vmtest.Job{Binary: fset.Arg(0), Args: fset.Args()[1:], Dir: dir, Root: moduleRoot(dir), Env: environ(), Main: *mainProg}
	if *tools != "" {
		job.Tools = strings.Split(*tools, ",")
	}
	if *mainProg == "auto" {
		tmp, err := os.MkdirTemp("", "vmexec-")
		if err != nil {
			return exitVMFailed, err
		}
		defer os.RemoveAll(tmp)
		if job.Main, err = buildMain(ctx, dir, tmp); err != nil {
			return exitVMFailed, err
		}
	}

	ctx, cancel := context.WithTimeoutCause(ctx, *timeout, fmt.Errorf("timed out after %v: %w", *timeout, context.DeadlineExceeded))
	defer cancel()
	status, err := m.Run(ctx, job, stdout, stderr)
	if err != nil {
		if !*verbose {
			fmt.Fprintf(stderr, "vmexec: kernel console (tail):\n%s\n", console.lastLines(40))
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return exitTimedOut, err
		}
		return exitVMFailed, err
	}
	return status, nil
}

// environ returns the host variables the binary sees.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if slices.Contains(passEnv, name) || slices.ContainsFunc(passPrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			env = append(env, kv)
		}
	}
	return env
}

// moduleRoot returns the directory of the go.mod that governs dir, or "" when there is none.
func moduleRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}

// buildMain builds the command in dir into tmp when dir holds package main, and returns its
// path; it returns "" for any other package.
func buildMain(ctx context.Context, dir, tmp string) (string, error) {
	list := exec.CommandContext(ctx, "go", "list", "-f", "{{.Name}}", ".")
	list.Dir = dir
	name, err := list.Output()
	if err != nil {
		return "", fmt.Errorf("go list in %s: %w", dir, err)
	}
	if strings.TrimSpace(string(name)) != "main" {
		return "", nil
	}
	bin := filepath.Join(tmp, filepath.Base(dir))
	build := exec.CommandContext(ctx, "go", append(append([]string{"build", "-o", bin}, staticFlags...), ".")...)
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("static build of the command in %s: %w\n%s", dir, err, out)
	}
	return bin, nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

// lastLines returns at most n of the last lines written.
func (t *tail) lastLines(n int) string {
	lines := strings.Split(strings.TrimRight(string(t.buf), "\r\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
