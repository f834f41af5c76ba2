package main

// The scenario test (issue 4's acceptance): real programs run inside fsvirt run and, as the
// reference, on a private full copy of the same tree. Their exit status, their output and the tree
// they leave (listed from where they ran, so from inside the view under fsvirt) must agree, the
// shared tree must not change, and --diff and --keep must describe the view's changes.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A scenario is one script, testdata/scenarios/NAME.sh, run as "sh -e SCRIPT" in the root of a
// fresh copy of scenarioTree.
type scenario struct {
	name   string
	needs  []string // programs it runs beyond sh, coreutils and findutils
	short  bool     // part of the -short subset
	xattrs bool     // needs user xattrs in the file system under $TMPDIR
}

var scenarios = []scenario{
	{"ops", []string{"cmp"}, true, false},
	{"coreutils", []string{"diff", "sed"}, true, false},
	{"python", []string{"python3"}, true, false},
	{"find", nil, false, false},
	{"tar", []string{"tar", "gzip", "diff"}, false, false},
	{"git", []string{"git", "sed"}, false, false},
	{"make", []string{"make"}, false, false},
	{"xattr", []string{"getfattr", "setfattr", "sed"}, false, true}, // Debian: attr
}

// harnessNeeds are the programs the wrapper runs around every script. When getfattr is there too,
// the listing shows xattrs.
var harnessNeeds = []string{"env", "sh", "find", "sort", "sha256sum", "xargs"}

// scenarioTree is the shared tree, in the house notation: "dir PATH MODE", "file PATH MODE
// CONTENT" (a newline is appended; \n and \t in CONTENT stand for newline and tab) and
// "symlink PATH -> TARGET". Every entry's times are set to treeTime afterwards, and xattr.txt
// gets the xattr user.fsvirt=shared where the file system allows.
var scenarioTree = []string{
	"file README 644 the shared tree's readme",
	"file ro.txt 444 a read-only shared file",
	"file xattr.txt 644 carries an xattr",
	"dir docs 755",
	"file docs/a.txt 644 alpha",
	`file docs/b.txt 644 bravo\nsecond line of bravo`,
	"dir docs/sub 755",
	"file docs/sub/c.txt 644 charlie",
	"dir docs/sub/deep 755",
	"file docs/sub/deep/d.txt 600 delta",
	"symlink docs/link-up -> ../src",
	"dir src 755",
	"file src/hello.in 644 hello world",
	"file src/util.in 644 utility",
	"dir bin 755",
	`file bin/run.sh 755 #!/bin/sh\necho "run.sh: ${1:-no arguments}"`,
	"dir gone 755",
	"file gone/x 644 x",
	"file gone/y 644 y",
	"dir empty 755",
	"dir private 700",
	"file private/secret 600 secret",
	"symlink link-to-readme -> README",
	"symlink dangling -> no/such/file",
	"symlink abs-link -> /nonexistent/fsvirt/target",
	`file Makefile 644 all: out/all.txt\n` +
		`\nout/all.txt: out/hello.txt out/util.txt\n\tcat out/hello.txt out/util.txt > $@\n` +
		`\nout/%.txt: src/%.in | out\n\ttr a-z A-Z < $< > $@\n` +
		`\nout:\n\tmkdir -p out\n` +
		`\nclean:\n\trm -rf out\n` +
		`\n.PHONY: all clean`,
}

var treeTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// The scripts run with only this environment, the same on both sides.
var scenarioEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LC_ALL=C", "TZ=UTC", "HOME=/nonexistent",
	"PYTHONDONTWRITEBYTECODE=1", "PYTHONHASHSEED=0",
}

// treePlaceholder replaces the tree's absolute path in output, which differs between the sides.
const treePlaceholder = "$TREE"

// The wrapper's section markers in stdout.
const (
	markListing = "@@@ fsvirt-scenario listing"
	markHashes  = "@@@ fsvirt-scenario sha256"
	markXattrs  = "@@@ fsvirt-scenario xattrs"
)

