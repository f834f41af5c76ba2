package vmtest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCopyPort(t *testing.T) {
	const m = "MARK"
	for _, tc := range []struct {
		name, in, out, tail string
		err                 error
	}{
		{name: "empty-output", in: "MARK 0\n", out: "", tail: "0"},
		{name: "lines", in: "a\nb\nMARK 1\n", out: "a\nb\n", tail: "1"},
		{name: "no-final-newline", in: "a\nbMARK 2\n", out: "a\nb", tail: "2"},
		{name: "marker-prefix-is-output", in: "MAR\nMA MARK 0\n", out: "MAR\nMA ", tail: "0"},
		{name: "rest-discarded", in: "a\nMARK 0\nlate\n", out: "a\n", tail: "0"},
		{name: "vm-stopped", in: "a\nb", out: "a\nb", err: errNoMarker},
		{name: "vm-stopped-in-marker", in: "a\nMAR", out: "a\nMAR", err: errNoMarker},
		{name: "vm-stopped-in-marker-line", in: "a\nMARK 1", out: "a\nMARK 1", err: errNoMarker},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			tail, err := copyPort(&out, iotest.OneByteReader(strings.NewReader(tc.in)), m)
			if !errors.Is(err, tc.err) || tail != tc.tail || out.String() != tc.out {
				t.Fatalf("copyPort(%q) = %q, %v with output %q; want %q, %v with output %q",
					tc.in, tail, err, out.String(), tc.tail, tc.err, tc.out)
			}
		})
	}
}

func TestCopyPortLongLine(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	var out bytes.Buffer
	tail, err := copyPort(&out, strings.NewReader(long+"MARK 0\n"), "MARK")
	if err != nil || tail != "0" || out.String() != long {
		t.Fatalf("copyPort: tail %q, err %v, %d bytes out, want %d", tail, err, out.Len(), len(long))
	}
}

func TestShellQuote(t *testing.T) {
	for _, s := range []string{"", "plain", "it's", "'", `"$HOME" $(id) \n`, "two\nlines", "-test.run=^A$"} {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil {
			t.Fatalf("sh: %v", err)
		}
		if string(out) != s {
			t.Errorf("sh read %q back as %q", s, out)
		}
	}
}

