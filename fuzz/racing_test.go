package fuzz

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/impl"
	"github.com/fsvirt/fsvirt/internal/attacktest"
	"github.com/fsvirt/fsvirt/internal/sysexec"
	"github.com/fsvirt/fsvirt/internal/treetest"
)

// raceEnv carries a FuzzRacingThread input (hex) to the racer, this test
// binary run as the command of a process-mode run; raceBaseEnv the env's
// directory. TestMain runs the racer when raceEnv is set.
const (
	raceEnv     = "FSVIRT_FUZZ_RACE"
	raceBaseEnv = "FSVIRT_FUZZ_RACE_BASE"
	// raceShortEnv bounds the rounds to shortRounds: go test -short, as
	// the kernel matrix replays the corpus, where a round costs 20 times
	// what it does on the host.
	raceShortEnv = "FSVIRT_FUZZ_RACE_SHORT"
)

const shortRounds = 3

// raceBudget bounds the racer's rounds in time: a round under QEMU's TCG
// takes 10 to 20 times what it takes on the host, and Go's fuzzing worker
// gives up on an input after 10 s ("deadlocked!"), which the start of the
// run and the checks after it share.
const raceBudget = time.Second

// decoysName is the directory beside the shared tree that the racer may
// change: as long as "shared", and different from it in every byte, so
// that a torn read of a path being rewritten names a directory that does
// not exist rather than a third one.
const decoysName = "decoys"

// raceTree is the shared tree, and, built under decoys, the decoy tree: the
// racer's paths name either, through a real directory (d) or a symlink to
// one (l), which the racer flips between the two.
var raceTree = fsvirt.MustParseTree(
	"dir d",
	"dir d/e",
	"file d/t shared",
	"file d/u other",
	"symlink l -> d",
)

// The racer's fd numbers that its second thread dup2()s between a decoy's
// descriptor and the shared twin's.
const (
	raceFileFd = 100 // the decoy d/t, read-write; the shared d/t, read-only
	raceDirFd  = 101 // the decoy d and the shared d, read-only directories
)

// raceTimeout bounds one process-mode run: a racer that outlives it hung.
const raceTimeout = 2 * time.Minute

// FuzzRacingThread: a process-mode run of a program with two threads. The
// first makes calls that can change something, on paths in buffers and on
// descriptors; the second, while those calls are in flight, rewrites the
// buffers between a path into the shared tree and one into the decoys,
// dup2()s decoy and shared descriptors onto the numbers the first uses, and
// flips symlinks (one in the view, one on the host, outside the trees)
// between the two (docs/kernel.md, "CONTINUE re-reads memory"). Whatever the
// calls return, which is not compared, the shared tree must come out as it
// went in (times, owners and xattrs included), and another view, an
// invocation of the thread-mode pool that changed files of its own before
// the run, must still be what the copy oracle says, with nothing of the
// run in it; the store must hold nothing of the run afterwards.
func FuzzRacingThread(f *testing.F) {
	v := newEnv(f)
	decoys := filepath.Join(v.dir, decoysName)
	if err := os.Mkdir(decoys, 0o755); err != nil {
		f.Fatal(err)
	}
	var err error
	if v.outside, err = names(v.dir); err != nil {
		f.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		f.Fatal(err)
	}
	warmUp(f, v, self)
	for _, seed := range raceSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.RemoveAll(decoys); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(decoys, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := sysexec.Build(decoys, raceTree); err != nil {
			t.Fatal(err)
		}
		// The decoys' symlink points at their own d by its absolute path.
		if err := os.Remove(filepath.Join(decoys, "l")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(decoys, "d"), filepath.Join(decoys, "l")); err != nil {
			t.Fatal(err)
		}
		s := v.start(t, raceTree)
		// The other view: a copied-up file and a directory of its own.
		for _, op := range []fsvirt.Op{
			{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "d/u", Flags: unix.O_WRONLY | unix.O_TRUNC},
			{Kind: fsvirt.OpWrite, Fd: 0, Data: []byte("mine")},
			{Kind: fsvirt.OpClose, Fd: 0},
			{Kind: fsvirt.OpMkdir, Dirfd: fsvirt.AtCWD, Path: "d/own", Mode: 0o755},
		} {
			s.do(op)
		}
		fx := attacktest.Fixture{Parent: v.dir, Dir: v.shared}
		before := fx.Take(t)
		userStores := filepath.Dir(v.store)
		storesBefore, err := names(userStores)
		if err != nil {
			t.Fatal(err)
		}

		short := ""
		if testing.Short() {
			short = "1"
		}
		policy := impl.PolicyFast
		if len(data) > 0 && data[0]&1 != 0 {
			policy = impl.PolicyStrict
		}
		out := filepath.Join(t.TempDir(), "out")
		outf, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), raceTimeout)
		defer cancel()
		res, err := impl.Run(ctx, impl.RunConfig{
			Trees: []string{v.shared}, Store: v.storeRoot, Policy: policy,
			Path: self, Args: []string{self}, Dir: v.shared,
			Env:    append(os.Environ(), raceEnv+"="+hex.EncodeToString(data), raceBaseEnv+"="+v.dir, raceShortEnv+"="+short),
			Stdout: outf, Stderr: outf,
		})
		outf.Close()
		output, _ := os.ReadFile(out)
		s.logf("racer (%v policy): %v %+v\n%s", policy, err, res, output)
		switch {
		case ctx.Err() != nil:
			s.fail("the racer hung: no end after %v", raceTimeout)
		case err != nil:
			s.fail("process-mode run: %v", err)
		case res.ExitStatus != 0:
			s.fail("the racer failed (exit %d)", res.ExitStatus)
		}
		for _, d := range before.Diff(fx.Take(t), treetest.Exact) {
			s.fail("the shared tree changed: %s", d)
		}
		if after, err := names(userStores); err != nil || !slices.Equal(after, storesBefore) {
			s.fail("the store root holds %v after the run, %v before (%v)", after, storesBefore, err)
		}
		s.finish() // the other view against the oracle, the shared tree, the store, fds
	})
}

