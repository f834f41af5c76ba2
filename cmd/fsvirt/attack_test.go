package main

// The adversarial suite: programs in testdata/attack attack the supervisor from inside a view,
// most of them with two threads racing its checks, and each run must leave the shared tree as it
// was (attacktest.Fixture.Check). Every attack runs in each cell of a matrix: policy fast and
// strict; --tree the fixture's parent, and the default tree "/"; as root and as nobody (setpriv).
// -short keeps the --tree cells.
//
// The attacker's decoys live where the view passes calls to the kernel untouched: a directory of
// its own outside the --tree, or, with the default tree, under /dev. There they mirror the shared
// tree's directories at paths of the same length as the shared ones, which differ from them only
// in their first bytes: a reader racing a path buffer's rewrite sees either path, or a mix of the
// two that names nothing, so no attack can make a name anywhere else on the host.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fsvirt/fsvirt/internal/attacktest"
	"golang.org/x/sys/unix"
)

// raceBudget bounds each race, in milliseconds; the programs also stop after 20000 calls, and as
// soon as they see the shared tree change.
const raceBudget = 1000

// A cell is one point of the matrix.
type cell struct {
	policy string // fast or strict
	tree   bool   // --tree the fixture's parent; else the default tree, "/"
	user   string // root, nobody, or user: the test's own when it is not root
}

func (c cell) String() string {
	tree := "default"
	if c.tree {
		tree = "tree"
	}
	return c.policy + "/" + tree + "/" + c.user
}

// forEachCell runs fn in a parallel subtest per cell of the matrix: go test's -parallel (GOMAXPROCS)
// cells at a time, each of whose races keeps two threads and the supervisor busy.
func forEachCell(t *testing.T, fn func(t *testing.T, c cell)) {
	t.Helper()
	users := []string{"root", "nobody"}
	if os.Geteuid() != 0 {
		users = []string{"user"} // setpriv needs root
	}
	trees := []bool{true, false}
	if testing.Short() {
		trees = trees[:1]
	}
	for _, policy := range []string{"fast", "strict"} {
		for _, tree := range trees {
			for _, user := range users {
				c := cell{policy, tree, user}
				t.Run(c.String(), func(t *testing.T) {
					t.Parallel()
					fn(t, c)
				})
			}
		}
	}
}

// An arena is one cell's ground: the shared tree, the attacker's decoys and a store.
type arena struct {
	cell
	fx    attacktest.Fixture
	decoy string // mirrors fx.Parent: the attacker's own, outside every virtualized tree
	store string // --store; "" for the default
	bin   string // fsvirt and the attack programs, which everyone may run
	uid   int    // the attacker's
}

// newArena lays out ROOT/t, the fixture's parent (the --tree), ROOT/s, the store, and, for the
// --tree, ROOT/d, the decoys. With the default tree, the decoys go under /dev, in a directory
// whose name makes their paths as long as the shared ones.
func newArena(t *testing.T, c cell, bin string) *arena {
	t.Helper()
	a := &arena{cell: c, bin: bin, uid: os.Geteuid()}
	if c.user == "nobody" {
		a.uid = attacktest.Nobody
	}
	if !c.tree && os.Geteuid() != 0 {
		// The default tree leaves only /proc, /sys and /dev (but /dev/shm) to the host.
		t.Skip("the default tree's decoys go in a directory under /dev, which needs root")
	}
	base := attacktest.FlagsBase()
	root := attacktest.TempDir(t, base, "attack-", 0o755, os.Geteuid())
	a.fx = attacktest.NewFixture(t, mkdir(t, filepath.Join(root, "t"), 0o755, os.Geteuid()))
	a.store = mkdir(t, filepath.Join(root, "s"), 0o700, a.uid)
	a.decoy = filepath.Join(root, "d")
	if !c.tree {
		if err := unix.Access("/dev", unix.W_OK); err != nil {
			t.Skipf("the default tree's decoys go in a directory under /dev: %v", err)
		}
		// As few leading bytes as may differ: base's, when a name in /dev can be as long.
		prefix := base
		if len(prefix) < len("/dev/.x") {
			prefix = root
		}
		dev := attacktest.TempDirLen(t, "/dev", len(prefix)-len("/dev/"), 0o755, os.Geteuid())
		a.decoy = dev + strings.TrimPrefix(a.fx.Parent, prefix)
	}
	a.fx.Mirror(t, a.decoy, a.uid)
	return a
}

