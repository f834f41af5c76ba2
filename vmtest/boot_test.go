package vmtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// staticTest builds the package in dir as a static test binary, as scripts/vmtest.sh does.
func staticTest(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not in PATH: cannot build the self-test binary")
	}
	bin := filepath.Join(t.TempDir(), "selftest.test")
	cmd := exec.Command(goTool, "test", "-c", "-o", bin, "-tags", "osusergo,netgo",
		"-ldflags", `-linkmode external -extldflags "-static"`, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("static build of %s: %v\n%s", dir, err, out)
	}
	return bin
}

// bootKernel returns the oldest cached kernel: scripts/vmtest.sh boots the others.
func bootKernel(t *testing.T) *Kernel {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install qemu-system-x86 busybox-static, or run scripts/vmtest.sh)", tool)
		}
	}
	kernels, err := CachedKernels()
	if err != nil {
		t.Fatal(err)
	}
	if len(kernels) == 0 {
		cache, _ := CacheDir()
		t.Skipf("no kernel cached in %s: run scripts/vm-kernels.sh", cache)
	}
	return kernels[0]
}

// TestBoot runs the self-test package in a cached kernel and checks its verdict, its probe
// line and that uname -r matched the kernel booted.
func TestBoot(t *testing.T) {
	k := bootKernel(t)
	pkg, err := filepath.Abs("selftest")
	if err != nil {
		t.Fatal(err)
	}
	bin := staticTest(t, pkg)
	var stdout, stderr, console bytes.Buffer
	m := &Machine{Kernel: k, Console: &console}
	start := time.Now()
	job := Job{Binary: bin, Args: []string{"-test.v"}, Dir: pkg, Root: filepath.Dir(pkg)}
	if cp, err := exec.LookPath("cp"); err == nil && filepath.IsAbs(cp) {
		job.Tools = []string{cp}
		job.Env = []string{"FSVIRT_SELFTEST_GNU_CP=1"}
	}
	status, err := m.Run(context.Background(), job, &stdout, &stderr)
	t.Logf("%s: boot and self-test in %v", k.Release, time.Since(start).Round(time.Millisecond))
	if err != nil || status != 0 {
		t.Fatalf("Run = %d, %v\nstdout:\n%s\nstderr:\n%s\nconsole:\n%s", status, err, &stdout, &stderr, &console)
	}
	for _, want := range []string{"fsvirt-probe: selftest=on\n", "--- PASS: TestKernelRelease", "--- PASS: TestFilter", "--- PASS: TestOverlay", "--- PASS: TestBesidePackage", "--- PASS: TestHostTools", "--- PASS: TestDevFd", "\nPASS\n"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, &stdout)
		}
	}
}

// TestExitStatus checks that the binary's exit status, stdout and stderr come back apart, and
// that FSVIRT_* variables reach it.
func TestExitStatus(t *testing.T) {
	k := bootKernel(t)
	pkg, err := filepath.Abs("selftest")
	if err != nil {
		t.Fatal(err)
	}
	bin := staticTest(t, pkg)
	var stdout, stderr bytes.Buffer
	job := Job{Binary: bin, Dir: pkg, Env: []string{"FSVIRT_SELFTEST_EXIT=3"}}
	status, err := (&Machine{Kernel: k}).Run(context.Background(), job, &stdout, &stderr)
	if err != nil || status != 3 || stdout.String() != "selftest: stdout\n" || stderr.String() != "selftest: stderr\n" {
		t.Fatalf("Run = %d, %v with stdout %q, stderr %q; want 3, nil, %q, %q",
			status, err, &stdout, &stderr, "selftest: stdout\n", "selftest: stderr\n")
	}
}

// TestTimeout checks that a cancelled run kills QEMU and says the VM failed.
func TestTimeout(t *testing.T) {
	k := bootKernel(t)
	bin := filepath.Join(t.TempDir(), "true")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := (&Machine{Kernel: k}).Run(ctx, Job{Binary: bin}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, ErrBootFailed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run after the deadline: %v, want ErrBootFailed and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %v to give up", d)
	}
}