// warmUp makes one process-mode run of this binary, a FuzzProcessTree
// process with nothing to do, before the first input: the first run in a VM under TCG
// took 6 s where the next took 0.9 s (loading the binary, the first store),
// and Go's fuzzing worker gives up on an input after 10 s.
func warmUp(f *testing.F, v *env, self string) {
	f.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), raceTimeout)
	defer cancel()
	res, err := impl.Run(ctx, impl.RunConfig{
		Trees: []string{v.shared}, Store: v.storeRoot, Path: self, Args: []string{self}, Dir: v.shared,
		Env: append(os.Environ(), procEnv+"=", procRootEnv+"="+v.shared, procIDEnv+"=warm-up"),
	})
	if err != nil || res.ExitStatus != 0 {
		f.Fatalf("warm-up run: %v %+v", err, res)
	}
}

// raceSeeds: each kind of first-thread call against each kind of
// perturbation. An input is: the policy (bit 0: strict), the rounds, three
// buffers of two paths each (root: shared or decoys; d or l; t, u, n or e),
// then calls (kind, buffer, second buffer) up to a 255, then perturbations
// (kind, argument).
var raceSeeds = [][]byte{
	raceSeed(0, []byte{0, 1, 2, 3, 4, 5, 12, 13}, []byte{0, 0, 0, 1}),
	raceSeed(1, []byte{0, 1, 2, 3, 4, 5, 12, 13}, []byte{0, 0, 0, 1, 0, 2}),
	raceSeed(0, []byte{6, 7, 8, 9, 10, 11}, []byte{0, 0, 0, 1, 0, 2}),
	raceSeed(0, []byte{14, 15, 16, 17}, []byte{1, 0}),
	raceSeed(1, []byte{14, 15, 16, 17}, []byte{1, 0}),
	raceSeed(0, []byte{0, 1, 12, 9, 8}, []byte{2, 0, 3, 0}),
}

// raceSeed makes an input of calls and perturbations on three buffers:
// the decoy d/t against the shared d/t, the decoy d/n against the shared
// d/n, and l/t in the decoys against l/t in the shared tree, whose l the
// symlink perturbations flip.
func raceSeed(policy byte, calls, perturbs []byte) []byte {
	in := []byte{policy, 15, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 2, 1, 1, 0, 0, 1, 0}
	for i, k := range calls {
		in = append(in, k, byte(i%3), byte((i+1)%3))
	}
	in = append(in, 255)
	for i := 0; i+1 < len(perturbs); i += 2 {
		in = append(in, perturbs[i], perturbs[i+1])
	}
	return in
}

// raceBuf is a C string that the second thread rewrites between two
// paths of one length.
type raceBuf struct {
	buf      [256]byte
	one, two []byte
}

func (b *raceBuf) flip() {
	copy(b.buf[:], b.two)
	copy(b.buf[:], b.one)
}

func (b *raceBuf) ptr() uintptr { return uintptr(unsafe.Pointer(&b.buf[0])) }

// racer is the program of a FuzzRacingThread input, in the view.
type racer struct {
	src            *source
	shared, decoys string
	bufs           [3]*raceBuf
}

// racePath draws a path into the shared tree or the decoys; every one has
// the same length.
func (r *racer) racePath() string {
	root := pick(r.src, []string{r.shared, r.decoys})
	return root + "/" + pick(r.src, []string{"d", "l"}) + "/" + pick(r.src, []string{"t", "u", "n", "e"})
}

