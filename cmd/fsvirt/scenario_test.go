package main

// The scenario test (issues 4 and 18): real programs run inside fsvirt run and, as the reference,
// on a private full copy of the same tree. Their exit status, their output and the tree they leave
// (listed from where they ran, so from inside the view under fsvirt) must agree, the shared tree
// must not change, and --diff and --keep must describe the view's changes. Every script runs as
// root and as nobody (the supervisor stays root: setpriv drops the script's credentials inside the
// view), and under both policies.

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

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// A scenario is one script, testdata/scenarios/NAME.sh, run as "sh -e SCRIPT" in the root of a
// fresh copy of scenarioTree. A script runs to its end as either user: a command that may be
// refused runs under its fails function, which prints the error and goes on.
type scenario struct {
	name string
	// needs are the programs it runs beyond sh, coreutils and findutils; "PROG ARGS..." is also
	// a command that must succeed, for an option that not every version of PROG has.
	needs  []string
	short  bool // part of the -short subset: see runs
	xattrs bool // needs user xattrs in the file system under $TMPDIR
	// setup, when set, is a shell script run as root with scenarioEnv in the shared tree's root
	// after scenarioTree is made, before the times are set: what the scenario needs in the shared
	// tree beyond scenarioTree. It must make the same tree at every run.
	setup string
}

var scenarios = []scenario{
	{name: "ops", needs: []string{"cmp"}, short: true},
	{name: "coreutils", needs: []string{"diff", "sed"}, short: true},
	{name: "perms", needs: []string{"mknod"}, short: true},
	{name: "shell", short: true},
	{name: "chains", needs: []string{"timeout", "xargs", "nohup", "setsid -f -w true", "sleep"}, short: true},
	{name: "python", needs: []string{"python3"}, short: true},
	{name: "find"},
	{name: "tar", needs: []string{"tar", "gzip", "diff"}},
	{name: "tar-many", needs: []string{"tar", "gzip", "diff", "wc"}, setup: manyFiles},
	{name: "sed", needs: []string{"sed"}},
	{name: "git", needs: []string{"git", "sed"}},
	{name: "git-clone", needs: []string{"git"}, setup: gitRepos},
	{name: "make", needs: []string{"make"}},
	{name: "make-view", needs: []string{"gcc", "make"}},
	{name: "compile", needs: []string{"gcc", "ar", "cmp"}},
	{name: "venv", needs: []string{"python3", "grep", "sed"}},
	{name: "xattr", needs: []string{"getfattr", "setfattr", "sed"}, xattrs: true}, // Debian: attr
}

// manyFiles is tar-many's setup: many/d0 to many/d9, 30 files each; d9 is root's, the rest
// nobody's.
const manyFiles = `for d in 0 1 2 3 4 5 6 7 8 9; do
	mkdir -p many/d$d
	for f in $(seq 1 30); do echo "file $f of d$d" > many/d$d/f$f.txt; done
done
ln -s d0/f1.txt many/link
chown -hR 65534:65534 many
chown -R 0:0 many/d9
`

// gitRepos is git-clone's setup: repo.git, a bare repository of two commits that nobody owns,
// and root.git, root's copy of it. Fixed identity and dates make the same objects at every build.
const gitRepos = `export HOME=/nonexistent GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME='Scenario Test' GIT_AUTHOR_EMAIL='scenario@example.com'
export GIT_COMMITTER_NAME='Scenario Test' GIT_COMMITTER_EMAIL='scenario@example.com'
export GIT_AUTHOR_DATE='2020-01-02T03:04:05Z' GIT_COMMITTER_DATE='2020-01-02T03:04:05Z'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git init -q --bare -b main repo.git
export GIT_DIR="$PWD/repo.git" GIT_WORK_TREE="$work" GIT_INDEX_FILE="$work/.index"
echo "the shared repository's readme" > "$work/README"
git add README
git commit -q -m 'first: README'
mkdir "$work/src"
printf '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n' > "$work/src/hello.c"
git add src
git commit -q -m 'second: hello.c'
cp -a repo.git root.git
chown -R 65534:65534 repo.git
`

