package fuzz

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/impl"
	"github.com/fsvirt/fsvirt/internal/sysexec"
)

// FuzzProcessTree's programs run as this test binary (TestMain): procEnv
// carries a process's program (hex), procRootEnv the tree's root, procIDEnv
// the process's name in the transcript, and procModeEnv "intermediate" for
// a process that only starts the next one and exits ("orphan" for that
// one's child, which waits until it has exited); procDepthEnv its
// depth in the tree of processes.
const (
	procEnv      = "FSVIRT_FUZZ_PROC"
	procRootEnv  = "FSVIRT_FUZZ_PROC_ROOT"
	procIDEnv    = "FSVIRT_FUZZ_PROC_ID"
	procModeEnv  = "FSVIRT_FUZZ_PROC_MODE"
	procDepthEnv = "FSVIRT_FUZZ_PROC_DEPTH"
	// procBudgetEnv is what a process may start (procBudget for the first).
	procBudgetEnv = "FSVIRT_FUZZ_PROC_BUDGET"
	// procParentEnv is the intermediate's pid, for its child's wait.
	procParentEnv = "FSVIRT_FUZZ_PROC_PARENT"
)

// procTree is the tree the programs start from.
var procTree = fsvirt.MustParseTree(
	"dir a",
	"dir a/b",
	"file a/f hello",
	"file a/b/g deep",
	"dir c",
	"symlink s -> a/b",
)

// procNames are the path components of the programs' ops.
var procNames = []string{"a", "b", "c", "f", "g", "n", "s", "."}

// orphanWait bounds the wait of an intermediate's child for the
// intermediate to exit.
const orphanWait = 30 * time.Second

// procBudget bounds the processes an input starts, intermediates included,
// so that an input takes a few seconds under QEMU's TCG, where Go's fuzzing
// worker gives up on one after 10 s. FSVIRT_FUZZ_PROC_BUDGET overrides it
// (scripts/fuzz.sh sets 5 in a VM).
const procBudget = 8

// procMaxDepth bounds the process tree: a process this deep starts none.
const procMaxDepth = 3

// FuzzProcessTree: programs of processes that fork (start a child, which
// runs a program of its own), change directory in the child, execute a
// short-lived intermediate that starts a grandchild and exits at once,
// and make path calls from there; each waits for what it started before
// it goes on, so the transcript has one order. The program runs twice:
// in fsvirt's view of the shared tree (process mode) and natively on a
// private copy of the tree. Each process writes what its calls returned
// (errno, type, size, mode, content, listing, working directory relative
// to the tree), and at the end the first writes the whole tree as it sees
// it: the two transcripts must be the same, and the shared tree must be
// what it was. A working directory that only the view has (one it made,
// or one it renamed) is what a grandchild of an exited intermediate must
// inherit (README, limits).
func FuzzProcessTree(f *testing.F) {
	v := newEnv(f)
	self, err := os.Executable()
	if err != nil {
		f.Fatal(err)
	}
	warmUp(f, v, self)
	for _, seed := range procSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := v.start(t, procTree)
		ref := filepath.Join(t.TempDir(), "ref")
		if err := os.Mkdir(ref, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := sysexec.Build(ref, procTree); err != nil {
			t.Fatal(err)
		}
		prog := hex.EncodeToString(data)
		env := func(root string) []string {
			return append(os.Environ(), procEnv+"="+prog, procRootEnv+"="+root, procIDEnv+"=p")
		}

		var native bytes.Buffer
		cmd := exec.Command(self)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = ref, env(ref), &native, &native
		if err := cmd.Run(); err != nil {
			s.fail("natively: %v\n%s", err, native.String())
		}

		out := filepath.Join(t.TempDir(), "out")
		outf, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), raceTimeout)
		defer cancel()
		res, err := impl.Run(ctx, impl.RunConfig{
			Trees: []string{v.shared}, Store: v.storeRoot,
			Path: self, Args: []string{self}, Dir: v.shared, Env: env(v.shared),
			Stdout: outf, Stderr: outf,
		})
		outf.Close()
		viewOut, _ := os.ReadFile(out)
		switch {
		case ctx.Err() != nil:
			s.fail("the view's run hung: no end after %v\n%s", raceTimeout, viewOut)
		case err != nil:
			s.fail("process-mode run: %v\n%s", err, viewOut)
		case res.ExitStatus != 0:
			s.fail("the view's run failed (exit %d):\n%s", res.ExitStatus, viewOut)
		}
		if string(viewOut) != native.String() {
			s.fail("the view and the copy differ:\n%s\nview:\n%s\ncopy:\n%s", firstDiff(string(viewOut), native.String()), viewOut, native.String())
		}
		s.finish()
	})
}

