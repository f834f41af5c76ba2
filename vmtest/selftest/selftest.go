// Package selftest is the VM harness's own test package: its tests check, inside the VM, what
// the engine's tests rely on (the booted kernel, seccomp, a static cgo build with libseccomp,
// overlayfs, the package directory) and print fsvirt-probe lines as the engine's tests do.
package selftest

// #include <unistd.h>
import "C"

// Getpid returns the process id through the C library, so the test binary needs cgo.
func Getpid() int {
	return int(C.getpid())
}