// harnessNeeds are the programs the wrapper runs around every script. When getfattr is there too,
// the listing shows xattrs.
var harnessNeeds = []string{"env", "sh", "find", "sort", "sha256sum", "xargs"}

// scenarioTree is the shared tree, in the tree notation of package fsvirt (tree.go), built as
// root: an entry without an owner is root's, 65534:65534 is nobody's (Debian's nobody and
// nogroup). Most of the tree is nobody's, the root included (buildTree), so that a script run as
// nobody can do its work; what is root's, nobody may read but not change (ro.txt, src/util.in,
// docs/sub, bin), or not even read (private, docs/sub/deep/d.txt), and sticky holds a file of
// each. buildTree adds abs-link, a symlink to /nonexistent/fsvirt/target, which the notation
// leaves out. Every entry's times are set to treeTime afterwards, and xattr.txt gets the xattr
// user.fsvirt=shared where the file system allows.
var scenarioTree = []string{
	"file 0644 65534:65534 README the shared tree's readme\n",
	"file 0444 ro.txt a read-only shared file\n",
	"file 0644 65534:65534 xattr.txt carries an xattr\n",
	"dir 0755 65534:65534 docs",
	"file 0644 65534:65534 docs/a.txt alpha\n",
	"file 0644 65534:65534 docs/b.txt bravo\nsecond line of bravo\n",
	"dir 0755 docs/sub",
	"file 0644 docs/sub/c.txt charlie\n",
	"dir 0755 docs/sub/deep",
	"file 0600 docs/sub/deep/d.txt delta\n",
	"symlink 65534:65534 docs/link-up -> ../src",
	"dir 0755 65534:65534 src",
	"file 0644 65534:65534 src/hello.in hello world\n",
	"file 0644 src/util.in utility\n",
	"dir 0755 bin",
	"file 0755 bin/run.sh #!/bin/sh\necho \"run.sh: ${1:-no arguments}\"\n",
	"dir 0755 65534:65534 gone",
	"file 0644 65534:65534 gone/x x\n",
	"file 0644 gone/y y\n",
	"dir 0755 65534:65534 empty",
	"dir 0700 private",
	"file 0600 private/secret secret\n",
	"dir 1777 sticky",
	"file 0644 65534:65534 sticky/nobodys nobody's file in a sticky directory\n",
	"file 0666 sticky/roots root's file in a sticky directory, writable by everyone\n",
	"symlink 65534:65534 link-to-readme -> README",
	"symlink 65534:65534 dangling -> no/such/file",
	"file 0644 65534:65534 Makefile all: out/all.txt\n" +
		"\n" +
		"out/all.txt: out/hello.txt out/util.txt\n" +
		"\tcat out/hello.txt out/util.txt > $@\n" +
		"\n" +
		"out/%.txt: src/%.in | out\n" +
		"\ttr a-z A-Z < $< > $@\n" +
		"\n" +
		"out:\n" +
		"\tmkdir -p out\n" +
		"\n" +
		"clean:\n" +
		"\trm -rf out\n" +
		"\n" +
		".PHONY: all clean\n",
}

// nobodyID is nobody's user and group ID (Debian's nobody and nogroup).
const nobodyID = 65534

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