// firstDiff names the first line where a and b differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: view %q, copy %q", i+1, x, y)
		}
	}
	return "no line differs"
}

// procSeeds: working directories the view made or moved, inherited through
// children, intermediates and subshells. An action is a byte (procActions:
// 0 mkdir, 1 create, 5 chdir, 6 lstat, 7 read, 8 getcwd, 9 list, 3 rename,
// 11 child, 12 intermediate, 13 subshell, each of these three followed by
// the length of its program), a path a header (bit 0: two names, bit 1:
// from the root) and a byte per name (procNames).
var procSeeds = [][]byte{
	// mkdir n; chdir n; subshell { getcwd; create f; list . }; getcwd; read /n/f
	{0, 0, 5, 5, 0, 5, 13, 7, 8, 1, 0, 3, 9, 0, 7, 8, 7, 3, 5, 3},
	// child { mkdir c/n; chdir c/n; intermediate { getcwd; create f } }; list c/n
	{11, 14, 0, 1, 2, 5, 5, 1, 2, 5, 12, 4, 8, 1, 0, 3, 9, 1, 2, 5},
	// mkdir n; chdir n; child { rename /n /c/n }; subshell { getcwd; create f }; list /c/n; getcwd
	{0, 0, 5, 5, 0, 5, 11, 6, 3, 2, 5, 3, 2, 5, 13, 4, 8, 1, 0, 3, 9, 3, 2, 5, 8},
	// intermediate { chdir s; intermediate { getcwd; read g } }
	{12, 9, 5, 0, 6, 12, 4, 8, 7, 0, 4},
}

// proc is one process of a FuzzProcessTree program.
type proc struct {
	src      *source
	root, id string
	depth    int
	budget   int // how many processes it may still start, theirs included
	children int
	self     string
}

func (p *proc) say(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "%s: %s\n", p.id, fmt.Sprintf(format, args...))
}

// path draws a relative path of one or two names, or the same from the root.
func (p *proc) path() (show, real string) {
	h := p.src.next()
	comps := []string{pick(p.src, procNames)}
	if h&1 != 0 {
		comps = append(comps, pick(p.src, procNames))
	}
	rel := strings.Join(comps, "/")
	if h&2 != 0 {
		return "/" + rel, p.root + "/" + rel
	}
	return rel, rel
}

// errName is an error as the transcript shows it.
func errName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

var procActions = []func(p *proc){
	func(p *proc) { show, path := p.path(); p.say("mkdir %s: %s", show, errName(unix.Mkdir(path, 0o755))) },
	func(p *proc) {
		show, path := p.path()
		err := os.WriteFile(path, []byte(p.id+"\n"), 0o644)
		p.say("create %s: %s", show, errName(err))
	},
	func(p *proc) { show, path := p.path(); p.say("unlink %s: %s", show, errName(unix.Unlink(path))) },
	func(p *proc) {
		show, path := p.path()
		show2, path2 := p.path()
		p.say("rename %s %s: %s", show, show2, errName(unix.Rename(path, path2)))
	},
	func(p *proc) {
		target, _ := p.path()
		target = strings.TrimPrefix(target, "/") // relative: an absolute one names another file in the copy
		show, path := p.path()
		p.say("symlink %s %s: %s", target, show, errName(unix.Symlink(target, path)))
	},
	func(p *proc) { show, path := p.path(); p.say("chdir %s: %s", show, errName(unix.Chdir(path))) },
	func(p *proc) {
		show, path := p.path()
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			p.say("lstat %s: %s", show, errName(err))
			return
		}
		size := st.Size
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			size = 0 // a directory's size is the file system's business
		}
		p.say("lstat %s: mode %o size %d", show, st.Mode, size)
	},
	func(p *proc) {
		show, path := p.path()
		data, err := os.ReadFile(path)
		p.say("read %s: %q %s", show, data, errName(err))
	},
	func(p *proc) { // getcwd, relative to the root
		cwd, err := unix.Getwd()
		rel, rerr := filepath.Rel(p.root, cwd)
		if err == nil && (rerr != nil || strings.HasPrefix(rel, "..")) {
			rel = "outside the tree"
		}
		p.say("getcwd: %s %s", rel, errName(err))
	},
	func(p *proc) {
		show, path := p.path()
		ents, err := os.ReadDir(path)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		p.say("list %s: %v %s", show, names, errName(err))
	},
	func(p *proc) { show, path := p.path(); p.say("rmdir %s: %s", show, errName(unix.Rmdir(path))) },
	func(p *proc) { p.start(startChild) },
	func(p *proc) { p.start(startIntermediate) },
	func(p *proc) { p.start(startSubshell) },
	func(p *proc) { // up, where that stays in the tree
		cwd, err := unix.Getwd()
		if err != nil || cwd == p.root || !strings.HasPrefix(cwd, p.root+"/") {
			p.say("chdir ..: not taken")
			return
		}
		p.say("chdir ..: %s", errName(unix.Chdir("..")))
	},
}

