//go:build fsvirt_libseccomp

package impl

import (
	"fmt"
	"io"
	"os"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// CompileFilterBPF compiles the syscall table with libseccomp and returns the raw BPF program (struct
// sock_filter, native endian). It exists for genfilter and TestFilterUpToDate only; the engine loads
// the program compiled ahead of time (zfilter.go). Built with -tags fsvirt_libseccomp, which needs
// cgo and libseccomp-dev.
func CompileFilterBPF() ([]byte, error) {
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
	if _, err := decodeBPF(raw); err != nil {
		return nil, err
	}
	return raw, nil
}