// wrapper runs the script ($1) with its stderr on stdout, so error messages are compared too, as
// the user that the rest of its arguments switch to (none: as itself); then, as itself, lists
// the tree as the script left it, from where the script ran, and exits with the script's status.
// Directories show no size or link count: those depend on the file system's layout, not on what
// the script did.
const wrapper = `script=$1
shift
umask 022
"$@" sh -e "$script" 2>&1
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

// A user is who runs a scenario's script: the harness itself (root: see skipUnlessRunnable) or
// nobody.
type user struct {
	name string
	// switchTo is the command prefix that drops to this user; nil for the harness's own.
	switchTo []string
}

var users = []user{
	{"root", nil},
	// The command drops its credentials itself, inside the view: fsvirt's supervisor stays root.
	{"nobody", []string{"setpriv", "--reuid=" + strconv.Itoa(nobodyID), "--regid=" + strconv.Itoa(nobodyID), "--clear-groups"}},
}

// policies are fsvirt run's --policy values; every scenario runs under each.
var policies = []string{"fast", "strict"}

// scenarioArgv is the command both sides run, in the tree's root.
func scenarioArgv(script string, u user) []string {
	argv := append([]string{"env", "-i"}, scenarioEnv...)
	return append(append(argv, "sh", "-c", wrapper, "sh", script), u.switchTo...)
}

// skipUnlessAvailable skips when the harness cannot run a script as u: switching to nobody needs
// setpriv from util-linux (busybox's has no --reuid).
func (u user) skipUnlessAvailable(t *testing.T) {
	t.Helper()
	if u.switchTo == nil {
		return
	}
	if out, err := exec.Command(u.switchTo[0], append(u.switchTo[1:], "true")...).CombinedOutput(); err != nil {
		t.Skipf("%q: %v %s (setpriv is util-linux's)", u.switchTo, err, out)
	}
}

// runs reports whether sc runs as u under policy. Under -short, the scenarios marked short run as
// root under the fast policy (also in the kernel matrix's VMs, where switching to nobody is not
// possible), and as nobody under both policies.
func (sc scenario) runs(u user, policy string) bool {
	if !testing.Short() {
		return true
	}
	return sc.short && (u.switchTo != nil || policy == "fast")
}

// TestScenario runs every scenario inside fsvirt run and on a private full copy, as each user and
// under each policy: subtests NAME/USER/POLICY.
func TestScenario(t *testing.T) {
	requireEngine(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.skipUnlessRunnable(t)
			for _, u := range users {
				t.Run(u.name, func(t *testing.T) {
					t.Parallel()
					u.skipUnlessAvailable(t)
					script := reachableScript(t, sc)
					ref := runReference(t, sc, u, script)
					for _, pol := range policies {
						t.Run(pol, func(t *testing.T) {
							t.Parallel()
							if !sc.runs(u, pol) {
								t.Skipf("-short runs %s as %s under the fast policy only", sc.name, u.name)
							}
							for _, p := range runScenario(t, sc, u, script, ref, fsvirtSystem{policy: pol}) {
								t.Errorf("scenario %s as %s, --policy %s: %s", sc.name, u.name, pol, p)
							}
						})
					}
				})
			}
		})
	}
}

// TestScenarioHarness checks the harness itself, without fsvirt: a copy of one build of the tree
// agrees with a copy of another (so the scripts are deterministic), as each user, and planted
// faults are caught.
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
			for _, u := range users {
				t.Run(u.name, func(t *testing.T) {
					u.skipUnlessAvailable(t)
					script := reachableScript(t, sc)
					ref := runReference(t, sc, u, script)
					for _, s := range systems {
						problems := runScenario(t, sc, u, script, ref, s.sut)
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
	slices.Sort(onDisk) // "git-clone.sh" sorts before "git.sh", "git-clone" after "git"
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

// skipUnlessRunnable skips the scenario when this machine lacks a program it runs, when -short
// leaves it out, or when the harness does not run as root, which making scenarioTree needs.
func (sc scenario) skipUnlessRunnable(t *testing.T) {
	t.Helper()
	if testing.Short() && !sc.short {
		t.Skip("not in the -short subset")
	}
	if os.Geteuid() != 0 {
		t.Skip("the scenario tree holds root's and nobody's files: making it needs root")
	}
	for _, p := range append(slices.Clone(harnessNeeds), sc.needs...) {
		prog, _, probe := strings.Cut(p, " ")
		if !inScenarioPath(prog) {
			t.Skipf("%s is not installed (scripts/test.sh installs it)", prog)
		}
		if probe {
			argv := append(append([]string{"env", "-i"}, scenarioEnv...), "sh", "-c", p)
			if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
				t.Skipf("%q: %v %s (this %s is not the one scripts/test.sh installs)", p, err, out, prog)
			}
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

// fsvirtSystem is the system under test: fsvirt run --policy P --diff --keep, cwd the shared
// tree.
type fsvirtSystem struct {
	policy string
}

func (s fsvirtSystem) String() string { return "fsvirt --policy " + s.policy }

func (s fsvirtSystem) run(t *testing.T, shared string, argv []string) outcome {
	t.Helper()
	base := t.TempDir()
	store, keep := filepath.Join(base, "store"), filepath.Join(base, "keep")
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "--tree", shared, "--store", store, "--policy", s.policy, "--keep", keep, "--diff", "--"}
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
	// In the root, which no script removes.
	if err := os.WriteFile(filepath.Join(dir, "stray"), []byte("planted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runIn(t, dir, argv)
	return outcome{code: r.code, stdout: strings.ReplaceAll(r.stdout, dir, treePlaceholder), stderr: r.stderr}
}

// A reference is how sc ran on a private full copy of its tree.
type reference struct {
	code int
	out  string // the script's output, the tree's path replaced by treePlaceholder
	tree tree   // as the wrapper listed it
}

// runReference runs sc's script (at path script) as u on a private full copy of a fresh build of
// sc's tree. The tree is the same at every build (content, owners, modes, times), so one
// reference serves any number of systems. A script runs to its end: exit status 0.
func runReference(t *testing.T, sc scenario, u user, script string) reference {
	t.Helper()
	r := copySystem{}.run(t, buildTree(t, sc), scenarioArgv(script, u))
	if r.stderr != "" {
		t.Fatalf("[harness] the reference run wrote to stderr, which the wrapper should have redirected:\n%s", r.stderr)
	}
	out, tr, err := splitListing(r.stdout)
	if err != nil {
		t.Fatalf("[harness] reference run: %v", err)
	}
	if r.code != 0 {
		t.Fatalf("[harness] the script stopped early as %s on the reference, exit status %d (run what may fail under fails); its output:\n%s",
			u.name, r.code, out)
	}
	return reference{code: r.code, out: out, tree: tr}
}

// reachableScript copies sc's script to a directory that every user can read, so that nobody can
// run it wherever the repository lies, and returns the copy's path. Error messages name the
// script: the reference and every system must run the same copy.
func reachableScript(t *testing.T, sc scenario) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "scenarios", sc.name+".sh"))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(reachableTempDir(t), sc.name+".sh")
	if err := os.WriteFile(script, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return script
}

// reachableTempDir is t.TempDir, made searchable by everyone (o+x) up to os.TempDir: the testing
// package makes the directory above it 0700.
func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	top, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; d != top && strings.HasPrefix(d, top+"/"); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o111); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runScenario runs sc's script (at path script) as u with sut on a fresh shared tree and returns
// every way in which the run differs from ref or from what fsvirt promises.
func runScenario(t *testing.T, sc scenario, u user, script string, ref reference, sut system) []string {
	t.Helper()
	shared := buildTree(t, sc)
	snap := treetest.Snap(t, shared)
	before := treeOf(snap)
	got := sut.run(t, shared, scenarioArgv(script, u))

	var problems []string
	if d := snap.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		problems = append(problems, fmt.Sprintf("shared tree changed:\n  %s", strings.Join(capLines(d), "\n  ")))
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

// buildTree makes scenarioTree, and what sc's setup adds, under a fresh temporary directory that
// every user can reach, and returns its real path.
func buildTree(t *testing.T, sc scenario) string {
	t.Helper()
	root := filepath.Join(reachableTempDir(t), "tree")
	treetest.Build(t, root, scenarioTree...)
	if err := os.Symlink("/nonexistent/fsvirt/target", filepath.Join(root, "abs-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(root, nobodyID, nobodyID); err != nil {
		t.Fatal(err)
	}
	// ENOTSUP where the file system has no user xattrs: the xattr scenario skips then.
	_ = unix.Setxattr(filepath.Join(root, "xattr.txt"), "user.fsvirt", []byte("shared"), 0)
	if sc.setup != "" {
		cmd := exec.Command("env", append(append([]string{"-i"}, scenarioEnv...), "sh", "-e", "-c", sc.setup)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("[harness] %s's setup: %v\n%s", sc.name, err, out)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(treeTime.UnixNano()), unix.NsecToTimespec(treeTime.UnixNano())}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
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
	dst := treetest.Copy(t, src, filepath.Join(reachableTempDir(t), "tree"))
	if d := treetest.Snap(t, src).Diff(treetest.Snap(t, dst), treetest.Kept); d != nil {
		t.Fatalf("[harness] cp -a made an unfaithful copy:\n  %s", strings.Join(capLines(d), "\n  "))
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