// wrapper runs the script ($1) with its stderr on stdout, so error messages are compared too,
// then lists the tree as the script left it, from where the script ran, and exits with the
// script's status. Directories show no size or link count: those depend on the file system's
// layout, not on what the script did.
const wrapper = `umask 022
sh -e "$1" 2>&1
status=$?
echo '` + markListing + `'
find . -printf '%p\t' \( -type d -printf 'd %m %U:%G\n' -o -type f -printf 'f %m %U:%G %n %s\n' \
	-o -type l -printf 'l %m %U:%G %n -> %l\n' -o -printf '%y %m %U:%G %n\n' \) | sort
echo '` + markHashes + `'
find . -type f -exec sha256sum {} + | sort -k2
echo '` + markXattrs + `'
if command -v getfattr >/dev/null; then
	find . -print0 | sort -z | xargs -0 getfattr -h -d -m - --absolute-names
fi
exit $status
`

// scenarioArgv is the command both sides run, in the tree's root.
func scenarioArgv(script string) []string {
	argv := append([]string{"env", "-i"}, scenarioEnv...)
	return append(argv, "sh", "-c", wrapper, "sh", script)
}

// TestScenario runs every scenario inside fsvirt run and on a private full copy.
func TestScenario(t *testing.T) {
	requireEngine(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.skipUnlessRunnable(t)
			for _, p := range runScenario(t, sc, runReference(t, sc), fsvirtSystem{}) {
				t.Errorf("scenario %s: %s", sc.name, p)
			}
		})
	}
}

// TestScenarioHarness checks the harness itself, without fsvirt: a copy of one build of the tree
// agrees with a copy of another (so the scripts are deterministic), and planted faults are caught.
func TestScenarioHarness(t *testing.T) {
	systems := []struct {
		sut  system
		want string // a prefix of one of the problems; "" for none
	}{
		{copySystem{}, ""},
		{directSystem{}, "shared tree changed"},
		{plantedFileSystem{}, "tree differs"},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.skipUnlessRunnable(t)
			ref := runReference(t, sc)
			for _, s := range systems {
				problems := runScenario(t, sc, ref, s.sut)
				switch {
				case s.want == "" && len(problems) > 0:
					t.Errorf("%s vs copy: %d problems, want none:\n%s", s.sut, len(problems), strings.Join(problems, "\n"))
				case s.want != "" && !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, s.want) }):
					t.Errorf("%s vs copy: no problem starts with %q; got:\n%s", s.sut, s.want, strings.Join(problems, "\n"))
				case s.want != "":
					t.Logf("%s vs copy: caught, as it should be:\n%s", s.sut, strings.Join(problems, "\n"))
				}
			}
		})
	}
}

// TestScenarioTable: every script under testdata/scenarios is in the table, and the reverse.
func TestScenarioTable(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk, inTable []string
	for _, f := range files {
		onDisk = append(onDisk, strings.TrimSuffix(filepath.Base(f), ".sh"))
	}
	for _, sc := range scenarios {
		inTable = append(inTable, sc.name)
	}
	slices.Sort(inTable)
	if !slices.Equal(onDisk, inTable) {
		t.Errorf("scripts %q, table %q: they must name the same scenarios", onDisk, inTable)
	}
}

