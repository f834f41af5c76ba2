package impl

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Architecture tokens of struct seccomp_data.arch.
const (
	auditArchX8664 = 0xc000003e
	auditArchI386  = 0x40000003
	x32SyscallBit  = 0x40000000
)

// filterVM loads the compiled filter into x/net/bpf's interpreter.
func filterVM(t *testing.T) *bpf.VM {
	t.Helper()
	prog, err := compiledFilter()
	if err != nil {
		t.Fatal(err)
	}
	return bpfVM(t, prog)
}

// bpfVM loads a seccomp program into x/net/bpf's interpreter.
func bpfVM(t *testing.T, prog []unix.SockFilter) *bpf.VM {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(prog))
	for i, ins := range prog {
		raw[i] = bpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("filter contains instructions x/net/bpf cannot disassemble")
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// seccompData encodes struct seccomp_data for the interpreter. x/net/bpf loads words big-endian,
// where the kernel loads them in native order, so each 32-bit field is stored big-endian here.
func seccompData(nr int, arch uint32) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], uint32(nr))
	binary.BigEndian.PutUint32(b[4:], arch)
	return b
}

func runFilter(t *testing.T, vm *bpf.VM, nr int, arch uint32) uint32 {
	t.Helper()
	ret, err := vm.Run(seccompData(nr, arch))
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

// runFilterArg runs the filter on syscall nr with the low word of args[1] set to arg1.
func runFilterArg(t *testing.T, vm *bpf.VM, nr int, arch, arg1 uint32) uint32 {
	t.Helper()
	b := seccompData(nr, arch)
	binary.BigEndian.PutUint32(b[dataArg1Low:], arg1)
	ret, err := vm.Run(b)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

func retErrno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

func TestFilterDecisions(t *testing.T) {
	vm := filterVM(t)
	for _, e := range table {
		var want uint32
		switch e.handling {
		case Virtualized:
			want = unix.SECCOMP_RET_USER_NOTIF
		case Denied:
			want = retErrno(e.errno)
		case Passed:
			want = unix.SECCOMP_RET_ALLOW
		}
		var arg1 uint32
		if e.nr == unix.SYS_IOCTL { // notified by command only (TestIoctlFilter)
			arg1 = fsIocSetflags
		}
		if got := runFilterArg(t, vm, e.nr, auditArchX8664, arg1); got != want {
			t.Errorf("%s (%d): filter returns %#x, want %#x (%s); if the table changed, run go generate ./impl",
				e.name, e.nr, got, want, e.handling)
		}
	}
	// Every syscall the table does not list is allowed: the generated program has no stale rule.
	for nr := range 1024 {
		if byNr[nr] != nil {
			continue
		}
		if got := runFilter(t, vm, nr, auditArchX8664); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("syscall %d is not in the table, but the filter returns %#x; run go generate ./impl", nr, got)
		}
	}
	for _, c := range []struct {
		name string
		nr   int
		arch uint32
		want uint32
	}{
		{"read-not-listed", unix.SYS_READ, auditArchX8664, unix.SECCOMP_RET_ALLOW},
		{"close-not-listed", unix.SYS_CLOSE, auditArchX8664, unix.SECCOMP_RET_ALLOW},
		{"i386-open", 5, auditArchI386, retErrno(errnoBadArch)},
		{"i386-read", 3, auditArchI386, retErrno(errnoBadArch)},
		{"x32-openat", x32SyscallBit | unix.SYS_OPENAT, auditArchX8664, retErrno(errnoBadArch)},
		{"x32-read", x32SyscallBit | unix.SYS_READ, auditArchX8664, retErrno(errnoBadArch)},
	} {
		if got := runFilter(t, vm, c.nr, c.arch); got != c.want {
			t.Errorf("%s: filter returns %#x, want %#x", c.name, got, c.want)
		}
	}
}

func TestSyscallTableRequired(t *testing.T) {
	want := map[string]Handling{
		"open": Virtualized, "openat": Virtualized, "openat2": Virtualized, "creat": Virtualized,
		"io_uring_setup": Denied, "open_by_handle_at": Denied, "name_to_handle_at": Denied,
	}
	for _, s := range Syscalls() {
		if h, ok := want[s.Name]; ok {
			if s.Handling != h.String() {
				t.Errorf("%s is %s, want %s", s.Name, s.Handling, h)
			}
			delete(want, s.Name)
		}
	}
	for name := range want {
		t.Errorf("%s missing from the syscall table", name)
	}
}