func TestValidEnvName(t *testing.T) {
	for name, want := range map[string]bool{"FSVIRT_DISABLE": true, "_x1": true, "": false, "1A": false, "A-B": false, "A=B": false} {
		if got := validEnvName(name); got != want {
			t.Errorf("validEnvName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestImage unpacks an initramfs with busybox cpio and checks what the guest will find.
func TestImage(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed: cannot unpack the image")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "x.test")
	if err := os.WriteFile(bin, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	pkg, err := filepath.Abs("selftest")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(pkg) // vmtest/: the tree holds files beside the package
	main := filepath.Join(dir, "cmd")
	if err := os.WriteFile(main, []byte("command"), 0o755); err != nil {
		t.Fatal(err)
	}
	im := &image{busybox: busybox, job: Job{Binary: bin, Args: []string{"-test.v", "it's"}, Dir: pkg, Root: root, Env: []string{"FSVIRT_X=a b", "BAD-NAME=1"}, Main: main}, nonce: "n"}
	archive := filepath.Join(dir, "initramfs.cpio")
	if err := writeImage(archive, im); err != nil {
		t.Fatal(err)
	}

	list, err := exec.Command(busybox, "cpio", "-t", "-F", archive).Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	names := strings.Fields(string(list))
	// The tree keeps its host path unless init mounts over it (a checkout under /tmp).
	vmPkg, vmRoot := pkg, root
	if im.vmRoot() == vmSrcDir {
		vmPkg, vmRoot = path.Join(vmSrcDir, filepath.Base(pkg)), vmSrcDir
	}
	inVM := strings.TrimPrefix(vmPkg, "/")
	for _, want := range []string{"init", "bin", "usr/bin/busybox", "dev/console", "tmp", "etc/hostname", "fsvirt/bin/x.test", "fsvirt/main/program", "usr/bin/go", inVM + "/selftest.go", inVM + "/testdata/hello.txt", strings.TrimPrefix(vmRoot, "/") + "/doc.go"} {
		if !slices.Contains(names, want) {
			t.Errorf("image lacks %s; it has %q", want, names)
		}
	}

	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(busybox, "cpio", "-i", "-d", "-F", archive, "init", "fsvirt/bin/x.test", "fsvirt/main/program", inVM+"/testdata/hello.txt")
	cmd.Dir = out
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, msg)
	}
	for name, want := range map[string]string{"fsvirt/bin/x.test": "binary", "fsvirt/main/program": "command", inVM + "/testdata/hello.txt": "hello from testdata\n"} {
		if got, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	script, err := os.ReadFile(filepath.Join(out, "init"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"export FSVIRT_X='a b'\n", "cd '" + vmPkg + "'", `'/fsvirt/bin/x.test' '-test.v' 'it'\''s'`, "poweroff -f"} {
		if !strings.Contains(string(script), want) {
			t.Errorf("init lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(string(script), "BAD-NAME") {
		t.Errorf("init exports an invalid name:\n%s", script)
	}
}

// TestGoShim runs the VM's stand-in for go with sh: it copies the command for
// `go build -o FILE .` and refuses everything else.
func TestGoShim(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "program")
	if err := os.WriteFile(prog, []byte("command"), 0o644); err != nil {
		t.Fatal(err)
	}
	shim := filepath.Join(dir, "go")
	if err := os.WriteFile(shim, []byte(strings.ReplaceAll(goShim, vmMain, prog)), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	for _, args := range [][]string{{"build", "-o", out, "."}, {"build", "-o=" + out}} {
		os.Remove(out)
		if msg, err := exec.Command("sh", append([]string{shim}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("go %q: %v: %s", args, err, msg)
		}
		st, err := os.Stat(out)
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("go %q made %v, %v; want an executable", args, st, err)
		}
		if got, _ := os.ReadFile(out); string(got) != "command" {
			t.Fatalf("go %q wrote %q", args, got)
		}
	}
	for _, args := range [][]string{{"test", "./..."}, {"build", "."}, {"build", "-o", out, "./cmd/x"}, {"build", "-o", dir, "."}, {"build", "-race", "-o", out, "."}, {"build", "-o"}, {}} {
		msg, err := exec.Command("sh", append([]string{shim}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(msg), "no Go toolchain") {
			t.Errorf("go %q = %v: %s; want exit status 2 and a message", args, err, msg)
		}
	}
}

// TestVMDir checks where the tree and the working directory land in the VM.
func TestVMDir(t *testing.T) {
	for _, tc := range []struct {
		name, root, dir, want string
	}{
		{"no-dir", "", "", "/"},
		{"dir-is-root", "", "/work/m/pkg", "/work/m/pkg"},
		{"package-in-module", "/work/m", "/work/m/impl", "/work/m/impl"},
		{"module-root", "/work/m", "/work/m", "/work/m"},
		{"hidden-by-tmpfs", "/tmp/m", "/tmp/m/impl", vmSrcDir + "/impl"},
		{"hidden-by-proc", "/proc", "/proc/x", vmSrcDir + "/x"},
		{"not-hidden-by-prefix", "/tmpdir/m", "/tmpdir/m/a", "/tmpdir/m/a"},
		{"dir-outside-root", "/work/m", "/work/other", ""},
		{"dir-above-root", "/work/m", "/work", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := &image{job: Job{Dir: tc.dir, Root: tc.root}}
			got, err := im.vmDir()
			if (err != nil) != (tc.want == "") || got != tc.want {
				t.Fatalf("vmDir() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestShallowTree checks that a job without a Root copies only its directory's files and
// testdata/ tree, not everything below it.
func TestShallowTree(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed: cannot unpack the image")
	}
	dir := t.TempDir()
	pkg := filepath.Join(dir, "pkg")
	for _, d := range []string{"sub", "testdata/deep"} {
		if err := os.MkdirAll(filepath.Join(pkg, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a.go", "sub/b.go", "testdata/deep/c.txt", "bin.test"} {
		if err := os.WriteFile(filepath.Join(pkg, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	archive := filepath.Join(dir, "initramfs.cpio")
	im := &image{busybox: busybox, job: Job{Binary: filepath.Join(pkg, "bin.test"), Dir: pkg}, nonce: "n"}
	if err := writeImage(archive, im); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(busybox, "cpio", "-t", "-F", archive).Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	names := strings.Fields(string(list))
	inVM := strings.TrimPrefix(vmSrcDir, "/") // t.TempDir is under /tmp, which init mounts over
	if !strings.HasPrefix(pkg, "/tmp/") {
		inVM = strings.TrimPrefix(pkg, "/")
	}
	for name, want := range map[string]bool{"a.go": true, "testdata/deep/c.txt": true, "sub/b.go": false, "sub": false} {
		if got := slices.Contains(names, inVM+"/"+name); got != want {
			t.Errorf("image has %s: %v, want %v (%q)", name, got, want, names)
		}
	}
}

// TestHostTools checks the closure of a host program: the program, its loader and libraries
// (symlinked names included) and the loader cache.
func TestHostTools(t *testing.T) {
	cp, err := exec.LookPath("cp")
	if err != nil {
		t.Skip("no cp on this machine")
	}
	cp, err = filepath.Abs(cp)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := hostTools([]string{cp, "/bin/sh"})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]toolEntry{}
	for _, e := range entries {
		names[e.name] = e
	}
	if _, ok := names[cp]; !ok {
		t.Errorf("closure lacks %s: %v", cp, entries)
	}
	if e, ok := names["/bin/sh"]; ok && (e.target == "" || !filepath.IsAbs(e.target)) {
		t.Errorf("/bin/sh is %+v, want a symlink with an absolute target", e)
	}
	var libc, loader bool
	for name, e := range names {
		libc = libc || strings.HasPrefix(filepath.Base(name), "libc.so")
		loader = loader || strings.HasPrefix(filepath.Base(name), "ld-linux")
		if e.target != "" {
			if _, ok := names[e.target]; !ok {
				t.Errorf("symlink %s -> %s: target not in the closure", name, e.target)
			}
		}
	}
	if !libc || !loader {
		t.Errorf("closure lacks libc (%v) or the loader (%v): %v", libc, loader, entries)
	}
	if _, err := hostTools([]string{"relative/cp"}); err == nil {
		t.Error("hostTools accepted a relative path")
	}
}

func TestVMPath(t *testing.T) {
	for in, want := range map[string]string{"/bin/sh": "/usr/bin/sh", "/lib64/ld.so": "/usr/lib64/ld.so", "/lib": "/usr/lib", "/library/x": "/library/x", "/usr/bin/cp": "/usr/bin/cp"} {
		if got := vmPath(in); got != want {
			t.Errorf("vmPath(%q) = %q, want %q", in, got, want)
		}
	}
}