// TestScenarioDiffChecks: the --diff checks accept a faithful report and name each fault.
func TestScenarioDiffChecks(t *testing.T) {
	const shared = "/t/tree"
	file := func(content string) node { return node{core: "f 644 0:0 1 1 " + content} }
	dir := node{core: "d 755 0:0"}
	before := tree{".": dir, "./keep": file("k"), "./mod": file("old"), "./gone": dir, "./gone/f": file("g")}
	view := tree{".": dir, "./keep": file("k"), "./mod": file("new"), "./new": dir, "./new/f": file("n")}
	tests := []struct {
		name   string
		stderr string
		want   []string // a prefix of each problem, in order
	}{
		{"faithful", "D /t/tree/gone\nM /t/tree/mod\nA /t/tree/new\n", nil},
		{"faithful-each-path", "D /t/tree/gone\nD /t/tree/gone/f\nM /t/tree/mod\nA /t/tree/new\nA /t/tree/new/f\n", nil},
		{"not-a-diff-line", "D /t/tree/gone\nM /t/tree/mod\nA /t/tree/new\nwarning: x\n", []string{"stderr line 4"}},
		{"relative-path", "D /t/tree/gone\nM /t/tree/mod\nA /t/tree/new\nA t/tree/x\n", []string{"stderr line 4"}},
		{"outside-tree", "D /t/tree/gone\nM /t/tree/mod\nA /t/tree/new\nA /t/tree2\n", []string{"--diff line \"A /t/tree2\": path outside"}},
		{"unclean", "D /t/tree/gone\nM /t/tree/mod\nA /t/tree/new/../new\n", []string{"--diff line \"A /t/tree/new/../new\": path not clean", "--diff does not report 2"}},
		{"unsorted", "M /t/tree/mod\nD /t/tree/gone\nA /t/tree/new\n", []string{"--diff line \"D /t/tree/gone\": not after"}},
		{"twice", "D /t/tree/gone\nM /t/tree/mod\nM /t/tree/mod\nA /t/tree/new\n", []string{"--diff line \"M /t/tree/mod\": not after"}},
		{"added-but-shared", "D /t/tree/gone\nA /t/tree/keep\nM /t/tree/mod\nA /t/tree/new\n", []string{"--diff line A /t/tree/keep"}},
		{"deleted-but-there", "D /t/tree/gone\nM /t/tree/mod\nD /t/tree/new\n", []string{"--diff line D /t/tree/new"}},
		{"modified-but-new", "D /t/tree/gone\nM /t/tree/mod\nM /t/tree/new\n", []string{"--diff line M /t/tree/new", "--diff does not report 1"}},
		{"missing-modification", "D /t/tree/gone\nA /t/tree/new\n", []string{"--diff does not report 1"}},
		{"nothing", "", []string{"--diff does not report 5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changes, problems := parseChanges(tt.stderr, shared)
			problems = append(problems, checkChanges(changes, shared, before, view)...)
			ok := len(problems) == len(tt.want)
			for i := 0; ok && i < len(problems); i++ {
				ok = strings.HasPrefix(problems[i], tt.want[i])
			}
			if !ok {
				t.Errorf("problems:\n%s\nwant %d, starting with %q", strings.Join(problems, "\n"), len(tt.want), tt.want)
			}
		})
	}
}

// skipUnlessRunnable skips the scenario when this machine lacks a program it runs, or when -short
// leaves it out.
func (sc scenario) skipUnlessRunnable(t *testing.T) {
	t.Helper()
	if testing.Short() && !sc.short {
		t.Skip("not in the -short subset")
	}
	for _, p := range append(slices.Clone(harnessNeeds), sc.needs...) {
		if !inScenarioPath(p) {
			t.Skipf("%s is not installed (scripts/test.sh installs it)", p)
		}
	}
	if sc.xattrs && !userXattrs(t) {
		t.Skip("the file system under $TMPDIR does not support user xattrs")
	}
}

// inScenarioPath reports whether prog is an executable in the scenarios' PATH.
func inScenarioPath(prog string) bool {
	path, _ := strings.CutPrefix(scenarioEnv[0], "PATH=")
	for _, dir := range filepath.SplitList(path) {
		if unix.Access(filepath.Join(dir, prog), unix.X_OK) == nil {
			return true
		}
	}
	return false
}

func userXattrs(t *testing.T) bool {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return unix.Setxattr(p, "user.probe", []byte("x"), 0) == nil
}

// A system runs argv with its working directory in (its version of) the tree at shared.
type system interface {
	run(t *testing.T, shared string, argv []string) outcome
	String() string
}

type outcome struct {
	code   int
	stdout string // the tree's path replaced by treePlaceholder
	stderr string
	// Set by fsvirt only: stderr holds its --diff lines, keep the --keep directory.
	changes bool
	keep    string
}