// raceOps are the first thread's calls: each can change something.
var raceOps = []func(r *racer, b, c *raceBuf){
	func(r *racer, b, _ *raceBuf) { sys(unix.SYS_TRUNCATE, b.ptr(), 0) },
	func(r *racer, b, _ *raceBuf) { sys(unix.SYS_CHMOD, b.ptr(), 0o700) },
	func(r *racer, b, _ *raceBuf) { sys(unix.SYS_CHOWN, b.ptr(), 65533, 65533) },
	func(r *racer, b, _ *raceBuf) { sys(unix.SYS_UTIMENSAT, atCWD, b.ptr(), 0, 0) },
	func(r *racer, b, _ *raceBuf) {
		sys(unix.SYS_SETXATTR, b.ptr(), cstr(xattrRace), cstr(xattrVal), 1, 0)
	},
	func(r *racer, b, _ *raceBuf) { sys(unix.SYS_REMOVEXATTR, b.ptr(), cstr(xattrX)) },
	func(r *racer, b, c *raceBuf) { sys(unix.SYS_LINK, b.ptr(), c.ptr()) },
	func(r *racer, b, c *raceBuf) { sys(unix.SYS_RENAME, b.ptr(), c.ptr()) },
	func(r *racer, b, _ *raceBuf) { sys(unix.SYS_UNLINK, b.ptr()) },
	func(r *racer, b, _ *raceBuf) { sys(unix.SYS_MKDIR, b.ptr(), 0o755) },
	func(r *racer, b, _ *raceBuf) { sys(unix.SYS_RMDIR, b.ptr()) },
	func(r *racer, b, c *raceBuf) { sys(unix.SYS_SYMLINKAT, b.ptr(), atCWD, c.ptr()) },
	func(r *racer, b, _ *raceBuf) { // open for writing, and write
		fd, _, e := unix.Syscall6(unix.SYS_OPENAT, atCWD, b.ptr(), unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0, 0, 0)
		if e == 0 {
			unix.Write(int(fd), []byte("raced"))
			unix.Close(int(fd))
		}
	},
	func(r *racer, b, _ *raceBuf) { // create or truncate
		fd, _, e := unix.Syscall6(unix.SYS_OPENAT, atCWD, b.ptr(), unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644, 0, 0)
		if e == 0 {
			unix.Close(int(fd))
		}
	},
	func(r *racer, _, _ *raceBuf) {
		unix.Fchmod(raceFileFd, 0o777)
		unix.Fchown(raceFileFd, 65533, 65533)
	},
	func(r *racer, _, _ *raceBuf) {
		unix.Fsetxattr(raceFileFd, "user.race", []byte("x"), 0)
		unix.Fremovexattr(raceFileFd, "user.x")
		unix.Ftruncate(raceFileFd, 0)
	},
	func(r *racer, _, _ *raceBuf) { // the descriptor's file through its magic link, for writing
		if fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", raceFileFd), unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0); err == nil {
			unix.Write(fd, []byte("raced"))
			unix.Close(fd)
		}
	},
	func(r *racer, _, c *raceBuf) { // relative to a raced directory descriptor
		if fd, err := unix.Openat(raceDirFd, "t", unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0); err == nil {
			unix.Close(fd)
		}
		unix.Mkdirat(raceDirFd, "n", 0o755)
		unix.Unlinkat(raceDirFd, "u", 0)
		unix.Linkat(raceFileFd, "", unix.AT_FDCWD, string(c.one[:len(c.one)-1]), unix.AT_EMPTY_PATH)
	},
}

