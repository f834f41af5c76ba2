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

// auditArchNative is seccomp_data.arch of this program's syscalls
// (docs/kernel.md, "Paths the filter never sees").
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
	var b bpfBuilder
	b.ld(dataArch)
	b.jeq(auditArchNative, "", "out")
	b.ld(dataNr)
	b.jeq(unix.SYS_CLONE3, "clone3", "") // its flags are in memory: refused from this program
	b.jeq(unix.SYS_CLONE, "", "out")
	b.ld(dataIPHigh)
	b.jeq(uint32(lo>>32), "", "out")
	b.ld(dataIPLow)
	b.jump(unix.BPF_JGE, uint32(lo), "", "out")
	b.jump(unix.BPF_JGT, uint32(hi-1), "out", "")
	// This program's own clone: a vfork is refused; a fork (a raw one a function makes) or a
	// thread passes.
	b.ld(dataArg0Low)
	b.jset(unix.CLONE_VFORK, "refuse", "allow")
	b.label("clone3")
	b.ld(dataIPHigh)
	b.jeq(uint32(lo>>32), "", "out")
	b.ld(dataIPLow)
	b.jump(unix.BPF_JGE, uint32(lo), "", "out")
	b.jump(unix.BPF_JGT, uint32(hi-1), "out", "refuse")
	b.label("refuse")
	b.ret(unix.SECCOMP_RET_ERRNO | uint32(errVforkRefused))
	b.label("allow")
	b.ret(unix.SECCOMP_RET_ALLOW)
	b.label("out")
	pre, err := b.program()
	if err != nil {
		return nil, err
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