// fsvirtSystem is the system under test: fsvirt run --diff --keep, cwd the shared tree.
type fsvirtSystem struct{}

func (fsvirtSystem) String() string { return "fsvirt" }

func (fsvirtSystem) run(t *testing.T, shared string, argv []string) outcome {
	t.Helper()
	base := t.TempDir()
	store, keep := filepath.Join(base, "store"), filepath.Join(base, "keep")
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "--tree", shared, "--store", store, "--keep", keep, "--diff", "--"}
	r := fsvirtIn(t, shared, append(args, argv...)...)
	assertStoreEmpty(t, store)
	return outcome{code: r.code, stdout: strings.ReplaceAll(r.stdout, shared, treePlaceholder),
		stderr: r.stderr, changes: true, keep: keep}
}

// copySystem is the reference: the kernel's own behaviour on a private full copy.
type copySystem struct{}

func (copySystem) String() string { return "copy" }

func (copySystem) run(t *testing.T, shared string, argv []string) outcome {
	t.Helper()
	dir := copyTree(t, shared)
	r := runIn(t, dir, argv)
	return outcome{code: r.code, stdout: strings.ReplaceAll(r.stdout, dir, treePlaceholder), stderr: r.stderr}
}

// directSystem is a planted fault: no isolation at all, the script changes the shared tree.
type directSystem struct{}

func (directSystem) String() string { return "direct (planted fault: no isolation)" }

func (directSystem) run(t *testing.T, shared string, argv []string) outcome {
	t.Helper()
	r := runIn(t, shared, argv)
	return outcome{code: r.code, stdout: strings.ReplaceAll(r.stdout, shared, treePlaceholder), stderr: r.stderr}
}

// plantedFileSystem is a planted fault: a private copy holding one file too many.
type plantedFileSystem struct{}

func (plantedFileSystem) String() string { return "copy+file (planted fault: a stray file)" }

func (plantedFileSystem) run(t *testing.T, shared string, argv []string) outcome {
	t.Helper()
	dir := copyTree(t, shared)
	if err := os.WriteFile(filepath.Join(dir, "docs", "stray"), []byte("planted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runIn(t, dir, argv)
	return outcome{code: r.code, stdout: strings.ReplaceAll(r.stdout, dir, treePlaceholder), stderr: r.stderr}
}

// A reference is how sc ran on a private full copy of scenarioTree.
type reference struct {
	code int
	out  string // the script's output, the tree's path replaced by treePlaceholder
	tree tree   // as the wrapper listed it
}

// runReference runs sc on a private full copy of a fresh scenarioTree. The tree is the same at
// every build (content, modes, times), so one reference serves any number of systems.
func runReference(t *testing.T, sc scenario) reference {
	t.Helper()
	r := copySystem{}.run(t, buildTree(t), scenarioArgv(scriptPath(t, sc)))
	if r.stderr != "" {
		t.Fatalf("[harness] the reference run wrote to stderr, which the wrapper should have redirected:\n%s", r.stderr)
	}
	out, tr, err := splitListing(r.stdout)
	if err != nil {
		t.Fatalf("[harness] reference run: %v", err)
	}
	return reference{code: r.code, out: out, tree: tr}
}

func scriptPath(t *testing.T, sc scenario) string {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "scenarios", sc.name+".sh"))
	if err != nil {
		t.Fatal(err)
	}
	return script
}

