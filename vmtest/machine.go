package vmtest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Machine is a QEMU virtual machine that boots Kernel to run one [Job] per boot.
type Machine struct {
	Kernel    *Kernel
	QEMU      string    // qemu-system-x86_64 when empty
	Busybox   string    // a static busybox; /bin/busybox when empty
	MemoryMiB int       // 2048 when zero
	CPUs      int       // 1 when zero (see args)
	CPU       string    // QEMU's -cpu under TCG; "max,-cx16" when empty (see args)
	Console   io.Writer // receives the kernel console when not nil
}

// Job is a test binary to run in the VM as root.
type Job struct {
	Binary string   // host path of a statically linked binary
	Args   []string // its arguments, without argv[0]
	Dir    string   // host directory used as the working directory; "/" when ""
	// Root is the host tree copied into the VM at the same path (less .git directories), e.g.
	// the module root, so that tests can read files beside their package (../README.md).
	// It must hold Dir. When "", only Dir's own files and its testdata/ tree are copied.
	Root string
	Env  []string // KEY=VALUE pairs exported before running it
	// Tools are host programs (absolute paths) the VM gets too, with the shared libraries
	// they need, at their host paths; they take precedence over busybox's applets.
	Tools []string
	// Main is the host path of a static build of the package's own command, or "". When set,
	// the VM has a `go` that answers `go build -o FILE .` with a copy of it, for test
	// packages that build the command they test.
	Main string
}

// ErrBootFailed reports that the VM stopped, or was stopped, before the job finished.
var ErrBootFailed = errors.New("vm run failed")

// Run boots the machine, runs job and copies its stdout and stderr to stdout and stderr.
// It returns the job's exit status; an error wrapping [ErrBootFailed] means the VM stopped
// before the job finished, and the console (see Machine.Console) says why. Cancelling ctx
// kills QEMU. FSVIRT_VM_RELEASE is set in the job's environment to Kernel.Release.
func (m *Machine) Run(ctx context.Context, job Job, stdout, stderr io.Writer) (int, error) {
	kvm := kvmUsable()
	status, err := m.run(ctx, job, stdout, stderr, kvm)
	if kvm && errors.Is(err, errKVM) {
		// /dev/kvm is there but QEMU cannot run a vCPU with it (seen on a nested host: "failed
		// to set MSR 0x10a"): every later run here uses TCG.
		if kvmBroken.CompareAndSwap(false, true) {
			fmt.Fprintf(os.Stderr, "vmtest: KVM is not usable here, running under TCG (%v)\n", err)
		}
		return m.run(ctx, job, stdout, stderr, false)
	}
	return status, err
}

// errKVM marks a QEMU that failed under KVM before the guest wrote anything.
var errKVM = errors.New("qemu failed under KVM")

// kvmBroken is set once a run under KVM has failed that way.
var kvmBroken atomic.Bool

