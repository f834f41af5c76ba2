package impl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fsvirt/fsvirt/internal/notify"
	"github.com/fsvirt/fsvirt/internal/treetest"
	"golang.org/x/sys/unix"
)

// requireLandlock returns the Landlock ABI version command threads are restricted with, and skips
// the test where they are not: a kernel without Landlock (built without it, or booted without it
// among its LSMs), or FSVIRT_DISABLE=landlock. internal/notify's TestProbes checks that the probe
// finds Landlock wherever the kernel has it.
func requireLandlock(t *testing.T) int {
	t.Helper()
	if abi := landlockABI(notify.Features()); abi > 0 {
		return abi
	}
	if _, err := notify.LandlockVersion(); err != nil {
		t.Skipf("kernel %s has no Landlock (landlock_create_ruleset: %v)", notify.KernelRelease(), err)
	}
	t.Skip("Landlock turned off (FSVIRT_DISABLE)")
	return 0
}

// unchecked makes the supervisor answer every call with CONTINUE until the test ends.
func unchecked(t *testing.T) {
	t.Helper()
	uncheckedForTest.Store(true)
	t.Cleanup(func() { uncheckedForTest.Store(false) })
}

// landlockOp is a call a command could make under a tree; want is what it gets when the
// supervisor lets the kernel perform it and Landlock refuses it. minABI is the Landlock ABI that
// covers it: below, the kernel would perform it, and the test leaves it out.
type landlockOp struct {
	name   string
	minABI int
	want   unix.Errno
	do     func(tree, store string) error
}

var landlockOps = []landlockOp{
	{"open-write", 1, unix.EACCES, func(tree, _ string) error { return openFile(tree+"/f", unix.O_WRONLY) }},
	{"open-append", 1, unix.EACCES, func(tree, _ string) error { return openFile(tree+"/f", unix.O_WRONLY|unix.O_APPEND) }},
	{"open-create", 1, unix.EACCES, func(tree, _ string) error { return openFile(tree+"/new", unix.O_WRONLY|unix.O_CREAT) }},
	{"open-create-read-only", 1, unix.EACCES, func(tree, _ string) error { return openFile(tree+"/new", unix.O_RDONLY|unix.O_CREAT) }},
	{"open-tmpfile", 1, unix.EACCES, func(tree, _ string) error { return openFile(tree+"/d", unix.O_RDWR|unix.O_TMPFILE) }},
	{"open-read-only-trunc", 3, unix.EACCES, func(tree, _ string) error { return openFile(tree+"/f", unix.O_RDONLY|unix.O_TRUNC) }},
	{"truncate", 3, unix.EACCES, func(tree, _ string) error { return unix.Truncate(tree+"/f", 0) }},
	{"mkdir", 1, unix.EACCES, func(tree, _ string) error { return unix.Mkdir(tree+"/n", 0o755) }},
	{"mkfifo", 1, unix.EACCES, func(tree, _ string) error { return unix.Mkfifo(tree+"/fifo", 0o644) }},
	{"symlink", 1, unix.EACCES, func(tree, _ string) error { return unix.Symlink("f", tree+"/l") }},
	{"link", 1, unix.EACCES, func(tree, _ string) error { return unix.Link(tree+"/f", tree+"/f2") }},
	{"unlink", 1, unix.EACCES, func(tree, _ string) error { return unix.Unlink(tree + "/f") }},
	{"rmdir", 1, unix.EACCES, func(tree, _ string) error { return unix.Rmdir(tree + "/e") }},
	{"rename", 1, unix.EACCES, func(tree, _ string) error { return unix.Rename(tree+"/f", tree+"/g") }},
	// Across directories Landlock answers EACCES, not EXDEV, when the names cannot be made or
	// removed at all.
	{"rename-across", 1, unix.EACCES, func(tree, _ string) error { return unix.Rename(tree+"/f", tree+"/d/f") }},
	{"rename-exchange", 1, unix.EACCES, func(tree, _ string) error {
		return unix.Renameat2(unix.AT_FDCWD, tree+"/d", unix.AT_FDCWD, tree+"/e", unix.RENAME_EXCHANGE)
	}},
	{"bind-unix", 1, unix.EACCES, func(tree, _ string) error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Bind(fd, &unix.SockaddrUnix{Name: tree + "/sock"})
	}},
	{"store-create", 1, unix.EACCES, func(_, store string) error { return openFile(store+"/new", unix.O_WRONLY|unix.O_CREAT) }},
	{"store-write", 1, unix.EACCES, func(_, store string) error { return openFile(store+"/lock", unix.O_WRONLY) }},
	{"store-unlink", 1, unix.EACCES, func(_, store string) error { return unix.Unlink(store + "/lock") }},
	// Nothing is granted anywhere, outside the trees either: the supervisor performs those writes.
	{"outside-dev-null", 1, unix.EACCES, func(string, string) error { return openFile("/dev/null", unix.O_WRONLY) }},
}

