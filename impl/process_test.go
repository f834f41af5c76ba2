package impl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// TestMain lets the test binary serve as the command of process-mode tests: with FSVIRT_TEST_CASE
// set it runs that open case's operations on FSVIRT_TEST_ROOT and prints its record.
func TestMain(m *testing.M) {
	if os.Getenv("FSVIRT_TEST_CLOSE_EXEC") != "" && len(os.Args) > 1 {
		os.Exit(closeAndExec(os.Args[1:]))
	}
	if name := os.Getenv("FSVIRT_TEST_ATTACK"); name != "" {
		os.Exit(runAttack(name))
	}
	if root := os.Getenv("FSVIRT_TEST_LIVENESS"); root != "" {
		os.Exit(runLiveness(root))
	}
	if stuck := os.Getenv("FSVIRT_TEST_STUCK_LOOKUP"); stuck != "" {
		os.Exit(runStuckLookup(stuck, os.Getenv("FSVIRT_TEST_ROOT")))
	}
	if os.Getenv("FSVIRT_TEST_MEMFD_EXEC") != "" {
		os.Exit(execMemfd())
	}
	if os.Getenv("FSVIRT_TEST_LOCKS") != "" && len(os.Args) > 1 {
		os.Exit(tryLocks(os.Args[1]))
	}
	if os.Getenv("FSVIRT_TEST_OWN_PROC") != "" {
		os.Exit(readOwnProc())
	}
	if target := os.Getenv("FSVIRT_TEST_FORGED_PROXY"); target != "" {
		os.Exit(forgeProxy(target))
	}
	if who := os.Getenv("FSVIRT_TEST_NEW_OBJECTS"); who != "" {
		os.Exit(makeNewObjects(who, os.Args[1:]))
	}
	if who := os.Getenv("FSVIRT_TEST_IFLAGS"); who != "" && len(os.Args) > 1 {
		os.Exit(changeFlagged(who, os.Args[1]))
	}
	if script := os.Getenv("FSVIRT_TEST_SH_AS_CAPLESS_ROOT"); script != "" {
		// A shell as root without any capability.
		if err := dropCapabilities(); err != nil {
			fmt.Fprintln(os.Stderr, "drop capabilities:", err)
			os.Exit(2)
		}
		argv := append([]string{"sh", "-c", script, "sh"}, os.Args[1:]...)
		fmt.Fprintln(os.Stderr, syscall.Exec("/bin/sh", argv, os.Environ()))
		os.Exit(2)
	}
	if script := os.Getenv("FSVIRT_TEST_SH_AS_NOBODY"); script != "" {
		// A shell as nobody, for tests that compare an unprivileged caller in the view with the
		// kernel (setpriv is not everywhere: the kernel matrix's VMs have busybox).
		if err := dropTo(65534); err != nil {
			fmt.Fprintln(os.Stderr, "drop privileges:", err)
			os.Exit(2)
		}
		argv := append([]string{"sh", "-c", script, "sh"}, os.Args[1:]...)
		fmt.Fprintln(os.Stderr, syscall.Exec("/bin/sh", argv, os.Environ()))
		os.Exit(2)
	}
	if name := os.Getenv("FSVIRT_TEST_CASE"); name != "" {
		for _, c := range slices.Concat(openCases, removedCases, partialCases, followCases, fdObjectCases) {
			if c.name == name {
				r := &rec{root: os.Getenv("FSVIRT_TEST_ROOT")}
				c.ops(r)
				fmt.Print(r.b.String())
				os.Exit(0)
			}
		}
		fmt.Fprintf(os.Stderr, "no open case %q\n", name)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// runCmd runs argv in process mode with the tree virtualized and returns its stdout and result.
func runCmd(t *testing.T, tree string, env []string, argv ...string) (string, *Result) {
	t.Helper()
	return runPolicyCmd(t, tree, PolicyFast, env, argv...)
}

// runPolicyCmd is runCmd with the given policy.
func runPolicyCmd(t *testing.T, tree string, policy Policy, env []string, argv ...string) (string, *Result) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	storeRoot := t.TempDir()
	res, err := Run(context.Background(), RunConfig{Trees: []string{tree}, Store: storeRoot, Policy: policy,
		Path: argv[0], Args: argv, Env: append(os.Environ(), env...), Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	if left := storeEntries(t, storeRoot); len(left) != 0 {
		t.Errorf("store not empty after Run: %v", left)
	}
	b, _ := os.ReadFile(out.Name())
	return string(b), res
}

func TestProcessOpenDifferential(t *testing.T) {
	for _, c := range openCases {
		t.Run(c.name, func(t *testing.T) { runProcessCase(t, c) })
	}
}

// runProcessCase runs c's operations in this test binary under Run, and on a private copy.
func runProcessCase(t *testing.T, c openCase) { runProcessCasePolicy(t, c, PolicyFast) }

// runProcessCasePolicy is runProcessCase under policy.
func runProcessCasePolicy(t *testing.T, c openCase, policy Policy) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shared, want, before := referenceRun(t, c)
	got, res := runPolicyCmd(t, shared, policy, []string{"FSVIRT_TEST_CASE=" + c.name, "FSVIRT_TEST_ROOT=" + shared}, self)
	if res.ExitStatus != 0 {
		t.Fatalf("helper exited %d", res.ExitStatus)
	}
	if got != want.b.String() {
		t.Errorf("view and private copy differ\nview:\n%s\ncopy:\n%s", got, want.b.String())
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}

func TestProcessShell(t *testing.T) {
	for _, c := range []struct {
		name    string
		script  string
		stdout  string
		status  int
		changes string
	}{
		{"append", `echo changed >> f; cat f`, "shared\nchanged\n", 0, "M f"},
		{"truncate", `: > f; wc -c < f`, "0\n", 0, "M f"},
		{"create", `echo new > n; cat n`, "new\n", 0, "A n"},
		{"create-exclusive", `set -C; echo x > f 2>/dev/null || echo refused`, "refused\n", 0, ""},
		{"read-only", `cat f`, "shared\n", 0, ""},
		{"exit-status", `exit 3`, "", 3, ""},
		{"killed-by-signal", `kill -9 $$`, "", 137, ""},
		{"background-child-keeps-view", `(sleep 0.3; echo late > bg) & echo early`, "early\n", 0, "A bg"},
		{"children-share-view", `echo one > f; sh -c 'cat f'`, "one\n", 0, "M f"},
		// A hard link of a shared file is the same file under both names, copied or not; the
		// original has a link more (M).
		{"link-keeps-identity", `i=$(stat -c %i f); ln f g; [ "$i" = "$(stat -c %i g)" ] && [ "$i" = "$(stat -c %i f)" ] && echo same`, "same\n", 0, "M f,A g"},
		{"link-write-through-new-name", `ln f g; echo more >> g; cat f; [ "$(stat -c %i f)" = "$(stat -c %i g)" ] && stat -c %h f`,
			"shared\nmore\n2\n", 0, "M f,A g"},
		{"link-write-through-old-name", `ln f g; ln g h; echo more >> f; cat g h; stat -c %h h`,
			"shared\nmore\nshared\nmore\n3\n", 0, "M f,A g,A h"},
		{"link-then-remove-original", `ln f g; rm f; echo more >> g; cat g`, "shared\nmore\n", 0, "D f,A g"},
	} {
		t.Run(c.name, func(t *testing.T) {
			shared := t.TempDir()
			treetest.Build(t, shared, "file f shared\n")
			before := treetest.Snap(t, shared)
			out, res := runCmd(t, shared, nil, "/bin/sh", "-c", "cd "+shared+" && "+c.script)
			if out != c.stdout || res.ExitStatus != c.status {
				t.Errorf("stdout %q, status %d; want %q, %d", out, res.ExitStatus, c.stdout, c.status)
			}
			var changes []string
			for _, ch := range res.Changes {
				changes = append(changes, string(ch.Kind)+" "+strings.TrimPrefix(ch.Path, shared+"/"))
			}
			if got := strings.Join(changes, ","); got != c.changes {
				t.Errorf("changes %q, want %q", got, c.changes)
			}
			if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}

func TestProcessConcurrentIsolated(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared")
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			mine := fmt.Sprintf("run-%d", i)
			out, res := runCmd(t, shared, nil, "/bin/sh", "-c", fmt.Sprintf("echo %s > %s/f; sleep 0.1; cat %s/f", mine, shared, shared))
			if res.ExitStatus != 0 || out != mine+"\n" {
				t.Errorf("run %d read %q (status %d)", i, out, res.ExitStatus)
			}
		}(i)
	}
	wg.Wait()
	if b, _ := os.ReadFile(shared + "/f"); !bytes.Equal(b, []byte("shared")) {
		t.Errorf("shared file changed to %q", b)
	}
}

// TestProcessEveryCallAnswered: an exec of a program in the view, and an open, with a full
// descriptor table cannot get their descriptor injected; they fail with EMFILE instead of waiting
// for an answer for ever.
func TestProcessEveryCallAnswered(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared\n")
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	script := "cd " + shared + " && cp /bin/true tru && (ulimit -n 3; exec ./tru) 2>/dev/null; echo exec=$?; (ulimit -n 3; echo x > g) 2>/dev/null; echo open=$?"
	res, err := Run(ctx, RunConfig{Trees: []string{shared}, Store: t.TempDir(), Path: "/bin/sh", Args: []string{"/bin/sh", "-c", script}, Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("a call with a full descriptor table got no answer: the command was killed after 20 s")
	}
	b, _ := os.ReadFile(out.Name())
	if got := string(b); got != "exec=126\nopen=2\n" || res.ExitStatus != 0 {
		t.Errorf("stdout %q, status %d; want exec (126) and open (2) to fail at once", got, res.ExitStatus)
	}
}

// TestProcessChangesOnlyTheCommands: --diff, --json and Changes report what the command changed,
// not what the host changed meanwhile in a directory the command changed too.
func TestProcessChangesOnlyTheCommands(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "dir d", "file d/x x", "file d/y y")
	go func() {
		time.Sleep(300 * time.Millisecond)
		os.WriteFile(filepath.Join(shared, "d", "host-made"), []byte("h"), 0o644)
	}()
	// The host's file comes after the command's rm in most runs (when it comes before, the view
	// shows it, and it is not a change either).
	_, res := runCmd(t, shared, nil, "/bin/sh", "-c", "cd "+shared+" && rm d/x && sleep 1")
	if res.ExitStatus != 0 {
		t.Fatalf("status %d", res.ExitStatus)
	}
	var got []string
	for _, c := range res.Changes {
		got = append(got, string(c.Kind)+" "+strings.TrimPrefix(c.Path, shared+"/"))
	}
	if strings.Join(got, ",") != "D d/x" {
		t.Errorf("changes %q, want just the command's own: D d/x", got)
	}
}