// runScenario runs sc with sut on a fresh shared tree and returns every way in which the run
// differs from ref or from what fsvirt promises.
func runScenario(t *testing.T, sc scenario, ref reference, sut system) []string {
	t.Helper()
	shared := buildTree(t)
	before := walkTree(t, shared)
	got := sut.run(t, shared, scenarioArgv(scriptPath(t, sc)))

	var problems []string
	if after := walkTree(t, shared); !after.equal(before, allFields) {
		problems = append(problems, fmt.Sprintf("shared tree changed (- before, + after):\n%s",
			lineDiff(before.lines(allFields), after.lines(allFields))))
	}
	if got.code != ref.code {
		problems = append(problems, fmt.Sprintf("exit status %d, reference %d", got.code, ref.code))
	}
	gotOut, gotTree, err := splitListing(got.stdout)
	if err != nil {
		problems = append(problems, fmt.Sprintf("%s's output: %v; whole output:\n%s", sut, err, got.stdout))
		return problems
	}
	if gotOut != ref.out {
		problems = append(problems, fmt.Sprintf("output differs (- reference, + %s):\n%s", sut,
			lineDiff(splitLines(ref.out), splitLines(gotOut))))
	}
	if !gotTree.equal(ref.tree, listedFields) {
		problems = append(problems, fmt.Sprintf("tree differs, as listed at the end of the script (- reference, + %s):\n%s",
			sut, lineDiff(ref.tree.lines(listedFields), gotTree.lines(listedFields))))
	}
	if !got.changes {
		if got.stderr != "" {
			problems = append(problems, fmt.Sprintf("stderr %q, want none", got.stderr))
		}
		return problems
	}
	changes, bad := parseChanges(got.stderr, shared)
	problems = append(problems, bad...)
	// The view's listing went through stdout, where the tree's path became treePlaceholder.
	problems = append(problems, checkChanges(changes, shared, before.placeholder(shared), gotTree)...)
	problems = append(problems, checkKeep(t, got.keep, shared, changes, gotTree)...)
	return problems
}

// buildTree makes scenarioTree under a fresh temporary directory and returns its real path.
func buildTree(t *testing.T) string {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "tree")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	unescape := strings.NewReplacer(`\n`, "\n", `\t`, "\t")
	for _, entry := range scenarioTree {
		kind, rest, _ := strings.Cut(entry, " ")
		name, rest, _ := strings.Cut(rest, " ")
		p := filepath.Join(root, name)
		switch kind {
		case "dir", "file":
			modeStr, content, _ := strings.Cut(rest, " ")
			mode, err := strconv.ParseUint(modeStr, 8, 32)
			if err != nil {
				t.Fatalf("[harness] %q: mode: %v", entry, err)
			}
			if kind == "dir" {
				err = os.Mkdir(p, 0o700)
			} else {
				err = os.WriteFile(p, []byte(unescape.Replace(content)+"\n"), 0o600)
			}
			if err == nil {
				err = os.Chmod(p, fs.FileMode(mode))
			}
			if err != nil {
				t.Fatal(err)
			}
		case "symlink":
			target, ok := strings.CutPrefix(rest, "-> ")
			if !ok {
				t.Fatalf("[harness] %q: want symlink PATH -> TARGET", entry)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("[harness] %q: unknown kind %q", entry, kind)
		}
	}
	// ENOTSUP where the file system has no user xattrs: the xattr scenario skips then.
	_ = unix.Setxattr(filepath.Join(root, "xattr.txt"), "user.fsvirt", []byte("shared"), 0)
	ts := []unix.Timespec{unix.NsecToTimespec(treeTime.UnixNano()), unix.NsecToTimespec(treeTime.UnixNano())}
	err = filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// copyTree makes a private full copy of the tree at src with cp -a and returns its path.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(base, "tree")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("[harness] cp -a: %v\n%s", err, out)
	}
	if s, d := walkTree(t, src), walkTree(t, dst); !d.equal(s, copiedFields) {
		t.Fatalf("[harness] cp -a made an unfaithful copy (- original, + copy):\n%s",
			lineDiff(s.lines(copiedFields), d.lines(copiedFields)))
	}
	return dst
}

// runIn runs argv in dir; a run that outlives runTimeout or does not exit normally fails the test.
func runIn(t *testing.T, dir string, argv []string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%q in %s: %v (ctx: %v)\nstdout:\n%s\nstderr:\n%s", argv, dir, err, ctx.Err(), r.stdout, r.stderr)
	}
	return r
}