func mkdir(t *testing.T, dir string, mode os.FileMode, uid int) string {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	if uid != os.Geteuid() {
		if err := os.Chown(dir, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The shared objects an attack aims at: ones the attacker may not change on the host (root's),
// or, for nobody, its own, which it may change on the host but not through the view.

// own is a file whose data and metadata the attacker owns.
func (a *arena) own() string {
	if a.user == "nobody" {
		return filepath.Join(a.fx.Dir, "nobody-file")
	}
	return filepath.Join(a.fx.Dir, "root-file")
}

// chownTarget is a file whose chown to nobody changes it: root's, or nobody's set-uid file, which
// loses the bit.
func (a *arena) chownTarget() string {
	if a.user == "nobody" {
		return filepath.Join(a.fx.Dir, "nobody-suid")
	}
	return a.own()
}

// dir is a directory where the attacker may add and remove names.
func (a *arena) dir() string {
	if a.user == "nobody" {
		return filepath.Join(a.fx.Dir, "nobody-dir")
	}
	return a.fx.Dir
}

// victim and other are files in dir.
func (a *arena) victim() string {
	if a.user == "nobody" {
		return filepath.Join(a.dir(), "own")
	}
	return a.own()
}

func (a *arena) other() string {
	if a.user == "nobody" {
		return filepath.Join(a.dir(), "own2")
	}
	return filepath.Join(a.dir(), "ro-file")
}

// decoyOf is the decoy that mirrors the shared path p: as long, in the attacker's directory.
func (a *arena) decoyOf(p string) string { return a.decoy + strings.TrimPrefix(p, a.fx.Parent) }

// flipPaths returns the decoy and the target of each shared path, for flip.c.
func (a *arena) flipPaths(shared ...string) []string {
	var out []string
	for _, p := range shared {
		out = append(out, a.decoyOf(p), p)
	}
	return out
}

func (a *arena) prog(name string) string { return filepath.Join(a.bin, name) }

// command is fsvirt run with the arena's policy, tree and store, as its user.
func (a *arena) command(ctx context.Context, env []string, argv ...string) *exec.Cmd {
	args := []string{"run", "--policy", a.policy}
	if a.tree {
		args = append(args, "--tree", a.fx.Parent)
	}
	if a.store != "" {
		args = append(args, "--store", a.store)
	}
	args = append(append(args, "--"), argv...)
	prog := a.prog("fsvirt")
	if a.user == "nobody" {
		id := strconv.Itoa(attacktest.Nobody)
		args = append([]string{"--reuid=" + id, "--regid=" + id, "--clear-groups", prog}, args...)
		prog = "setpriv"
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = env
	cmd.Dir = "/" // one every user may enter
	return cmd
}

// run runs argv in the arena's view and returns how fsvirt ended; one that outlives runTimeout or
// does not exit fails the test.
func (a *arena) run(t *testing.T, env []string, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := a.command(ctx, env, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%q: %v (ctx: %v)\nstdout:\n%s\nstderr:\n%s", cmd.Args, err, ctx.Err(), r.stdout, r.stderr)
	}
	return r
}

// attack runs an attack program in the arena's view and fails the test for every change it made
// to the shared tree. Its report goes to the log.
func (a *arena) attack(t *testing.T, argv ...string) result {
	t.Helper()
	before := a.fx.Take(t)
	r := a.run(t, os.Environ(), argv...)
	t.Logf("%s: exit status %d\n%s%s", filepath.Base(argv[0]), r.code, r.stdout, r.stderr)
	switch r.code {
	case 0:
	case 2, 125, 126, 127: // the program's setup, or fsvirt, failed: nothing was attacked
		t.Errorf("exit status %d: the attack did not run (stderr %q)", r.code, r.stderr)
	}
	a.fx.Check(t, before)
	return r
}

// attackBin compiles the named programs of testdata/attack, and copies fsvirt, into a directory
// from which nobody may run them too.
func attackBin(t *testing.T, progs ...string) string {
	t.Helper()
	requireEngine(t)
	dir := t.TempDir()
	attacktest.OpenToAll(t, dir)
	for _, p := range progs {
		attacktest.Compile(t, filepath.Join("testdata", "attack", p+".c"), dir)
	}
	src, err := os.Open(fsvirtBin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, "fsvirt"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err == nil {
		_, err = io.Copy(dst, src)
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// A flipAttack races one call on one or two path buffers (testdata/attack/flip.c).
type flipAttack struct {
	name, op string
	// paths returns the decoy and the target of each buffer.
	paths func(a *arena) []string
}

var flipAttacks = []flipAttack{
	{"truncate-path-flip", "truncate", func(a *arena) []string { return a.flipPaths(a.own()) }},
	{"chmod-path-flip", "chmod", func(a *arena) []string { return a.flipPaths(a.own()) }},
	{"chown-path-flip", "chown", func(a *arena) []string { return a.flipPaths(a.chownTarget()) }},
	{"utimensat-path-flip", "utimensat", func(a *arena) []string { return a.flipPaths(a.own()) }},
	{"setxattr-path-flip", "setxattr", func(a *arena) []string { return a.flipPaths(a.own()) }},
	{"removexattr-path-flip", "removexattr", func(a *arena) []string { return a.flipPaths(a.own()) }},
	{"unlink-path-flip", "unlink", func(a *arena) []string { return a.flipPaths(a.victim()) }},
	// Both names flip: with the default tree the decoys are on another file system (/dev), where
	// a rename or link between a decoy and a shared file fails with EXDEV.
	{"rename-away-path-flip", "rename", func(a *arena) []string {
		return a.flipPaths(a.victim(), filepath.Join(a.dir(), "renamed"))
	}},
	{"rename-onto-path-flip", "rename", func(a *arena) []string { return a.flipPaths(a.other(), a.victim()) }},
	{"link-path-flip", "link", func(a *arena) []string {
		return a.flipPaths(a.victim(), filepath.Join(a.dir(), "linked"))
	}},
	{"mknod-path-flip", "mknod", func(a *arena) []string { return a.flipPaths(filepath.Join(a.dir(), "made-node")) }},
	{"mkdir-path-flip", "mkdir", func(a *arena) []string { return a.flipPaths(filepath.Join(a.dir(), "made-dir")) }},
	{"symlink-path-flip", "symlink", func(a *arena) []string { return a.flipPaths(filepath.Join(a.dir(), "made-symlink")) }},
	{"bind-path-flip", "bind", func(a *arena) []string { return a.flipPaths(filepath.Join(a.dir(), "made-socket")) }},
}

// TestAttackPathFlip: a path buffer that another thread rewrites between a decoy outside the
// virtualized trees and a shared file must not let a call through to the shared file. The
// supervisor reads the buffer once; if it answers CONTINUE, the kernel reads it again
// (docs/kernel.md, "CONTINUE re-reads memory").
func TestAttackPathFlip(t *testing.T) {
	bin := attackBin(t, "flip")
	for _, at := range flipAttacks {
		t.Run(at.name, func(t *testing.T) {
			forEachCell(t, func(t *testing.T, c cell) {
				a := newArena(t, c, bin)
				argv := append([]string{a.prog("flip"), at.op, strconv.Itoa(raceBudget)}, at.paths(a)...)
				a.attack(t, argv...)
			})
		})
	}
}

// A dirSwapAttack races one call on a path through a directory of the attacker's, which another
// thread exchanges with a symbolic link to a directory of the shared tree
// (testdata/attack/dirswap.c).
type dirSwapAttack struct {
	name, op string
	// args returns the shared directory and the names in it that the call's paths end in.
	args func(a *arena) []string
}

var dirSwapAttacks = []dirSwapAttack{
	{"chmod-dir-swap", "chmod", func(a *arena) []string { return []string{a.fx.Dir, maze(mazeSteps, filepath.Base(a.own()))} }},
	{"unlink-dir-swap", "unlink", func(a *arena) []string { return []string{a.dir(), maze(mazeSteps, filepath.Base(a.victim()))} }},
	{"rename-dir-swap", "rename", func(a *arena) []string {
		return []string{a.dir(), maze(mazeSteps, filepath.Base(a.victim())), "renamed"}
	}},
	// The supervisor resolves the new name last: the maze goes there.
	{"link-dir-swap", "link", func(a *arena) []string {
		return []string{a.dir(), filepath.Base(a.victim()), maze(mazeSteps, "linked")}
	}},
	{"mknod-dir-swap", "mknod", func(a *arena) []string { return []string{a.dir(), maze(mazeSteps, "made-node")} }},
	{"mkdir-dir-swap", "mkdir", func(a *arena) []string { return []string{a.dir(), maze(mazeSteps, "made-dir")} }},
	{"symlink-dir-swap", "symlink", func(a *arena) []string { return []string{a.dir(), maze(mazeSteps, "made-symlink")} }},
	{"bind-dir-swap", "bind", func(a *arena) []string { return []string{a.dir(), maze(socketMazeSteps, "made-socket")} }},
}

// mazeSteps is how often a dir-swap path goes into sub and back; socketMazeSteps, for bind, keeps
// the path within a socket's 107 bytes.
const (
	mazeSteps       = 64
	socketMazeSteps = 4
)

// maze leads through the subdirectory sub and back n times before name: steps the supervisor
// resolves after the exchanged directory, which widen the window the exchange must hit.
func maze(n int, name string) string { return strings.Repeat("sub/../", n) + name }

// TestAttackDirSwap: a directory outside the virtualized trees that becomes a symbolic link into
// the shared tree between the supervisor's resolution of a path and the call on it must not let
// the call reach the shared tree, whether the kernel makes the call (CONTINUE:
// docs/kernel.md, "CONTINUE re-reads memory") or the supervisor makes it by the path it resolved.
func TestAttackDirSwap(t *testing.T) {
	bin := attackBin(t, "dirswap")
	for _, at := range dirSwapAttacks {
		t.Run(at.name, func(t *testing.T) {
			forEachCell(t, func(t *testing.T, c cell) {
				a := newArena(t, c, bin)
				argv := []string{a.prog("dirswap"), at.op, strconv.Itoa(raceBudget), filepath.Join(a.decoy, "swap")}
				a.attack(t, append(argv, at.args(a)...)...)
			})
		})
	}
}

// A swapAttack races one call on a descriptor number that another thread points, by dup2, at a
// decoy and at a shared file (testdata/attack/fdswap.c).
type swapAttack struct {
	name, op string
	args     func(a *arena) []string // TARGET [OWN STOLEN]
}

var swapAttacks = []swapAttack{
	{"fchmod-fd-swap", "fchmod", func(a *arena) []string { return []string{a.own()} }},
	{"fchown-fd-swap", "fchown", func(a *arena) []string { return []string{a.chownTarget()} }},
	{"fsetxattr-fd-swap", "fsetxattr", func(a *arena) []string { return []string{a.own()} }},
	{"fremovexattr-fd-swap", "fremovexattr", func(a *arena) []string { return []string{a.own()} }},
	{"futimens-fd-swap", "futimens", func(a *arena) []string { return []string{a.own()} }},
	{"linkat-fd-swap", "linkat", func(a *arena) []string {
		return []string{a.own(), filepath.Join(a.dir(), "mine"), filepath.Join(a.dir(), "stolen")}
	}},
}

// TestAttackDescriptorSwap: what the supervisor learns of a descriptor (readlink of
// /proc/TID/fd/N) must still hold when the kernel uses it
// (docs/kernel.md, "CONTINUE re-reads memory").
func TestAttackDescriptorSwap(t *testing.T) {
	bin := attackBin(t, "fdswap")
	for _, at := range swapAttacks {
		t.Run(at.name, func(t *testing.T) {
			forEachCell(t, func(t *testing.T, c cell) {
				a := newArena(t, c, bin)
				argv := append([]string{a.prog("fdswap"), at.op, strconv.Itoa(raceBudget)}, at.args(a)...)
				a.attack(t, argv...)
			})
		})
	}
}

// TestAttackIoctl: inode flags set through an O_RDONLY descriptor of a shared file
// (FS_IOC_SETFLAGS: no-dump, and immutable as root; FS_IOC_FSSETXATTR: no-atime) must not reach
// the shared file.
func TestAttackIoctl(t *testing.T) {
	bin := attackBin(t, "ioctl")
	if base := attacktest.FlagsBase(); !attacktest.HaveInodeFlags(base) {
		t.Skipf("no file system here supports inode flags (FS_IOC_GETFLAGS fails on /var/tmp and %s)", base)
	}
	for _, op := range []string{"setflags", "fssetxattr"} {
		t.Run(op+"-ioctl", func(t *testing.T) {
			forEachCell(t, func(t *testing.T, c cell) {
				a := newArena(t, c, bin)
				a.attack(t, a.prog("ioctl"), op, a.own())
			})
		})
	}
}

// TestAttackListenerTheft: the command must not reach into its supervisor (its parent): not take
// its descriptors with pidfd_getfd, nor ptrace it, read its memory, or list its descriptors. The
// end-to-end check: with a stolen listener, the command answers its own O_WRONLY open of a shared
// file with CONTINUE, and writes (docs/kernel.md, "Reaching the supervisor").
func TestAttackListenerTheft(t *testing.T) {
	bin := attackBin(t, "listener")
	t.Run("listener-theft", func(t *testing.T) {
		forEachCell(t, func(t *testing.T, c cell) {
			a := newArena(t, c, bin)
			r := a.attack(t, a.prog("listener"), a.own(), strconv.Itoa(raceBudget))
			for _, line := range strings.Split(r.stdout, "\n") {
				if strings.HasPrefix(line, "LEAK ") {
					t.Errorf("reached into the supervisor: %s", strings.TrimPrefix(line, "LEAK "))
				}
			}
		})
	})
}

// storeRoots are where fsvirt puts stores by default: /var/tmp, and $TMPDIR when set.
func storeRoots() []string {
	roots := []string{"/var/tmp"}
	if d := os.Getenv("TMPDIR"); d != "" && d != "/var/tmp" {
		roots = append(roots, d)
	}
	return roots
}

// storeEnv is the environment of runs that use the default store: without TMPDIR, so /var/tmp.
func storeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return env
}

func newSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "attack-secret-" + hex.EncodeToString(b)
}

// storeName matches the name of a store (impl's openStore: "fsvirt-" and os.MkdirTemp's digits,
// with a leading dot while it is being made); other programs may name things fsvirt-* too.
var storeName = regexp.MustCompile(`^\.?fsvirt-[0-9]+$`)

// TestAttackStoreReads: private layers are private to their view. A run must not read another
// run's private copy in its store (store-sibling-read), nor see any store in a listing of the
// directory that holds them (store-listed), its own included. Both use the default store.
func TestAttackStoreReads(t *testing.T) {
	bin := attackBin(t, "storepeek")
	t.Run("store-sibling-read", func(t *testing.T) {
		forEachCell(t, func(t *testing.T, c cell) {
			a := newArena(t, c, bin)
			a.store = ""
			before := a.fx.Take(t)
			secret := newSecret(t)
			stop := a.startWriter(t, secret)
			r := a.run(t, storeEnv(), append([]string{a.prog("storepeek"), secret}, storeRoots()...)...)
			stop()
			t.Logf("storepeek: exit status %d\n%s%s", r.code, r.stdout, r.stderr)
			for _, line := range strings.Split(r.stdout, "\n") {
				if path, ok := strings.CutPrefix(line, "FOUND "); ok {
					t.Errorf("read another run's private copy: %s", path)
				}
			}
			if r.code != 0 && !strings.Contains(r.stdout, "FOUND ") {
				t.Errorf("storepeek: exit status %d, want 0 (stderr %q)", r.code, r.stderr)
			}
			a.fx.Check(t, before)
		})
	})
	t.Run("store-listed", func(t *testing.T) {
		forEachCell(t, func(t *testing.T, c cell) {
			a := newArena(t, c, bin)
			a.store = ""
			r := a.run(t, storeEnv(), a.prog("storepeek"), newSecret(t), "/var/tmp")
			t.Logf("storepeek: exit status %d\n%s%s", r.code, r.stdout, r.stderr)
			if r.code != 0 || strings.Contains(r.stdout, "cannot list") {
				t.Fatalf("exit status %d, stdout %q: the listing failed, so the test proves nothing", r.code, r.stdout)
			}
			// With --tree the fixture's parent, /var/tmp is outside the trees: the view lists it as
			// the host does, names of store roots included (README, "The store"), but no path
			// into one may lead anywhere. In the default tree the view lists it without them.
			verb, says := "listed ", "shows"
			if c.tree {
				verb, says = "reachable ", "reaches"
			}
			for _, line := range strings.Split(r.stdout, "\n") {
				if path, ok := strings.CutPrefix(line, verb); ok && storeName.MatchString(filepath.Base(path)) {
					t.Errorf("/var/tmp in the view %s a store: %s", says, path)
				}
			}
		})
	})
}

// startWriter starts a run that writes secret into its view of a shared file and waits; the
// returned function ends it and checks that it ran as planned.
func (a *arena) startWriter(t *testing.T, secret string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	script := `printf %s "$1" > "$2" && echo ready && { read -r line || :; }`
	cmd := a.command(ctx, storeEnv(), "/bin/sh", "-c", script, "sh", secret, a.own())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		stdin.Close()
		err := cmd.Wait()
		cancel()
		if err != nil {
			t.Errorf("the writing run: %v (stderr %q)", err, stderr.String())
		}
	}
	t.Cleanup(stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		stop()
		t.Fatalf("the writing run said %q (%v), want %q; stderr %q", line, err, "ready\n", stderr.String())
	}
	return stop
}
