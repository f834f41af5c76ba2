package impl

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Instruction codes of the counted listings below.
const (
	insLd   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	insRet  = unix.BPF_RET | unix.BPF_K
	insJeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	insJge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	insJgt  = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
	insJset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	insRsh  = unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K
	insAnd  = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
)

// encodeBPF is the inverse of decodeBPF: struct sock_filter bytes, as the kernel reads them.
func encodeBPF(prog []unix.SockFilter) []byte {
	raw := make([]byte, 8*len(prog))
	for i, ins := range prog {
		b := raw[i*8:]
		binary.NativeEndian.PutUint16(b[0:], ins.Code)
		b[2], b[3] = ins.Jt, ins.Jf
		binary.NativeEndian.PutUint32(b[4:], ins.K)
	}
	return raw
}

// sameBPF fails t unless got is want byte for byte, naming the first instructions that differ.
func sameBPF(t *testing.T, name string, got, want []unix.SockFilter) {
	t.Helper()
	if bytes.Equal(encodeBPF(got), encodeBPF(want)) {
		return
	}
	if len(got) != len(want) {
		t.Errorf("%s: assembled %d instructions, the listing has %d", name, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: instruction %d is %+v, the listing says %+v", name, i, got[i], want[i])
		}
	}
}

// TestBPFBuilder pins what bpfBuilder assembles for every program written with it against
// listings whose offsets were counted by hand (an offset counts from the next instruction), so
// that the builder and the programs' labels are each checked by the other.
func TestBPFBuilder(t *testing.T) {
	t.Run("refuseOwnVfork", func(t *testing.T) {
		const lo, hi = 0x5555_5555_4000, 0x5555_5600_0000
		next := []unix.SockFilter{{Code: insRet, K: unix.SECCOMP_RET_KILL_PROCESS}} // stands for the table's program
		got, err := refuseOwnVfork(next, lo, hi)
		if err != nil {
			t.Fatal(err)
		}
		// Labels: clone3 = 12, refuse = 17, allow = 18, out = 19 (the first of next).
		want := []unix.SockFilter{
			/* 0 */ {Code: insLd, K: dataArch},
			/* 1 */ {Code: insJeq, K: auditArchNative, Jt: 0, Jf: 17}, // -> out
			/* 2 */ {Code: insLd, K: dataNr},
			/* 3 */ {Code: insJeq, K: unix.SYS_CLONE3, Jt: 8, Jf: 0}, // -> clone3
			/* 4 */ {Code: insJeq, K: unix.SYS_CLONE, Jt: 0, Jf: 14}, // -> out
			/* 5 */ {Code: insLd, K: dataIPHigh},
			/* 6 */ {Code: insJeq, K: lo >> 32, Jt: 0, Jf: 12}, // -> out
			/* 7 */ {Code: insLd, K: dataIPLow},
			/* 8 */ {Code: insJge, K: lo & 0xffff_ffff, Jt: 0, Jf: 10}, // -> out
			/* 9 */ {Code: insJgt, K: (hi - 1) & 0xffff_ffff, Jt: 9, Jf: 0}, // -> out
			/* 10 */ {Code: insLd, K: dataArg0Low},
			/* 11 */ {Code: insJset, K: unix.CLONE_VFORK, Jt: 5, Jf: 6}, // -> refuse, allow
			/* 12 clone3 */ {Code: insLd, K: dataIPHigh},
			/* 13 */ {Code: insJeq, K: lo >> 32, Jt: 0, Jf: 5}, // -> out
			/* 14 */ {Code: insLd, K: dataIPLow},
			/* 15 */ {Code: insJge, K: lo & 0xffff_ffff, Jt: 0, Jf: 3}, // -> out
			/* 16 */ {Code: insJgt, K: (hi - 1) & 0xffff_ffff, Jt: 2, Jf: 0}, // -> out, refuse
			/* 17 refuse */ {Code: insRet, K: unix.SECCOMP_RET_ERRNO | uint32(errVforkRefused)},
			/* 18 allow */ {Code: insRet, K: unix.SECCOMP_RET_ALLOW},
			/* 19 out */ next[0],
		}
		sameBPF(t, "refuseOwnVfork", got, want)
	})

	t.Run("ioctlPrefix", func(t *testing.T) {
		// 5 instructions, a jeq per passed command from 5, the type's two ALU instructions, a jeq
		// per type from 16, then allow = 29, notify = 30, out = 31.
		if len(ioctlPassed) != 9 || len(ioctlFSTypes) != 13 {
			t.Fatalf("the listing counts 9 passed commands and 13 types, not %d and %d: count again", len(ioctlPassed), len(ioctlFSTypes))
		}
		want := []unix.SockFilter{
			/* 0 */ {Code: insLd, K: dataArch},
			/* 1 */ {Code: insJeq, K: auditArchNative, Jt: 0, Jf: 29}, // -> out
			/* 2 */ {Code: insLd, K: dataNr},
			/* 3 */ {Code: insJeq, K: unix.SYS_IOCTL, Jt: 0, Jf: 27}, // -> out
			/* 4 */ {Code: insLd, K: dataArg1Low},
		}
		for i, c := range ioctlPassed { // at 5+i, to allow
			want = append(want, unix.SockFilter{Code: insJeq, K: c, Jt: uint8(29 - (5 + i) - 1)})
		}
		want = append(want,
			/* 14 */ unix.SockFilter{Code: insRsh, K: 8},
			/* 15 */ unix.SockFilter{Code: insAnd, K: 0xff})
		for i, typ := range ioctlFSTypes { // at 16+i, to notify
			want = append(want, unix.SockFilter{Code: insJeq, K: typ, Jt: uint8(30 - (16 + i) - 1)})
		}
		want = append(want,
			/* 29 allow */ unix.SockFilter{Code: insRet, K: unix.SECCOMP_RET_ALLOW},
			/* 30 notify */ unix.SockFilter{Code: insRet, K: unix.SECCOMP_RET_USER_NOTIF})
		sameBPF(t, "ioctlPrefix", ioctlPrefix(), want)
	})

	t.Run("bareFilter", func(t *testing.T) {
		// The benchmark's filter as it was written before the builder.
		want := []unix.SockFilter{
			{Code: insLd, K: 0}, // seccomp_data.nr
			{Code: insJeq, K: unix.SYS_OPENAT, Jt: 0, Jf: 1},
			{Code: insRet, K: unix.SECCOMP_RET_USER_NOTIF},
			{Code: insRet, K: unix.SECCOMP_RET_ALLOW},
		}
		sameBPF(t, "bareFilter", bareFilter(), want)
	})
}