// racePerturbs are what the second thread does, over and over, while the
// first one calls.
var racePerturbs = []func(r *racer, arg byte) func(){
	func(r *racer, arg byte) func() { // rewrite a path buffer
		b := r.bufs[int(arg)%len(r.bufs)]
		return b.flip
	},
	func(r *racer, arg byte) func() { // dup2 decoy and shared descriptors onto the numbers in use
		pairs := [][3]int{}
		for _, p := range [][2]string{{"d/t", "d/t"}, {"d", "d"}} {
			flags := unix.O_RDONLY | unix.O_CLOEXEC
			if p[0] == "d/t" {
				flags = unix.O_RDWR | unix.O_CLOEXEC
			}
			decoy, err1 := unix.Open(r.decoys+"/"+p[0], flags, 0)
			shared, err2 := unix.Open(r.shared+"/"+p[1], unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err1 != nil || err2 != nil {
				continue
			}
			n := raceFileFd
			if p[0] == "d" {
				n = raceDirFd
			}
			pairs = append(pairs, [3]int{decoy, shared, n})
		}
		return func() {
			for _, p := range pairs {
				unix.Dup3(p[1], p[2], unix.O_CLOEXEC)
				unix.Dup3(p[0], p[2], unix.O_CLOEXEC)
			}
		}
	},
	func(r *racer, arg byte) func() { // flip the view's symlink l between the shared d and the decoys' d
		targets := []string{"d", r.decoys + "/d"}
		i := 0
		return func() {
			i ^= 1
			os.Remove(r.shared + "/m")
			if os.Symlink(targets[i], r.shared+"/m") == nil {
				os.Rename(r.shared+"/m", r.shared+"/l")
			}
		}
	},
	func(r *racer, arg byte) func() { // flip the decoys' symlink l, on the host, between the two d
		targets := []string{r.shared + "/d", r.decoys + "/d"}
		i := 0
		return func() {
			i ^= 1
			os.Remove(r.decoys + "/m")
			if os.Symlink(targets[i], r.decoys+"/m") == nil {
				os.Rename(r.decoys+"/m", r.decoys+"/l")
			}
		}
	},
}

const atCWD = ^uintptr(99) // AT_FDCWD, -100, as a syscall argument

func sys(nr uintptr, args ...uintptr) {
	var x [6]uintptr
	copy(x[:], args)
	unix.Syscall6(nr, x[0], x[1], x[2], x[3], x[4], x[5])
}

// C strings of the xattr calls: package variables, so that they stay alive
// while only a uintptr names them.
var (
	xattrRace = []byte("user.race\x00")
	xattrX    = []byte("user.x\x00")
	xattrVal  = []byte("x")
)

func cstr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

// runRacer runs a FuzzRacingThread input in this process (the command of
// a process-mode run) and returns its exit status: 0 whatever the calls
// did, 2 when it could not set up. The test checks what came of it.
func runRacer(hexData, base string) int {
	data, err := hex.DecodeString(hexData)
	if err != nil {
		fmt.Fprintln(os.Stderr, "racer:", err)
		return 2
	}
	runtime.LockOSThread()
	r := &racer{src: &source{b: data}, shared: filepath.Join(base, "shared"), decoys: filepath.Join(base, decoysName)}
	r.src.next() // the policy, read by the test
	rounds := 1 + r.src.pick(16)
	if os.Getenv(raceShortEnv) != "" {
		rounds = min(rounds, shortRounds)
	}
	for i := range r.bufs {
		one, two := r.racePath(), r.racePath()
		r.bufs[i] = &raceBuf{one: append([]byte(one), 0), two: append([]byte(two), 0)}
		copy(r.bufs[i].buf[:], r.bufs[i].one)
	}
	// The descriptors start as the decoys'.
	for _, d := range []struct {
		path  string
		flags int
		n     int
	}{{"d/t", unix.O_RDWR, raceFileFd}, {"d", unix.O_RDONLY | unix.O_DIRECTORY, raceDirFd}} {
		fd, err := unix.Open(r.decoys+"/"+d.path, d.flags|unix.O_CLOEXEC, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "racer: open decoy:", err)
			return 2
		}
		unix.Dup3(fd, d.n, unix.O_CLOEXEC)
		unix.Close(fd)
	}
	type call struct {
		fn   func(r *racer, b, c *raceBuf)
		b, c *raceBuf
	}
	var calls []call
	for n := 0; n < 12 && !r.src.done(); n++ {
		k := r.src.next()
		if k == 255 { // the perturbations follow
			break
		}
		calls = append(calls, call{raceOps[int(k)%len(raceOps)], r.bufs[r.src.pick(3)], r.bufs[r.src.pick(3)]})
	}
	var perturbs []func()
	for n := 0; n < 4 && !r.src.done(); n++ {
		k, arg := r.src.next(), r.src.next()
		perturbs = append(perturbs, racePerturbs[int(k)%len(racePerturbs)](r, arg))
	}
	fmt.Printf("racer: %d calls, %d rounds, %d perturbations, paths %q\n", len(calls), rounds, len(perturbs),
		[]string{string(r.bufs[0].one), string(r.bufs[0].two), string(r.bufs[1].one), string(r.bufs[1].two), string(r.bufs[2].one), string(r.bufs[2].two)})
	var stop atomic.Bool
	finished := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer close(finished)
		for !stop.Load() && len(perturbs) > 0 {
			for _, p := range perturbs {
				p()
			}
		}
	}()
	deadline := time.Now().Add(raceBudget)
rounds:
	for range rounds {
		for _, c := range calls {
			if time.Now().After(deadline) {
				break rounds
			}
			c.fn(r, c.b, c.c)
		}
	}
	stop.Store(true)
	<-finished
	return 0
}
