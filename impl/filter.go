package impl

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

var (
	filterOnce sync.Once
	filterProg []unix.SockFilter
	filterErr  error
)

// compiledFilter returns the BPF program built from the syscall table, compiled once per process.
func compiledFilter() ([]unix.SockFilter, error) {
	filterOnce.Do(func() { filterProg, filterErr = compileFilter() })
	return filterProg, filterErr
}

// compileFilter builds the filter with libseccomp and exports it as raw BPF. libseccomp keeps a
// single listener per process (KERNEL.md, trap 1), so fsvirt loads the exported program itself,
// once per worker thread or invocation process.
func compileFilter() ([]unix.SockFilter, error) {
	f, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return nil, fmt.Errorf("libseccomp: new filter: %w", err)
	}
	defer f.Release()
	if err := f.SetBadArchAction(seccomp.ActErrno.SetReturnCode(int16(errnoBadArch))); err != nil {
		return nil, fmt.Errorf("libseccomp: bad-arch action: %w", err)
	}
	for _, e := range table {
		var act seccomp.ScmpAction
		switch e.handling {
		case Passed:
			continue
		case Virtualized:
			act = seccomp.ActNotify
		case Denied:
			act = seccomp.ActErrno.SetReturnCode(int16(e.errno))
		}
		if err := f.AddRule(seccomp.ScmpSyscall(e.nr), act); err != nil {
			return nil, fmt.Errorf("libseccomp: rule for %s: %w", e.name, err)
		}
	}
	fd, err := unix.MemfdCreate("fsvirt-filter", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	mf := os.NewFile(uintptr(fd), "fsvirt-filter")
	defer mf.Close()
	if err := f.ExportBPF(mf); err != nil {
		return nil, fmt.Errorf("libseccomp: export BPF: %w", err)
	}
	raw, err := io.ReadAll(io.NewSectionReader(mf, 0, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read exported BPF: %w", err)
	}
	return decodeBPF(raw)
}

// decodeBPF turns exported struct sock_filter bytes (8 bytes each, native endian) into instructions.
func decodeBPF(raw []byte) ([]unix.SockFilter, error) {
	if len(raw) == 0 || len(raw)%8 != 0 {
		return nil, fmt.Errorf("[bug] exported BPF has %d bytes, not a positive multiple of 8", len(raw))
	}
	prog := make([]unix.SockFilter, len(raw)/8)
	for i := range prog {
		b := raw[i*8:]
		prog[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:]),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:]),
		}
	}
	return prog, nil
}
