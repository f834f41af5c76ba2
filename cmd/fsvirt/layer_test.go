package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// The three runs of the layer tests, each building on the last; a run prints the tree with
// contentList.
var layerRuns = []string{
	`echo one >> motd; mkdir d; echo 1 > d/one; echo x > gone`,
	`echo two >> motd; echo 2 > d/two; rm gone; chmod 600 d/one; ln -s d/one link`,
	`echo three >> motd; rm d/one; mv d/two d/deux; mkdir -p e/f && echo deep > e/f/g`,
}

// listEnv names the directory that the test binary, started with it, lists (contentList) and exits:
// the listing inside a view, where the kernel matrix's busybox find has no -printf.
const listEnv = "FSVIRT_TEST_LIST"

// listing is a shell command that prints contentList of the working directory.
func listing() string {
	bin, _ := filepath.Abs(os.Args[0])
	return listEnv + "=. exec " + bin
}

// contentList lists dir at treetest.Data (no times: the reference runs at another moment), one
// path a line, sorted.
func contentList(dir string) (string, error) {
	s, err := treetest.Walk(dir)
	return strings.Join(s.Lines(treetest.Data), "\n") + "\n", err
}

func mustList(t *testing.T, dir string) string {
	t.Helper()
	l, err := contentList(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// inTree runs a shell script in dir, outside fsvirt.
func inTree(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", script, err, out)
	}
	return string(out)
}

// TestLayerAccumulates: three runs on one named layer see each other's changes as the same
// three scripts run one after the other on a private copy of the tree; --diff after the third
// reports all of them; the tree is untouched until fsvirt apply writes the layer into it, after
// which it is the copy.
func TestLayerAccumulates(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	ref := filepath.Join(t.TempDir(), "ref")
	treetest.Copy(t, f.tree, ref)
	l := filepath.Join(t.TempDir(), "layer")
	before := treetest.Snap(t, f.tree)
	var r result
	for i, s := range layerRuns {
		inTree(t, ref, s)
		flags := []string{"--layer", l}
		if i == len(layerRuns)-1 {
			flags = append(flags, "--diff")
		}
		r = f.run(t, flags, "sh", "-c", "cd "+f.tree+" && "+s+" && "+listing())
		if r.code != 0 {
			t.Fatalf("run %d: exit status %d: %s", i+1, r.code, r.stderr)
		}
		if want := mustList(t, ref); r.stdout != want {
			t.Fatalf("run %d sees:\n%s\nthe copy after the same scripts:\n%s", i+1, r.stdout, want)
		}
	}
	var want []string
	for _, c := range []string{"A d", "A d/deux", "A e", "A e/f", "A e/f/g", "A link", "M motd"} {
		kind, p, _ := strings.Cut(c, " ")
		want = append(want, kind+" "+filepath.Join(f.tree, p))
	}
	if got := strings.TrimSuffix(r.stderr, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("--diff after the third run:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if d := before.Diff(treetest.Snap(t, f.tree), treetest.Exact); d != nil {
		t.Fatalf("the runs changed the tree: %q", d)
	}
	if r := fsvirt(t, "apply", "--dry-run", l); r.code != 0 || r.stdout != strings.Join(want, "\n")+"\n" {
		t.Errorf("apply --dry-run: %d, stdout:\n%s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := fsvirt(t, "apply", l); r.code != 0 {
		t.Fatalf("apply: exit status %d: %s", r.code, r.stderr)
	}
	if got, want := mustList(t, f.tree), mustList(t, ref); got != want {
		t.Errorf("the tree after apply:\n%s\nthe copy:\n%s", got, want)
	}
}

// TestLayerLocked: a second run on a layer that a run holds is refused at once, naming the
// layer, and runs nothing; the first run's changes are saved.
func TestLayerLocked(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	l := filepath.Join(t.TempDir(), "layer")
	sig := t.TempDir()
	ready, gate := filepath.Join(sig, "ready"), filepath.Join(sig, "gate")
	first := exec.Command(fsvirtBin, "run", "--tree", f.tree, "--store", f.store, "--layer", l, "--", "sh", "-c",
		fmt.Sprintf("echo first > %s/first; touch %s; while [ ! -e %s ]; do sleep 0.01; done", f.tree, ready, gate))
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	for i := 0; ; i++ {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if i == 3000 {
			t.Fatal("the first run did not start within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := fsvirt(t, "run", "--tree", f.tree, "--store", f.store, "--layer", l, "--", "sh", "-c", "echo second > "+f.tree+"/second")
	if r.code != 125 || !strings.Contains(r.stderr, "layer "+l+" is in use by another fsvirt run") {
		t.Errorf("second run: exit status %d, stderr %q; want 125 and the layer in use", r.code, r.stderr)
	}
	os.WriteFile(gate, nil, 0o644)
	if err := first.Wait(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l, f.tree, "first")); err != nil {
		t.Errorf("the first run's change is not in the layer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l, f.tree, "second")); err == nil {
		t.Error("the refused run's change is in the layer")
	}
}

// TestLayerBadArguments: what --layer refuses, before the command runs.
func TestLayerBadArguments(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	notLayer := t.TempDir()
	os.WriteFile(filepath.Join(notLayer, "x"), nil, 0o644)
	marker := filepath.Join(t.TempDir(), "ran")
	// A layer made over another tree: loading it in a view of f.tree would write to the host.
	other := t.TempDir()
	otherTrees := filepath.Join(t.TempDir(), "layer")
	if r := fsvirt(t, "run", "--tree", other, "--store", f.store, "--layer", otherTrees, "--", "sh", "-c", "echo x > "+other+"/x"); r.code != 0 {
		t.Fatalf("run over the other tree: %d %s", r.code, r.stderr)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"not-a-layer", []string{"--layer", notLayer}, "not a layer fsvirt kept"},
		{"with-keep", []string{"--layer", t.TempDir(), "--keep", t.TempDir()}, "--keep and --layer together"},
		{"other-trees", []string{"--layer", otherTrees}, "outside this run's trees"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.run(t, tc.flags, "touch", marker)
			if r.code != 125 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit status %d, stderr %q; want 125 and %q", r.code, r.stderr, tc.want)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the command ran")
			}
		})
	}
}

// TestLayerSaveKilled: fsvirt killed (SIGKILL) at a random moment while it saves a layer leaves
// the layer as it was before the run or as the run left it, whole; the next run works from it.
func TestLayerSaveKilled(t *testing.T) {
	requireEngine(t)
	rounds := 5
	if testing.Short() {
		rounds = 2
	}
	f := newFixture(t)
	l := filepath.Join(t.TempDir(), "layer")
	// The layer before: 50 files of the first run.
	if r := f.run(t, []string{"--layer", l}, "sh", "-c", "cd "+f.tree+" && for i in $(seq 50); do echo old $i > f$i; done"); r.code != 0 {
		t.Fatalf("first run: %d %s", r.code, r.stderr)
	}
	old := mustList(t, l)
	pristine := filepath.Join(t.TempDir(), "layer")
	treetest.Copy(t, l, pristine)
	sig := t.TempDir()
	// The second run rewrites them all, adds 50 more and removes motd.
	script := "cd " + f.tree + " && for i in $(seq 100); do echo new $i > f$i; done && rm motd && touch " + filepath.Join(sig, "done")
	// What the layer is when the second run completes, from a copy.
	ref := filepath.Join(t.TempDir(), "layer")
	treetest.Copy(t, l, ref)
	start := time.Now()
	if r := f.run(t, []string{"--layer", ref}, "sh", "-c", script); r.code != 0 {
		t.Fatalf("reference run: %d %s", r.code, r.stderr)
	}
	whole := time.Since(start)
	newListing := mustList(t, ref)
	kept, saved := 0, 0
	for i := range rounds {
		os.Remove(filepath.Join(sig, "done"))
		cmd := exec.Command(fsvirtBin, "run", "--tree", f.tree, "--store", f.store, "--layer", l, "--", "sh", "-c", script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for j := 0; ; j++ { // the command is done: fsvirt saves from here on
			if _, err := os.Stat(filepath.Join(sig, "done")); err == nil {
				break
			}
			if j == 3000 {
				cmd.Process.Kill()
				t.Fatal("the run did not finish its command within 30 s")
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(rand.Int64N(int64(whole/2 + time.Millisecond))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		switch got := mustList(t, l); got {
		case old:
			kept++
		case newListing:
			saved++
			// Back to the old layer for the next round.
			os.RemoveAll(l)
			treetest.Copy(t, pristine, l)
		default:
			t.Fatalf("round %d: the layer is neither the old one nor the new one:\n%s", i, got)
		}
	}
	// The store of a killed run is swept by the next one; the layer works.
	if r := f.run(t, []string{"--layer", l, "--diff"}, "true"); r.code != 0 || !strings.Contains(r.stderr, "A "+filepath.Join(f.tree, "f1")+"\n") {
		t.Errorf("a run after the kills: %d, stderr %q", r.code, r.stderr)
	}
	t.Logf("a whole run %v; %d kills left the old layer, %d the new one", whole, kept, saved)
}

// TestRunApply: run --apply writes the command's changes into the tree after it exited 0; not
// after a failure; and refuses, naming the file, when the tree changed meanwhile.
func TestRunApply(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	if r := f.run(t, []string{"--apply"}, "sh", "-c", f.changeScript()+"; exit 3"); r.code != 3 {
		t.Errorf("exit status %d, want 3", r.code)
	}
	assertFile(t, f.motd, motdContent)
	assertNotExist(t, filepath.Join(f.tree, "new"))
	if r := f.run(t, []string{"--apply"}, "sh", "-c", f.changeScript()); r.code != 0 {
		t.Errorf("exit status %d, want 0: %s", r.code, r.stderr)
	}
	assertFile(t, f.motd, motdContent+"changed\n")
	assertFile(t, filepath.Join(f.tree, "new"), "new\n")
	// The tree changes after a layer copied motd: --apply is refused.
	l := filepath.Join(t.TempDir(), "layer")
	if r := f.run(t, []string{"--layer", l}, "sh", "-c", "echo layer >> "+f.motd); r.code != 0 {
		t.Fatalf("exit status %d: %s", r.code, r.stderr)
	}
	os.WriteFile(f.motd, []byte("host again\n"), 0o644)
	r := f.run(t, []string{"--layer", l, "--apply", "--json"}, "true")
	if r.code != 125 || !strings.Contains(r.stderr, f.motd+": changed in the tree since the view copied it") {
		t.Errorf("--apply over a changed file: exit status %d, stderr %q", r.code, r.stderr)
	}
	line := r.stderr[strings.LastIndex(r.stderr, "\n{")+1:]
	line = line[:strings.Index(line, "\n")]
	validLine(t, runSchema(t), line)
	var s jsonSummary
	if err := jsonDecode(line, &s); err != nil {
		t.Fatal(err)
	}
	if s.Outcome != "failed" || s.Apply == nil || s.Apply.Applied || len(s.Apply.Conflicts) != 1 || s.Apply.Conflicts[0].Path != f.motd || s.Layer != l {
		t.Errorf("--json of a refused --apply: %s", line)
	}
	assertFile(t, f.motd, "host again\n")
}

// TestApplyUsage: apply's refusals name what was wrong.
func TestApplyUsage(t *testing.T) {
	notLayer := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"apply"}, "want one LAYER directory"},
		{[]string{"apply", "a", "b"}, "want one LAYER directory, got 2"},
		{[]string{"apply", "--bogus", notLayer}, "flag provided but not defined: -bogus"},
		{[]string{"apply", notLayer}, "not a layer fsvirt kept"},
		{[]string{"apply", "--root", "/nonexistent", notLayer}, "not a layer fsvirt kept"},
	} {
		r := fsvirt(t, tc.args...)
		if r.code != 125 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("fsvirt %q: exit status %d, stderr %q; want 125 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if r := fsvirt(t, "apply", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Usage: fsvirt apply") {
		t.Errorf("apply --help: %d %q", r.code, r.stdout)
	}
}