// kvmUsable reports whether runs use KVM: /dev/kvm can be opened, and it has not failed before.
func kvmUsable() bool {
	if kvmBroken.Load() {
		return false
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func (m *Machine) run(ctx context.Context, job Job, stdout, stderr io.Writer, kvm bool) (int, error) {
	if m.Kernel == nil {
		return -1, errors.New("vmtest: Machine.Kernel is nil")
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return -1, fmt.Errorf("vmtest: nonce: %w", err)
	}
	job.Env = append(append([]string(nil), job.Env...), "FSVIRT_VM_RELEASE="+m.Kernel.Release)
	im := &image{
		busybox: cmp.Or(m.Busybox, "/bin/busybox"),
		overlay: m.Kernel.Overlay,
		job:     job,
		nonce:   hex.EncodeToString(nonce),
	}

	tmp, err := os.MkdirTemp("", "fsvirt-vmtest-")
	if err != nil {
		return -1, fmt.Errorf("vmtest: %w", err)
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initramfs.cpio")
	if err := writeImage(initrd, im); err != nil {
		return -1, err
	}

	// The three serial ports are pipes handed to QEMU as fds 3, 4 and 5.
	var readers, writers [3]*os.File
	for i := range readers {
		if readers[i], writers[i], err = os.Pipe(); err != nil {
			return -1, fmt.Errorf("vmtest: %w", err)
		}
		defer readers[i].Close()
	}
	var qemuErr bytes.Buffer
	cmd := exec.CommandContext(ctx, cmp.Or(m.QEMU, "qemu-system-x86_64"), m.args(initrd, kvm)...)
	cmd.ExtraFiles = writers[:]
	cmd.Stderr = &qemuErr
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Start()
	for _, w := range writers {
		w.Close()
	}
	if err != nil {
		return -1, fmt.Errorf("vmtest: start qemu: %w", err)
	}

	console := &countingWriter{w: cmp.Or[io.Writer](m.Console, io.Discard)}
	type portResult struct {
		tail string
		err  error
	}
	ports := [3]chan portResult{make(chan portResult, 1), make(chan portResult, 1), make(chan portResult, 1)}
	go func() {
		_, err := io.Copy(console, readers[0])
		ports[0] <- portResult{err: err}
	}()
	for i, w := range []io.Writer{stdout, stderr} {
		go func() {
			tail, err := copyPort(w, readers[i+1], im.marker())
			ports[i+1] <- portResult{tail, err}
		}()
	}
	waitErr := cmd.Wait()
	cons, out, errp := <-ports[0], <-ports[1], <-ports[2]

	switch {
	case ctx.Err() != nil:
		return -1, fmt.Errorf("vmtest: %s: %w: %w", m.Kernel.Release, ErrBootFailed, context.Cause(ctx))
	case waitErr != nil && kvm && console.n == 0 && out.tail == "" && errp.tail == "" &&
		strings.Contains(strings.ToLower(qemuErr.String()), "kvm"):
		return -1, fmt.Errorf("vmtest: qemu: %w: %w: %w: %s", errKVM, ErrBootFailed, waitErr, strings.TrimSpace(qemuErr.String()))
	case waitErr != nil:
		return -1, fmt.Errorf("vmtest: qemu: %w: %w: %s", ErrBootFailed, waitErr, strings.TrimSpace(qemuErr.String()))
	case errors.Is(out.err, errNoMarker) || errors.Is(errp.err, errNoMarker):
		return -1, fmt.Errorf("vmtest: %s: %w: the VM stopped before %s finished (see the console)",
			m.Kernel.Release, ErrBootFailed, filepath.Base(job.Binary))
	}
	for _, err := range []error{out.err, errp.err} {
		if err != nil {
			return -1, fmt.Errorf("vmtest: copy output: %w", err)
		}
	}
	if cons.err != nil {
		return -1, fmt.Errorf("vmtest: copy console: %w", cons.err)
	}
	status, err := strconv.Atoi(out.tail)
	if err != nil {
		return -1, fmt.Errorf("vmtest: bad exit marker %q: %w", out.tail, err)
	}
	return status, nil
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// args returns QEMU's command line, with KVM or TCG.
func (m *Machine) args(initrd string, kvm bool) []string {
	// QEMU 7.2's TCG corrupts EFLAGS around CMPXCHG16B now and then, which crashes 6.12's SLUB
	// (this_cpu_cmpxchg128) early in about one boot in five; without CX16 the kernel avoids it.
	accel := []string{"-accel", "tcg,thread=multi", "-cpu", cmp.Or(m.CPU, "max,-cx16")}
	if kvm {
		accel = []string{"-accel", "kvm", "-cpu", "host"}
	}
	// One vCPU by default: under TCG every seccomp notification wakes a task on another vCPU
	// when there are two, which costs a cross-thread kick, and a vCPU thread the host preempts
	// while it holds a guest lock stalls the other; on a loaded 2-core host impl's tests ran up to
	// three times slower with two vCPUs than with one (docs/vmtest.md, "What runs, and why it
	// takes what it takes").
	return append(accel,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-smp", strconv.Itoa(cmp.Or(m.CPUs, 1)),
		"-m", strconv.Itoa(cmp.Or(m.MemoryMiB, 2048)),
		"-kernel", m.Kernel.Image,
		"-initrd", initrd,
		// An oops panics and panic=-1 reboots at once, which -no-reboot turns into QEMU's exit.
		// no_timer_check: on a busy host the emulated timer can miss the IO-APIC check's window,
		// and 5.10 then panics ("IO-APIC + timer doesn't work").
		"-append", "console=ttyS0 panic=-1 oops=panic quiet random.trust_cpu=on no_timer_check rdinit=/init",
		"-chardev", "file,id=console,path=/dev/fd/3", "-serial", "chardev:console",
		"-chardev", "file,id=stdout,path=/dev/fd/4", "-serial", "chardev:stdout",
		"-chardev", "file,id=stderr,path=/dev/fd/5", "-serial", "chardev:stderr",
	)
}

// writeImage writes the initramfs for im to path.
func writeImage(path string, im *image) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	if err := im.write(f); err != nil {
		f.Close()
		return fmt.Errorf("vmtest: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	return nil
}
