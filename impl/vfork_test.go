package impl

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// seccompCall encodes struct seccomp_data with an instruction pointer and a first argument, for
// x/net/bpf's interpreter (each 32-bit word big-endian: see seccompData).
func seccompCall(nr int, arch uint32, ip, arg0 uint64) []byte {
	b := seccompData(nr, arch)
	binary.BigEndian.PutUint32(b[dataIPLow:], uint32(ip))
	binary.BigEndian.PutUint32(b[dataIPHigh:], uint32(ip>>32))
	binary.BigEndian.PutUint32(b[dataArg0Low:], uint32(arg0))
	binary.BigEndian.PutUint32(b[dataArg0Low+4:], uint32(arg0>>32))
	return b
}

// TestRefuseOwnVforkFilter runs the worker's filter, prefix included, in an interpreter: only a
// vfork (or any clone3) from the program's text is refused, and everything else is decided as the
// table says.
func TestRefuseOwnVforkFilter(t *testing.T) {
	base, err := compiledFilter()
	if err != nil {
		t.Fatal(err)
	}
	const lo, hi = 0x5555_5555_4000, 0x5555_5600_0000
	prog, err := refuseOwnVfork(base, lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	vm := bpfVM(t, prog)
	const (
		vfork   = unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD)
		thread  = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD
		refused = unix.SECCOMP_RET_ERRNO | uint32(errVforkRefused)
		// Anything else goes on to the table's filter, which passes clone and clone3.
		passed = unix.SECCOMP_RET_ALLOW
	)
	for _, c := range []struct {
		name string
		nr   int
		arch uint32
		ip   uint64
		arg0 uint64
		want uint32
	}{
		{"vfork in text", unix.SYS_CLONE, auditArchX8664, lo + 0x100, vfork, refused},
		{"vfork at text start", unix.SYS_CLONE, auditArchX8664, lo, vfork, refused},
		{"vfork at text end", unix.SYS_CLONE, auditArchX8664, hi - 1, vfork, refused},
		{"vfork with pidfd", unix.SYS_CLONE, auditArchX8664, lo + 8, vfork | unix.CLONE_PIDFD, refused},
		{"vfork before text", unix.SYS_CLONE, auditArchX8664, lo - 1, vfork, passed},
		{"vfork after text", unix.SYS_CLONE, auditArchX8664, hi, vfork, passed},
		{"vfork, other high word", unix.SYS_CLONE, auditArchX8664, lo + 0x100 + 1<<32, vfork, passed},
		{"vfork, other low word", unix.SYS_CLONE, auditArchX8664, lo&^0xffff_ffff + 0x100, vfork, passed},
		{"thread in text", unix.SYS_CLONE, auditArchX8664, lo + 0x100, thread, unix.SECCOMP_RET_ALLOW},
		{"fork in text", unix.SYS_CLONE, auditArchX8664, lo + 0x100, uint64(unix.SIGCHLD), unix.SECCOMP_RET_ALLOW},
		{"clone3 in text", unix.SYS_CLONE3, auditArchX8664, lo + 0x100, 0, refused},
		{"clone3 elsewhere", unix.SYS_CLONE3, auditArchX8664, hi + 0x100, 0, passed},
		{"openat in text", unix.SYS_OPENAT, auditArchX8664, lo + 0x100, vfork, unix.SECCOMP_RET_USER_NOTIF},
		{"read in text", unix.SYS_READ, auditArchX8664, lo + 0x100, vfork, unix.SECCOMP_RET_ALLOW},
		{"i386 clone", 120, auditArchI386, lo + 0x100, vfork, retErrno(errnoBadArch)},
	} {
		got, err := vm.Run(seccompCall(c.nr, c.arch, c.ip, c.arg0))
		if err != nil {
			t.Fatal(err)
		}
		if uint32(got) != c.want {
			t.Errorf("%s: filter returns %#x, want %#x", c.name, got, c.want)
		}
	}
	if _, err := refuseOwnVfork(base, 0xffff_f000, 0x1_0000_1000); err == nil {
		t.Error("a text range across a 4 GiB boundary was accepted")
	}
}

// TestTextRange: the range found holds this program's Go code.
func TestTextRange(t *testing.T) {
	lo, hi, err := textRange()
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range []uintptr{funcPC(TestTextRange), funcPC(exec.Command), funcPC(unix.Exec)} {
		if uint64(pc) < lo || uint64(pc) >= hi {
			t.Errorf("code at %#x outside the text range %#x-%#x", pc, lo, hi)
		}
	}
}

func funcPC(f any) uintptr { return reflect.ValueOf(f).Pointer() }

// TestSupervisorExecFromFunctionRefused: os/exec on a worker thread fails at once with ENOTSUP,
// under the conditions in which it used to hang the whole program; from another goroutine it still
// works.
func TestSupervisorExecFromFunctionRefused(t *testing.T) {
	gcPressure(t)
	p, _ := newTestPool(t, 1, t.TempDir())
	for i := range 20 {
		err := p.Invoke(context.Background(), func(*Invocation) error {
			err := exec.Command("/bin/true").Run()
			if !errors.Is(err, unix.ENOTSUP) {
				t.Errorf("exec.Command on the worker: %v, want ENOTSUP", err)
			}
			_, err = os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
			if !errors.Is(err, unix.ENOTSUP) {
				t.Errorf("os.StartProcess on the worker: %v, want ENOTSUP", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(i, err)
		}
	}
	if err := exec.Command("/bin/true").Run(); err != nil {
		t.Errorf("exec.Command outside the pool: %v", err)
	}
}
