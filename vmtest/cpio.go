package vmtest

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"syscall"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks as an initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst). Parent directories are
// emitted before their entries, since the kernel does not create them.
type cpioWriter struct {
	w    io.Writer
	ino  int
	dirs map[string]bool
	err  error
}

func newCpioWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, dirs: map[string]bool{"": true, ".": true, "/": true}}
}

// Dir adds the directory name and its parents.
func (c *cpioWriter) Dir(name string, perm fs.FileMode) {
	name = strings.Trim(path.Clean(name), "/")
	if c.dirs[name] {
		return
	}
	c.Dir(path.Dir(name), 0o755)
	c.dirs[name] = true
	c.header(name, syscall.S_IFDIR|uint32(perm.Perm()), 0, 0)
}

// File adds a regular file of size bytes read from r.
func (c *cpioWriter) File(name string, perm fs.FileMode, size int64, r io.Reader) {
	name = c.parent(name)
	c.header(name, syscall.S_IFREG|uint32(perm.Perm()), size, 0)
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("%s: short read: %d of %d bytes", name, n, size)
	}
	c.fail(err)
	c.pad(size)
}

// Bytes adds a regular file holding data.
func (c *cpioWriter) Bytes(name string, perm fs.FileMode, data string) {
	c.File(name, perm, int64(len(data)), strings.NewReader(data))
}

// Symlink adds name pointing to target.
func (c *cpioWriter) Symlink(name, target string) {
	name = c.parent(name)
	c.header(name, syscall.S_IFLNK|0o777, int64(len(target)), 0)
	c.write(target)
	c.pad(int64(len(target)))
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm fs.FileMode, major, minor uint32) {
	name = c.parent(name)
	c.header(name, syscall.S_IFCHR|uint32(perm.Perm()), 0, major<<8|minor)
}

// Close writes the trailer and returns the first error met.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 0)
	return c.err
}

func (c *cpioWriter) parent(name string) string {
	name = strings.Trim(path.Clean(name), "/")
	c.Dir(path.Dir(name), 0o755)
	return name
}

// header writes one entry header; rdev packs the major number above the low 8 bits.
func (c *cpioWriter) header(name string, mode uint32, size int64, rdev uint32) {
	c.ino++
	nlink := 1
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	c.write(fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%s\x00",
		c.ino, mode, 0 /* uid */, 0 /* gid */, nlink, 0 /* mtime */, size,
		0 /* devmajor */, 0 /* devminor */, rdev>>8, rdev&0xff, len(name)+1, 0 /* check */, name))
	c.pad(int64(110 + len(name) + 1))
}

func (c *cpioWriter) pad(n int64) {
	c.write("\x00\x00\x00"[:(4-n%4)%4])
}

func (c *cpioWriter) write(s string) {
	if c.err == nil {
		_, c.err = io.WriteString(c.w, s)
	}
}

func (c *cpioWriter) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}