// openFile opens p with flags and closes it again.
func openFile(p string, flags int) error {
	fd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0o644)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// TestLandlockRefusesUncheckedCalls turns the supervisor's checks off (every call is answered
// CONTINUE) and shows that the kernel itself then refuses the worker thread every change under
// the tree and in the store, while reads and writes to descriptors still work. Without Landlock,
// the same calls change the shared tree.
func TestLandlockRefusesUncheckedCalls(t *testing.T) {
	abi := requireLandlock(t)
	fmt.Printf("fsvirt-probe: landlock-abi-%d=on\n", abi)
	tree := t.TempDir()
	treetest.Build(t, tree, "dir d", "dir e", "file f shared")
	before := treetest.Snap(t, tree)
	p, err := NewPool(Config{Workers: 1, Trees: []string{tree}, Store: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	unchecked(t)
	var got []string
	err = p.Invoke(context.Background(), func(inv *Invocation) error {
		for _, op := range landlockOps {
			if abi < op.minABI {
				continue
			}
			if err := op.do(tree, p.store.dir); !errors.Is(err, op.want) {
				got = append(got, fmt.Sprintf("%s: %v, want %v", op.name, err, op.want))
			}
		}
		b, err := os.ReadFile(tree + "/f")
		if err != nil || string(b) != "shared" {
			got = append(got, fmt.Sprintf("read: %q, %v; want \"shared\"", b, err))
		}
		if _, err := os.ReadDir(tree); err != nil {
			got = append(got, fmt.Sprintf("readdir: %v", err))
		}
		var pipe [2]int
		if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
			return err
		}
		defer unix.Close(pipe[0])
		defer unix.Close(pipe[1])
		if _, err := unix.Write(pipe[1], []byte("x")); err != nil {
			got = append(got, fmt.Sprintf("write to a pipe: %v", err))
		}
		return nil
	})
	uncheckedForTest.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range got {
		t.Error(g)
	}
	if d := before.Diff(treetest.Snap(t, tree), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}

// TestLandlockSupervisorWritesWork: with Landlock on, what the supervisor performs and injects
// still works, truncation of an injected descriptor included (Landlock decides it by the rights
// of the task that opened the file: the supervisor), and so do writes outside the tree.
func TestLandlockSupervisorWritesWork(t *testing.T) {
	requireLandlock(t)
	tree := t.TempDir()
	treetest.Build(t, tree, "dir d", "dir e", "file f shared")
	before := treetest.Snap(t, tree)
	outside := t.TempDir()
	p, err := NewPool(Config{Workers: 1, Trees: []string{tree}, Store: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var got []string
	check := func(what string, err error) {
		if err != nil {
			got = append(got, fmt.Sprintf("%s: %v", what, err))
		}
	}
	err = p.Invoke(context.Background(), func(inv *Invocation) error {
		fd, err := unix.Open(tree+"/f", unix.O_RDWR|unix.O_TRUNC|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open for writing: %w", err)
		}
		_, err = unix.Write(fd, []byte("changed"))
		check("write", err)
		check("ftruncate", unix.Ftruncate(fd, 4))
		check("fallocate", unix.Fallocate(fd, 0, 0, 8192))
		unix.Close(fd)
		check("truncate", unix.Truncate(tree+"/f", 4))
		check("mkdir", unix.Mkdir(tree+"/n", 0o755))
		check("rename", unix.Rename(tree+"/f", tree+"/d/f"))
		check("unlink", unix.Unlink(tree+"/d/f"))
		check("rmdir", unix.Rmdir(tree+"/e"))
		check("mkfifo", unix.Mkfifo(tree+"/fifo", 0o644))
		check("/dev/null", openFile("/dev/null", unix.O_WRONLY))
		check("create outside the tree", openFile(filepath.Join(outside, "new"), unix.O_WRONLY|unix.O_CREAT))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range got {
		t.Error(g)
	}
	if d := before.Diff(treetest.Snap(t, tree), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); err != nil {
		t.Errorf("the file made outside the tree: %v", err)
	}
}

// TestLandlockGuardsTheTest is TestLandlockRefusesUncheckedCalls without Landlock: the unchecked
// calls then reach the shared tree, which is what Landlock prevents there.
func TestLandlockGuardsTheTest(t *testing.T) {
	f := notify.Features()
	f.Landlock = false
	defer notify.SetForTest(f)()
	tree := t.TempDir()
	treetest.Build(t, tree, "file f shared")
	p, err := NewPool(Config{Workers: 1, Trees: []string{tree}, Store: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	unchecked(t)
	err = p.Invoke(context.Background(), func(inv *Invocation) error {
		return os.WriteFile(tree+"/f", []byte("leaked"), 0o644)
	})
	uncheckedForTest.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(tree + "/f"); string(b) != "leaked" {
		t.Fatalf("without Landlock an unchecked write left %q; the switch does not reach the kernel", b)
	}
}

// landlockScript reads f in the directory $1, then tries seven changes there and says which
// were done.
const landlockScript = `cd "$1" || exit 9
cat f; echo
for op in 'echo x >f' 'echo x >>f' 'mkdir n' 'rm f' 'mv f g' 'ln -s f l' ': >d/new'; do
	sh -c "$op" 2>&1 && echo "$op: done"
done
exit 0`

// TestLandlockProcessMode: process mode's command is restricted too (fsvirt-init restricts its
// thread before the exec), and its descendants with it; so is a process that Invocation.Start
// starts (fsvirt-init again, from a thread without Landlock).
func TestLandlockProcessMode(t *testing.T) {
	requireLandlock(t)
	check := func(t *testing.T, tree string, before treetest.Snapshot, out string) {
		t.Helper()
		if !strings.HasPrefix(out, "shared\n") || strings.Contains(out, "done") || strings.Count(out, "ermission denied") < 7 {
			t.Errorf("want the read, then every change refused with EACCES; got:\n%s", out)
		}
		if d := before.Diff(treetest.Snap(t, tree), treetest.Exact); d != nil {
			t.Errorf("the shared tree changed: %q", d)
		}
	}
	t.Run("run", func(t *testing.T) {
		tree := t.TempDir()
		treetest.Build(t, tree, "dir d", "file f shared")
		before := treetest.Snap(t, tree)
		unchecked(t)
		out, res := runCmd(t, tree, nil, "/bin/sh", "-c", landlockScript, "sh", tree)
		uncheckedForTest.Store(false)
		if res.ExitStatus != 0 {
			t.Fatalf("exit status %d; output:\n%s", res.ExitStatus, out)
		}
		check(t, tree, before, out)
	})
	t.Run("start", func(t *testing.T) {
		tree := t.TempDir()
		treetest.Build(t, tree, "dir d", "file f shared")
		before := treetest.Snap(t, tree)
		p, err := NewPool(Config{Workers: 1, Trees: []string{tree}, Store: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		unchecked(t)
		var out []byte
		err = p.Invoke(context.Background(), func(inv *Invocation) error {
			var err error
			out, err = startOutput(inv, exec.Command("/bin/sh", "-c", landlockScript, "sh", tree))
			return err
		})
		uncheckedForTest.Store(false)
		if err != nil {
			t.Fatalf("%v; output:\n%s", err, out)
		}
		check(t, tree, before, string(out))
	})
}

// TestLandlockRefusesCoreDump: the kernel writes a core dump for the dumping task itself, by path
// (kernel.core_pattern "core": in the task's working directory), a write fsvirt cannot intercept.
// Under a tree it would land in the shared tree; Landlock refuses it. Without Landlock,
// fsvirt-init sets RLIMIT_CORE to 0 for good: no dump either.
func TestLandlockRefusesCoreDump(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	pattern := strings.TrimSpace(string(b))
	if err != nil || pattern == "" || strings.ContainsAny(pattern, "|/%") {
		t.Skipf("kernel.core_pattern %q (%v): the test needs a plain file name", pattern, err)
	}
	// A command that crashes with whatever core limit it is allowed to raise to.
	dump := func(t *testing.T) []string {
		tree := t.TempDir()
		runCmd(t, tree, nil, "/bin/sh", "-c", `cd "$1" && { ulimit -c unlimited; } 2>/dev/null
ulimit -c > ../limit
exec 2>/dev/null
sh -c 'kill -SEGV $$'
exit 0`, "sh", tree)
		ents, err := os.ReadDir(tree)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	t.Run("landlock", func(t *testing.T) {
		requireLandlock(t)
		if names := dump(t); len(names) != 0 {
			t.Errorf("the shared tree holds %v after a core dump", names)
		}
	})
	t.Run("without-landlock", func(t *testing.T) {
		f := notify.Features()
		f.Landlock = false
		defer notify.SetForTest(f)()
		// fsvirt-init sets RLIMIT_CORE to 0 then, hard; a command with CAP_SYS_RESOURCE (root)
		// can raise it again, and its core then lands (README, "Limits of this version").
		names := dump(t)
		b, _ := os.ReadFile(filepath.Join(filepath.Dir(t.TempDir()), "limit"))
		limit := strings.TrimSpace(string(b))
		switch {
		case limit == "0" && len(names) != 0:
			t.Errorf("without Landlock, under RLIMIT_CORE 0, the shared tree holds %v after a core dump", names)
		case limit != "0":
			t.Logf("the command raised RLIMIT_CORE to %q (it may, as root): its core lands: %v", limit, names)
		}
	})
}