// How a process starts the next.
const (
	startChild        = iota // a child
	startIntermediate        // a child that starts the next and exits at once
	// A shell whose subshell (a fork that executes nothing) waits until the
	// shell has exited, then executes the next: the view sees the new
	// program's process first when its parent is gone (docs: README, limits).
	startSubshell
)

// subshell is startSubshell's script; $0 is the program to execute.
const subshell = `( while [ -d /proc/$$ ]; do :; done; exec "$0" ) &`

// start runs the next bytes of the program (a length, then as many bytes)
// in a process started as how says. It waits until that process has
// exited: it holds the write end of a pipe that the wait reads to its end.
func (p *proc) start(how int) {
	n := int(p.src.next() % 24)
	var sub []byte
	for range n {
		if p.src.done() {
			break
		}
		sub = append(sub, p.src.next())
	}
	p.children++
	id := fmt.Sprintf("%s.%d", p.id, p.children)
	if p.depth >= procMaxDepth || p.budget <= 0 {
		p.say("start %s: too deep or too many, not started", id)
		return
	}
	budget := (p.budget - 1) / 2 // what the new process may start in turn
	p.budget -= 1 + budget
	r, w, err := os.Pipe()
	if err != nil {
		p.say("start %s: %v", id, err)
		return
	}
	defer r.Close()
	mode, cmd := "", exec.Command(p.self)
	switch how {
	case startIntermediate:
		mode = "intermediate"
	case startSubshell:
		cmd = exec.Command("/bin/sh", "-c", subshell, p.self)
	}
	cmd.Env = append(os.Environ(), procEnv+"="+hex.EncodeToString(sub), procIDEnv+"="+id, procModeEnv+"="+mode,
		fmt.Sprintf("%s=%d", procDepthEnv, p.depth+1), fmt.Sprintf("%s=%d", procBudgetEnv, budget))
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = os.Stdout, os.Stderr, []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		p.say("start %s: %v", id, err)
		return
	}
	werr := cmd.Wait()
	io.Copy(io.Discard, r) // until the child, or the intermediate's child, has exited
	if werr != nil {
		p.say("start %s: %v", id, werr)
	}
}

// runProc runs a FuzzProcessTree process in this one and returns its exit
// status: 0 whatever its calls returned, 2 when it could not run.
func runProc(hexData string) int {
	data, err := hex.DecodeString(hexData)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proc:", err)
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "proc:", err)
		return 2
	}
	p := &proc{src: &source{b: data}, root: os.Getenv(procRootEnv), id: os.Getenv(procIDEnv), self: self}
	fmt.Sscan(os.Getenv(procDepthEnv), &p.depth)
	p.budget = procBudget
	if b := os.Getenv(procBudgetEnv); b != "" {
		fmt.Sscan(b, &p.budget)
	}
	switch os.Getenv(procModeEnv) {
	case "intermediate":
		// Start the real child, with the wait's pipe (fd 3), and exit at once.
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), procModeEnv+"=orphan", fmt.Sprintf("%s=%d", procParentEnv, os.Getpid()))
		cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = os.Stdout, os.Stderr, []*os.File{os.NewFile(3, "wait")}
		if err := cmd.Start(); err != nil {
			p.say("intermediate: %v", err)
			return 2
		}
		return 0
	case "orphan":
		// The intermediate's child calls nothing before the intermediate has exited.
		var parent int
		fmt.Sscan(os.Getenv(procParentEnv), &parent)
		for deadline := time.Now().Add(orphanWait); os.Getppid() == parent; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				p.say("orphan: the intermediate is still there after %v", orphanWait)
				return 2
			}
		}
	}
	for n := 0; n < maxOps && !p.src.done(); n++ {
		pick(p.src, procActions)(p)
	}
	if p.id == "p" {
		tree, err := sysexec.Walk(p.root)
		p.say("tree (%s):\n%s", errName(err), tree)
	}
	return 0
}
