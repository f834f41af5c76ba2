package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/internal/notify"
)

// The tests run the built binary, so exit statuses come from os.Exit as users see them.
var (
	fsvirtBin string
	// noEngine, when set, says why this kernel cannot run commands under fsvirt.
	noEngine string
)

// runTimeout bounds one fsvirt invocation, so a view that never ends fails the test instead of
// hanging it. FSVIRT_TEST_RUN_TIMEOUT (a Go duration) sets another: under QEMU's TCG
// (scripts/vmtest.sh) a scenario takes 15-40 s unloaded, and several times that on a busy host.
// It outlasts the chains scenario's 30 s wait for an orphan's file, so that a file that never
// comes shows as a difference, and a loaded host's 10-20 s runs (a load of 13 took one past 30 s).
var runTimeout = 60 * time.Second

func TestMain(m *testing.M) {
	if dir := os.Getenv(listEnv); dir != "" {
		l, err := contentList(dir)
		fmt.Print(l)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fsvirt-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if v := os.Getenv("FSVIRT_TEST_RUN_TIMEOUT"); v != "" {
		if runTimeout, err = time.ParseDuration(v); err != nil || runTimeout <= 0 {
			fmt.Fprintf(os.Stderr, "FSVIRT_TEST_RUN_TIMEOUT=%q: want a positive duration (%v)\n", v, err)
			return 1
		}
	}
	fsvirtBin = filepath.Join(dir, "fsvirt")
	build := exec.Command("go", "build", "-o", fsvirtBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n", err)
		return 1
	}
	noEngine = probeEngine()
	return m.Run()
}

// probeEngine reports the seccomp features this kernel lacks for process mode, or "".
func probeEngine() string {
	out, _ := exec.Command(fsvirtBin, "features").Output()
	var missing []string
	for _, want := range []string{"user-notif=on", "addfd=on"} {
		if !bytes.Contains(out, []byte(want+"\n")) {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("kernel lacks %s (fsvirt features: %q)", strings.Join(missing, ", "), out)
	}
	return ""
}

// requireEngine skips a test that runs a command when the kernel cannot (Linux < 5.9:
// docs/kernel.md, "Injected descriptors").
func requireEngine(t testing.TB) {
	t.Helper()
	if noEngine != "" {
		t.Skip(noEngine)
	}
}

type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// fsvirt runs the binary with args and returns how it ended.
func fsvirt(t *testing.T, args ...string) result {
	t.Helper()
	return fsvirtIn(t, "", args...)
}

// fsvirtIn runs the binary with args in dir ("" for the test's own). A run that outlives
// runTimeout or that did not exit normally fails the test.
func fsvirtIn(t *testing.T, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fsvirtBin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("fsvirt %q: %v (ctx: %v)\nstdout:\n%s\nstderr:\n%s", args, err, ctx.Err(), r.stdout, r.stderr)
	}
	return r
}

// fixture is a virtualized tree and a store, both private to one test.
type fixture struct {
	tree  string // with motd holding motdContent
	store string
	motd  string
}

const motdContent = "welcome to the host\n"

func newFixture(t *testing.T) fixture {
	t.Helper()
	// Changes are reported by real path; resolve a symlinked $TMPDIR up front.
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{tree: filepath.Join(base, "tree"), store: filepath.Join(base, "store")}
	f.motd = filepath.Join(f.tree, "motd")
	for _, d := range []string{f.tree, f.store} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(f.motd, []byte(motdContent), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// run runs fsvirt run --tree f.tree --store f.store [flags] -- cmd..., then asserts that the
// store holds no private layer.
func (f fixture) run(t *testing.T, flags []string, cmd ...string) result {
	t.Helper()
	args := append([]string{"run", "--tree", f.tree, "--store", f.store}, flags...)
	r := fsvirt(t, append(append(args, "--"), cmd...)...)
	assertStoreEmpty(t, f.store)
	return r
}

// assertStoreEmpty checks that --store directory store holds nothing but the user's store root,
// which stays, and that this holds no store.
func assertStoreEmpty(t *testing.T, store string) {
	t.Helper()
	ents, err := os.ReadDir(store)
	if err != nil {
		t.Fatal(err)
	}
	user := userRoot(store)
	for _, e := range ents {
		if filepath.Join(store, e.Name()) != user || !e.IsDir() {
			t.Errorf("store %s: %s left behind", store, e.Name())
		}
	}
	ents, _ = os.ReadDir(user)
	for _, e := range ents {
		t.Errorf("store root %s: %s left behind", user, e.Name())
	}
}

// userRoot is where fsvirt keeps this user's stores under --store directory store.
func userRoot(store string) string {
	return filepath.Join(store, "fsvirt-"+strconv.Itoa(os.Geteuid()))
}

// assertFile checks that path holds exactly want.
func assertFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if string(got) != want {
		t.Errorf("%s holds %q, want %q", path, got, want)
	}
}

func assertNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: want it absent from the host, lstat says %v", path, err)
	}
}

