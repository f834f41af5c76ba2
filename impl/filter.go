package impl

import (
	"encoding/binary"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

//go:generate go run -tags fsvirt_libseccomp ./internal/genfilter -o zfilter.go

var (
	filterOnce sync.Once
	filterProg []unix.SockFilter
	filterErr  error
)

// compiledFilter returns the BPF program libseccomp compiled from the syscall table, behind the
// prefix that decides ioctl by command (ioctlPrefix).
//
// The program is compiled ahead of time, by `go generate ./impl` (genfilter, with libseccomp), into
// zfilter.go, so that fsvirt builds without cgo or libseccomp and links statically.
// TestFilterDecisions runs the program against every row of the table and every other syscall
// number, so a table change without a regenerated program fails the tests; with -tags
// fsvirt_libseccomp, TestFilterUpToDate also compares it byte for byte with what the installed
// libseccomp compiles now.
//
// libseccomp keeps a single listener per process (docs/kernel.md, "One listener per filter"), so
// fsvirt loads the program itself, once per worker thread or invocation process.
func compiledFilter() ([]unix.SockFilter, error) {
	filterOnce.Do(func() {
		prog, err := decodeBPF(filterBPF)
		if err == nil {
			prog = append(ioctlPrefix(), prog...)
		}
		filterProg, filterErr = prog, err
	})
	return filterProg, filterErr
}

// decodeBPF turns exported struct sock_filter bytes (8 bytes each, native endian) into
// instructions.
func decodeBPF(raw []byte) ([]unix.SockFilter, error) {
	if len(raw) == 0 || len(raw)%8 != 0 {
		return nil, fmt.Errorf("[bug] exported BPF has %d bytes, not a positive multiple of 8",
			len(raw))
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
