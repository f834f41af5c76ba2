package oracle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// ErrNotSupported is wrapped by errors about what this kernel or the caller's
// privileges do not allow.
var ErrNotSupported = errors.New("not supported")

// NewOverlay returns an oracle that serves each invocation from a kernel
// overlayfs mount under tmp, with shared as the lower layer and an empty
// upper layer of its own. It needs root (CAP_SYS_ADMIN); see [HaveOverlay].
func NewOverlay(shared, tmp string) *Oracle {
	o := &Oracle{shared: shared, tmp: tmp, invs: map[fsvirt.Inv]*session{}, overlay: true}
	o.layout = func(dir string) (string, error) {
		upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
		for _, d := range []string{upper, work, merged} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return "", err
			}
		}
		// The overlay root takes the upper root's mode: make it the lower's.
		info, err := os.Stat(shared)
		if err == nil {
			err = os.Chmod(upper, info.Mode().Perm())
		}
		if err != nil {
			return "", err
		}
		return merged, mount(shared, upper, work, merged)
	}
	o.unlayout = func(dir string) error {
		if err := unix.Unmount(filepath.Join(dir, "merged"), 0); err != nil {
			return &os.PathError{Op: "umount", Path: filepath.Join(dir, "merged"), Err: err}
		}
		return nil
	}
	return o
}

// mount mounts an overlay with redirect_dir=on, without which renaming a
// directory of the lower layer fails with EXDEV.
func mount(lower, upper, work, merged string) error {
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + ",redirect_dir=on"
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return &os.PathError{Op: "mount overlay", Path: merged, Err: err}
	}
	return nil
}

// HaveOverlay reports whether this process can mount overlayfs (Linux 3.18,
// commit e9be9d5e76e3) and open O_TMPFILE files on it (Linux 6.6), which the
// model's view allows. The error wraps [ErrNotSupported] when the kernel
// lacks either or the caller lacks the privilege.
var HaveOverlay = sync.OnceValue(func() error {
	dir, err := os.MkdirTemp("", "fsvirt-overlay-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o := NewOverlay(filepath.Join(dir, "lower"), filepath.Join(dir, "tmp"))
	for _, d := range []string{o.shared, o.tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := o.Begin(0); err != nil {
		if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EPERM) {
			return fmt.Errorf("overlayfs: %w: %w", ErrNotSupported, err)
		}
		return err
	}
	tmpfile := o.Do(0, fsvirt.Op{Kind: fsvirt.OpOpen, Dirfd: fsvirt.AtCWD, Path: "/", Flags: unix.O_TMPFILE | unix.O_RDWR, Mode: 0o600})
	if err := o.End(0); err != nil {
		return err
	}
	if tmpfile.Errno == unix.EOPNOTSUPP {
		return fmt.Errorf("overlayfs: O_TMPFILE: %w (Linux 6.6): %w", ErrNotSupported, tmpfile.Errno)
	}
	return nil
})
