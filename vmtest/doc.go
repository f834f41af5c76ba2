// Package vmtest runs a statically linked test binary as root inside a Debian kernel booted
// under QEMU, so that the engine's tests can be checked against the kernels fsvirt supports
// (5.10, 6.1, 6.12) on a machine that runs another one.
//
// A [Machine] boots the kernel with an initramfs that holds busybox, an init script, the
// kernel's overlay module, the binary and a copy of its package directory (top-level files and
// testdata/), mirrored at the same path as on the host because go test runs a test binary in
// its package directory. The binary's stdout and stderr come back over the second and third
// serial ports (Debian's cloud kernels have no 9p), each closed by a marker line carrying a
// per-run nonce; the stdout marker also carries the exit status. The kernel console goes to
// the first serial port.
//
// The binary must be static: build it with
//
//	go test -c -tags osusergo,netgo -ldflags '-linkmode external -extldflags "-static"'
//
// vmtest/cmd/vmexec wraps a Machine as a go test -exec program, and scripts/vmtest.sh runs
// the whole kernel matrix; docs/vmtest.md describes both.
package vmtest