func TestUsage(t *testing.T) {
	mainUsage := []string{"fsvirt run [flags] -- CMD", "fsvirt syscalls", "fsvirt features",
		"fsvirt run --help", "125", "126", "127"}
	// Each flag of run is documented on a line of its own.
	runFlags := []string{"Usage: fsvirt run", "\n  --tree PATH ", "\n  --store DIR ", "\n  --policy P ",
		"\n  --diff ", "\n  --keep DIR ", "\n  --json ", "125", "126", "127"}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"dash-dash-help", []string{"--help"}, mainUsage},
		{"dash-h", []string{"-h"}, mainUsage},
		{"help", []string{"help"}, mainUsage},
		{"run-dash-dash-help", []string{"run", "--help"}, runFlags},
		{"run-dash-h", []string{"run", "-h"}, runFlags},
		{"help-run", []string{"help", "run"}, runFlags},
		{"syscalls-help", []string{"syscalls", "--help"}, []string{"Usage: fsvirt syscalls [--json]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := fsvirt(t, tt.args...)
			if r.code != 0 {
				t.Errorf("exit status %d, want 0 (stderr %q)", r.code, r.stderr)
			}
			if r.stderr != "" {
				t.Errorf("stderr %q, want none: usage asked for goes to stdout", r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("usage lacks %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

// TestFailures covers the ways fsvirt itself fails: exit status 125, nothing on stdout, and one
// line on stderr that names what was wrong.
func TestFailures(t *testing.T) {
	f := newFixture(t)
	missing := filepath.Join(f.tree, "no-such-dir")
	tests := []struct {
		name string
		args []string
		want []string // substrings of the one stderr line, after "fsvirt: "
	}{
		{"unknown-flag", []string{"run", "--bogus", "--", "true"}, []string{"-bogus"}},
		{"unknown-flag-before-tree", []string{"run", "--bogus", "--tree", f.tree, "--", "true"}, []string{"-bogus"}},
		{"flag-missing-value", []string{"run", "--tree"}, []string{"-tree"}},
		{"no-command-after-dash-dash", []string{"run", "--tree", f.tree, "--store", f.store, "--"}, []string{"no command"}},
		{"no-command", []string{"run"}, []string{"no command"}},
		{"store-missing", []string{"run", "--tree", f.tree, "--store", "/nonexistent/dir", "--", "true"},
			[]string{"store", "/nonexistent/dir", "no such file or directory"}},
		{"store-is-regular-file", []string{"run", "--tree", f.tree, "--store", f.motd, "--", "true"},
			[]string{"store", f.motd, "not a directory"}},
		{"bad-policy", []string{"run", "--tree", f.tree, "--store", f.store, "--policy", "sloppy", "--", "true"},
			[]string{"--policy", `"sloppy"`}},
		{"tree-missing", []string{"run", "--tree", missing, "--store", f.store, "--", "true"},
			[]string{"tree", missing, "no such file or directory"}},
		{"tree-is-regular-file", []string{"run", "--tree", f.motd, "--store", f.store, "--", "true"},
			[]string{"tree", f.motd, "not a directory"}},
		{"bad-max-bytes", []string{"run", "--tree", f.tree, "--store", f.store, "--max-bytes", "12q", "--", "true"},
			[]string{"-max-bytes", `"12q"`}},
		{"zero-max-bytes", []string{"run", "--tree", f.tree, "--store", f.store, "--max-bytes", "0", "--", "true"},
			[]string{"-max-bytes", `"0"`}},
		{"bad-max-files", []string{"run", "--tree", f.tree, "--store", f.store, "--max-files", "-3", "--", "true"},
			[]string{"-max-files", `"-3"`}},
		{"unknown-subcommand", []string{"frobnicate"}, []string{`"frobnicate"`}},
		{"syscalls-unknown-flag", []string{"syscalls", "--bogus"}, []string{"syscalls", "-bogus"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fsvirt(t, tt.args...)
			if r.code != 125 {
				t.Errorf("exit status %d, want 125", r.code)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want none", r.stdout)
			}
			line, ok := strings.CutSuffix(r.stderr, "\n")
			if !ok || strings.Contains(line, "\n") || !strings.HasPrefix(line, "fsvirt: ") {
				t.Fatalf("stderr %q, want one line starting with %q", r.stderr, "fsvirt: ")
			}
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q does not mention %q", line, w)
				}
			}
			assertStoreEmpty(t, f.store)
		})
	}
	assertFile(t, f.motd, motdContent)
}

// TestRefusesKernelWithoutAddfd fakes a kernel before 5.9 (docs/kernel.md, "Injected descriptors")
// by turning the ADDFD probe off: fsvirt run must refuse before starting the command, with one line
// naming the kernel and what it lacks.
func TestRefusesKernelWithoutAddfd(t *testing.T) {
	f := newFixture(t)
	t.Setenv("FSVIRT_DISABLE", "addfd")
	marker := filepath.Join(t.TempDir(), "ran") // outside the tree: a write there would reach the host
	r := f.run(t, nil, "sh", "-c", "echo ran; echo ran > "+marker)
	if r.code != 125 || r.stdout != "" {
		t.Errorf("exit status %d, stdout %q; want 125 and nothing: the command must not run", r.code, r.stdout)
	}
	line, ok := strings.CutSuffix(r.stderr, "\n")
	if !ok || strings.Contains(line, "\n") || !strings.HasPrefix(line, "fsvirt: ") {
		t.Fatalf("stderr %q, want one line starting with %q", r.stderr, "fsvirt: ")
	}
	for _, w := range []string{notify.KernelRelease(), "SECCOMP_IOCTL_NOTIF_ADDFD", "Linux 5.9"} {
		if !strings.Contains(line, w) {
			t.Errorf("stderr %q does not mention %q", line, w)
		}
	}
	assertNotExist(t, marker)
}

func TestNoArgs(t *testing.T) {
	r := fsvirt(t)
	if r.code != 125 {
		t.Errorf("exit status %d, want 125", r.code)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want none: usage not asked for goes to stderr", r.stdout)
	}
	if !strings.Contains(r.stderr, "Usage:") {
		t.Errorf("stderr lacks the usage:\n%s", r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "fsvirt: no command given") {
		t.Errorf("last stderr line %q, want it to start with %q", last, "fsvirt: no command given")
	}
}
