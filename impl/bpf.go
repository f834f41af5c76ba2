package impl

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// bpfBuilder assembles classic BPF with named jump targets, so that no offset is counted by hand:
// the filter's prefixes (ioctlPrefix, refuseOwnVfork) are written with it. A label names the next
// instruction, which may be the first one after the program (the code a prefix goes on to); a
// jump to "" falls through. TestBPFBuilder pins what it assembles against counted listings.
type bpfBuilder struct {
	prog   []unix.SockFilter
	labels map[string]int
	fixups []fixup
	// twice is a label defined a second time, which program reports: every jump to it would go
	// to the last definition, silently.
	twice string
}

// fixup is a jump whose offsets program fills in once every label is known.
type fixup struct {
	at     int
	jt, jf string
}

func (b *bpfBuilder) emit(ins unix.SockFilter) { b.prog = append(b.prog, ins) }

func (b *bpfBuilder) ld(off uint32) {
	b.emit(unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off})
}

func (b *bpfBuilder) alu(op uint16, k uint32) {
	b.emit(unix.SockFilter{Code: unix.BPF_ALU | op | unix.BPF_K, K: k})
}

func (b *bpfBuilder) ret(k uint32) { b.emit(unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k}) }

func (b *bpfBuilder) jeq(k uint32, jt, jf string) { b.jump(unix.BPF_JEQ, k, jt, jf) }

func (b *bpfBuilder) jset(k uint32, jt, jf string) { b.jump(unix.BPF_JSET, k, jt, jf) }

func (b *bpfBuilder) jump(op uint16, k uint32, jt, jf string) {
	b.fixups = append(b.fixups, fixup{at: len(b.prog), jt: jt, jf: jf})
	b.emit(unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, K: k})
}

func (b *bpfBuilder) label(name string) {
	if b.labels == nil {
		b.labels = map[string]int{}
	}
	if _, ok := b.labels[name]; ok && b.twice == "" {
		b.twice = name
	}
	b.labels[name] = len(b.prog)
}

// program resolves the jumps: forward only, at most 255 instructions, as classic BPF allows.
func (b *bpfBuilder) program() ([]unix.SockFilter, error) {
	if b.twice != "" {
		return nil, fmt.Errorf("[bug] BPF label %q defined twice", b.twice)
	}
	off := func(at int, name string) (uint8, error) {
		if name == "" {
			return 0, nil
		}
		to, ok := b.labels[name]
		if !ok {
			return 0, fmt.Errorf("[bug] BPF label %q not defined", name)
		}
		d := to - at - 1
		if d < 0 || d > 255 {
			return 0, fmt.Errorf("[bug] BPF jump to %q is %d instructions away", name, d)
		}
		return uint8(d), nil
	}
	for _, f := range b.fixups {
		jt, err := off(f.at, f.jt)
		if err != nil {
			return nil, err
		}
		jf, err := off(f.at, f.jf)
		if err != nil {
			return nil, err
		}
		b.prog[f.at].Jt, b.prog[f.at].Jf = jt, jf
	}
	return b.prog, nil
}
