package vmtest

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Where things live inside the VM.
const (
	vmBinDir  = "/fsvirt/bin"
	vmSrcDir  = "/fsvirt/src" // the tree's copy when its host path is hidden by a mount
	vmOverlay = "/usr/lib/modules/overlay.ko"
	vmMain    = "/fsvirt/main/program" // Job.Main, which the go shim hands out
	vmGo      = "/usr/bin/go"
)

// mountedDirs are mounted over by init, so a package copy cannot live under them.
var mountedDirs = []string{"/proc", "/sys", "/dev", "/tmp", "/var/tmp", "/run"}

// mergedDirs are symlinks into /usr, as on Debian.
var mergedDirs = []string{"/bin", "/sbin", "/lib", "/lib64"}

// vmPath returns p with a leading merged directory replaced by its /usr twin: the image cannot
// hold entries below a symlink.
func vmPath(p string) string {
	for _, d := range mergedDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return "/usr" + p
		}
	}
	return p
}

// image describes an initramfs for one job.
type image struct {
	busybox string // host path of a static busybox
	overlay string // host path of overlay.ko, or ""
	job     Job
	nonce   string
}

// root returns the host directory copied into the VM: Job.Root, else Job.Dir.
func (im *image) root() string {
	if im.job.Root != "" {
		return im.job.Root
	}
	return im.job.Dir
}

// vmRoot returns where the copied tree lives inside the VM: its host path, unless a mount
// made by init would hide it.
func (im *image) vmRoot() string {
	dir := filepath.ToSlash(im.root())
	for _, m := range mountedDirs {
		if dir == m || strings.HasPrefix(dir, m+"/") {
			return vmSrcDir
		}
	}
	return dir
}

// vmDir returns the job's working directory inside the VM.
func (im *image) vmDir() (string, error) {
	if im.job.Dir == "" {
		return "/", nil
	}
	rel, err := filepath.Rel(im.root(), im.job.Dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("initramfs: the job's directory %s is not under its root %s", im.job.Dir, im.root())
	}
	return path.Join(im.vmRoot(), filepath.ToSlash(rel)), nil
}

// write writes the initramfs as a newc cpio archive.
func (im *image) write(w io.Writer) error {
	c := newCpioWriter(w)
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/root", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", "/etc"} {
		c.Dir(d, 0o755)
	}
	// Debian's merged /usr, so that host programs and their loader find their paths.
	for _, d := range mergedDirs {
		c.Symlink(d, "usr"+d)
	}
	for _, d := range []string{"/tmp", "/var/tmp"} {
		c.Dir(d, 0o1777)
	}
	// The kernel opens /dev/console for init before devtmpfs is mounted.
	c.CharDev("/dev/console", 0o600, 5, 1)
	c.Bytes("/etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
	c.Bytes("/etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n")
	c.Bytes("/etc/hostname", 0o644, "vmtest\n") // tests use it as a file every Debian system has
	c.Bytes("/init", 0o755, im.initScript())
	if err := addFile(c, "/usr/bin/busybox", im.busybox); err != nil {
		return err
	}
	tools, err := hostTools(im.job.Tools)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	for _, e := range tools {
		if e.target != "" {
			c.Symlink(vmPath(e.name), e.target)
		} else if err := addFile(c, vmPath(e.name), e.src); err != nil {
			return err
		}
	}
	if im.overlay != "" {
		if err := addFile(c, vmOverlay, im.overlay); err != nil {
			return err
		}
	}
	if err := addFile(c, path.Join(vmBinDir, filepath.Base(im.job.Binary)), im.job.Binary); err != nil {
		return err
	}
	if im.job.Main != "" {
		if err := addFile(c, vmMain, im.job.Main); err != nil {
			return err
		}
		c.Bytes(vmGo, 0o755, goShim)
	}
	if im.root() != "" {
		if _, err := im.vmDir(); err != nil {
			return err
		}
		if err := addTree(c, im.vmRoot(), im.root(), im.job.Root == ""); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// addFile copies the host file src to name, keeping its permission bits.
func addFile(c *cpioWriter, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("initramfs: %s is not a regular file", src)
	}
	c.File(name, st.Mode(), st.Size(), f)
	return nil
}

// maxTree bounds the bytes addTree copies: the initramfs is unpacked into the VM's memory.
const maxTree = 256 << 20

// addTree copies the host tree src to dst: directories, regular files and symlinks, less .git
// directories. With shallow, only the files at the top of src and its testdata/ tree: a package
// directory outside a module.
func addTree(c *cpioWriter, dst, src string, shallow bool) error {
	var total int64
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(dst, filepath.ToSlash(rel))
		switch {
		case d.IsDir() && d.Name() == ".git":
			return filepath.SkipDir
		case d.IsDir() && shallow && rel != "." && !strings.HasPrefix(filepath.ToSlash(rel), "testdata"):
			return filepath.SkipDir
		case d.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			c.Dir(name, info.Mode())
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			c.Symlink(name, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			if total += info.Size(); total > maxTree {
				return fmt.Errorf("more than %d MiB under %s", maxTree>>20, src)
			}
			return addFile(c, name, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("initramfs: copy of %s: %w", src, err)
	}
	return nil
}
