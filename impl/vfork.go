package impl

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A function in thread mode must not start a process with os/exec (or os.StartProcess, or
// syscall.ForkExec): it would deadlock the whole program now and then. Go starts processes with
// vfork, and the forking thread keeps its P, the runtime's right to run Go code, until the child
// has exec'd. The child's execve is a notification, which waits for the supervisor, a goroutine:
// when a garbage collection stops the world in that window, it waits for that P forever, and the
// supervisor, stopped with the world, never answers. With GOMAXPROCS 1 the supervisor never runs
// at all. Measured before this rule: 200 exec.Command("/bin/true").Run() in Invoke hung the
// program in 6 of 10 runs, and in every run with GOMAXPROCS 1.
//
// So the worker threads' filter refuses, with ENOTSUP, a clone with CLONE_VFORK (and any clone3,
// whose flags the filter cannot read) made from this program's own code: that is Go's vfork. The
// function gets "fork/exec ...: operation not supported" at once instead of a hang, and starts
// processes with Invocation.Start, from a thread without the filter. Descendants that run other
// programs keep their vfork: only this program's threads share the runtime with the supervisor.
// A descendant that runs this same program (without Start) finds it refused too, where the
// addresses match.

// errVforkRefused is the errno a worker's vfork gets.
const errVforkRefused = unix.ENOTSUP

// Offsets in struct seccomp_data, and the words a classic BPF load reads there (little endian).
const (
	dataNr      = 0
	dataArch    = 4
	dataIPLow   = 8
	dataIPHigh  = 12
	dataArg0Low = 16
)

// auditArchNative is seccomp_data.arch of this program's syscalls.
const auditArchNative = 0xc000003e // AUDIT_ARCH_X86_64: the table and the filter are amd64's

// textRange returns the bounds of the executable mapping that holds this program's Go code.
func textRange() (lo, hi uint64, err error) {
	pc := uint64(reflect.ValueOf(syscall.StartProcess).Pointer())
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || !strings.Contains(fields[1], "x") {
			continue
		}
		from, to, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(from, 16, 64)
		b, err2 := strconv.ParseUint(to, 16, 64)
		if err1 == nil && err2 == nil && a <= pc && pc < b {
			return a, b, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	return 0, 0, fmt.Errorf("no executable mapping in /proc/self/maps holds %#x", pc)
}

// workerFilter is the program a worker thread loads: the table's, behind refuseOwnVfork.
func workerFilter() ([]unix.SockFilter, error) {
	prog, err := compiledFilter()
	if err != nil {
		return nil, err
	}
	lo, hi, err := textRange()
	if err != nil {
		return nil, fmt.Errorf("find this program's code: %w", err)
	}
	return refuseOwnVfork(prog, lo, hi)
}

// refuseOwnVfork returns prog with a prefix that answers ENOTSUP to clone with CLONE_VFORK, and
// to clone3, when the syscall instruction lies in [lo, hi), and runs prog for everything else.
func refuseOwnVfork(prog []unix.SockFilter, lo, hi uint64) ([]unix.SockFilter, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("thread mode knows the clone flags of amd64 only, not %s", runtime.GOARCH)
	}
	if lo >= hi || lo>>32 != (hi-1)>>32 {
		return nil, fmt.Errorf("program text %#x-%#x: empty or across a 4 GiB boundary", lo, hi)
	}
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jgt = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
		jst = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	// Jump offsets count from the next instruction; "out" is the first instruction of prog.
	pre := []unix.SockFilter{
		/* 0 */ {Code: ld, K: dataArch},
		/* 1 */ {Code: jeq, K: auditArchNative, Jt: 0, Jf: 11}, // -> out
		/* 2 */ {Code: ld, K: dataNr},
		/* 3 */ {Code: jeq, K: unix.SYS_CLONE3, Jt: 3, Jf: 0}, // -> 7: its flags are in memory
		/* 4 */ {Code: jeq, K: unix.SYS_CLONE, Jt: 0, Jf: 8}, // -> out
		/* 5 */ {Code: ld, K: dataArg0Low},
		/* 6 */ {Code: jst, K: unix.CLONE_VFORK, Jt: 0, Jf: 6}, // -> out
		/* 7 */ {Code: ld, K: dataIPHigh},
		/* 8 */ {Code: jeq, K: uint32(lo >> 32), Jt: 0, Jf: 4}, // -> out
		/* 9 */ {Code: ld, K: dataIPLow},
		/* 10 */ {Code: jge, K: uint32(lo), Jt: 0, Jf: 2}, // -> out
		/* 11 */ {Code: jgt, K: uint32(hi - 1), Jt: 1, Jf: 0}, // -> out
		/* 12 */ {Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(errVforkRefused)},
	}
	return append(pre, prog...), nil
}

// warmPidfd makes the os package decide, once, whether pidfds work, from an unfiltered thread:
// it finds out with a vfork of its own, which a worker's filter would refuse, and would then do
// without pidfds for the rest of the program.
func warmPidfd() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		p.Release()
	}
}
