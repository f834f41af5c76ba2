package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/fsvirt/fsvirt/internal/notify"
)

// Host is what decides whether a mode can run here: probed once by ProbeHost, and built by hand
// in tests.
type Host struct {
	Root          bool   // effective uid 0: chroot and mounts
	Seccomp       error  // why fsvirt cannot run on this kernel, or nil
	Filesystems   string // the content of /proc/filesystems
	FuseOverlayfs string // path of the fuse-overlayfs binary, or ""
	DevFuse       error  // why /dev/fuse cannot be opened, or nil
}

// ProbeHost looks at the running system.
func ProbeHost() Host {
	h := Host{Root: os.Geteuid() == 0, Seccomp: notify.Require()}
	if h.Seccomp == nil {
		h.Seccomp = notify.ProbeError()
	}
	if b, err := os.ReadFile("/proc/filesystems"); err == nil {
		h.Filesystems = string(b)
	}
	h.FuseOverlayfs, _ = exec.LookPath("fuse-overlayfs")
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		h.DevFuse = err
	} else {
		f.Close()
	}
	return h
}

// hasFilesystem reports whether /proc/filesystems lists name.
func (h Host) hasFilesystem(name string) bool {
	for _, line := range strings.Split(h.Filesystems, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

var errNeedRoot = errors.New("needs root")

func checkNone(Host) error { return nil }

func checkChroot(h Host) error {
	if !h.Root {
		return fmt.Errorf("chroot(2) %w (CAP_SYS_CHROOT)", errNeedRoot)
	}
	return nil
}

func checkFsvirt(h Host) error {
	if h.Seccomp != nil {
		return fmt.Errorf("fsvirt cannot run here: %w", h.Seccomp)
	}
	return nil
}

func checkOverlayfs(h Host) error {
	if !h.Root {
		return fmt.Errorf("mounting overlayfs in a new mount namespace %w (CAP_SYS_ADMIN)", errNeedRoot)
	}
	if !h.hasFilesystem("overlay") {
		return errors.New("the kernel has no overlay file system (/proc/filesystems; try modprobe overlay)")
	}
	return nil
}

func checkFuseOverlayfs(h Host) error {
	if h.FuseOverlayfs == "" {
		return errors.New("fuse-overlayfs is not installed (apt-get install fuse-overlayfs)")
	}
	if h.DevFuse != nil {
		return fmt.Errorf("cannot use FUSE: %w", h.DevFuse)
	}
	if !h.Root {
		return fmt.Errorf("mounting with fuse-overlayfs per invocation %w here (no user namespace set-up)", errNeedRoot)
	}
	return nil
}