// TestBPFBuilderRefuses: a program the builder cannot assemble as written is an error, never
// a jump somewhere else.
func TestBPFBuilderRefuses(t *testing.T) {
	for _, c := range []struct {
		name, want string
		build      func(b *bpfBuilder)
	}{
		{"undefined label", `"nowhere" not defined`, func(b *bpfBuilder) {
			b.jeq(1, "nowhere", "")
			b.ret(0)
		}},
		{"backward jump", `"back" is -2 instructions away`, func(b *bpfBuilder) {
			b.label("back")
			b.ld(dataNr)
			b.jeq(1, "", "back")
		}},
		{"jump too far", `"far" is 256 instructions away`, func(b *bpfBuilder) {
			b.jeq(1, "far", "")
			for range 256 {
				b.ret(0)
			}
			b.label("far")
		}},
		{"label twice", `"twice" defined twice`, func(b *bpfBuilder) {
			b.jeq(1, "twice", "")
			b.label("twice")
			b.ret(0)
			b.label("twice")
			b.ret(1)
		}},
	} {
		var b bpfBuilder
		c.build(&b)
		if _, err := b.program(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: program() = %v, want an error with %s", c.name, err, c.want)
		}
	}
	var b bpfBuilder
	b.jeq(1, "edge", "")
	for range 255 {
		b.ret(0)
	}
	b.label("edge")
	if prog, err := b.program(); err != nil {
		t.Errorf("a jump of 255 instructions: %v", err)
	} else if prog[0].Jt != 255 {
		t.Errorf("a jump of 255 instructions has offset %d", prog[0].Jt)
	}
}
