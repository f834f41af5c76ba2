package impl

import (
	"os"
	"path"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// copyUp copies the shared regular file src, which view path p stands for, into the private layer
// at p, with its mode, owner and times, and its data unless truncate says the caller is about to
// discard it. The copy is built in an unnamed O_TMPFILE and put in place only when complete, so a
// failed copy-up (a full disk, say) leaves nothing behind (docs/kernel.md, "Copying a file up"); it
// replaces p's placeholder, if any.
func (v *View) copyUp(p, src string, truncate bool) error {
	if err := v.mayGrow(); err != nil {
		return err
	}
	if err := v.ensureDir(path.Dir(p)); err != nil {
		return err
	}
	sfd, err := long.Open(src, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return err
	}
	v.noteOrigin(src, &st)
	parent := v.upperPath(path.Dir(p))
	dst, named, err := openTmp(parent)
	if err != nil {
		return err
	}
	defer unix.Close(dst)
	fail := func(err error) error {
		if named != "" {
			long.Unlink(named)
		}
		return err
	}
	var n int64
	if !truncate {
		if n, err = copyData(dst, sfd, st.Size); err != nil {
			return fail(err)
		}
	}
	if err := unix.Fchown(dst, int(st.Uid), int(st.Gid)); err != nil && err != unix.EPERM {
		return fail(err)
	}
	// After the chown, which would clear security.capability.
	if err := copyXattrsFD(sfd, dst); err != nil {
		return fail(err)
	}
	if err := unix.Fchmod(dst, st.Mode&07777); err != nil {
		return fail(err)
	}
	if err := futimens(dst, st.Atim, st.Mtim); err != nil {
		return fail(err)
	}
	up := v.upperPath(p)
	if named == "" {
		// Link the finished file under a temporary name, then rename it over the placeholder.
		named = parent + "/.fsvirt-copyup-" + strconv.Itoa(dst)
		err := long.Linkat(unix.AT_FDCWD, fdPath(dst), unix.AT_FDCWD, named, unix.AT_SYMLINK_FOLLOW)
		if err != nil {
			named = ""
			return err
		}
	}
	if err := long.Rename(named, up); err != nil {
		return fail(err)
	}
	v.setEntry(p, &entry{kind: entryObj, own: true, lower: src})
	v.copyGen.Add(1)
	v.countCopyUp(n)
	if err := v.relink(p, src); err != nil {
		return err
	}
	if err := v.indexCopy(p, src, &st); err != nil {
		return err
	}
	// Last: an immutable or append-only copy can be neither linked nor renamed.
	copyFlags(dst, sfd)
	return nil
}

// openTmp opens an unnamed file in dir, or, where the file system lacks O_TMPFILE
// (docs/kernel.md, "Copying a file up"), a named one whose name it returns.
func openTmp(dir string) (fd int, named string, err error) {
	fd, err = long.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return fd, "", nil
	}
	if err != unix.EOPNOTSUPP && err != unix.EISDIR && err != unix.EINVAL {
		return -1, "", err
	}
	for i := 0; ; i++ {
		named = dir + "/.fsvirt-copyup-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i)
		fd, err = long.Open(named, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err != unix.EEXIST {
			return fd, named, err
		}
	}
}

// copyData copies the first size bytes of src to dst, an empty file, and returns the bytes of data
// it copied: a reflink where the file system shares extents; else the data alone, range by range
// (SEEK_DATA, SEEK_HOLE), each with copy_file_range or, where that is refused, read and write, so
// that a hole stays a hole (docs/kernel.md, "Copying a file up"): a sparse file of 1 GiB that
// holds 4 KiB costs 4 KiB in the layer, as it does natively, not 1 GiB of zeros.
func copyData(dst, src int, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	if unix.IoctlFileClone(dst, src) == nil {
		return size, nil
	}
	var n int64
	readWrite := false
	for off := int64(0); off < size; {
		data, err := unix.Seek(src, off, unix.SEEK_DATA)
		if err == unix.ENXIO { // holes to the end
			break
		}
		if err != nil {
			return n, err
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(src, data, unix.SEEK_HOLE)
		if err != nil {
			return n, err
		}
		hole = min(hole, size)
		c, err := copyRange(dst, src, data, hole-data, &readWrite)
		n += c
		if err != nil {
			return n, err
		}
		if c < hole-data { // the file shrank meanwhile
			break
		}
		off = hole
	}
	// The holes at the end, and the size the file had.
	return n, unix.Ftruncate(dst, size)
}

// copyRange copies length bytes at offset off of src to the same offset of dst with
// copy_file_range, or with pread and pwrite from the first refusal on (*readWrite), and returns
// the bytes copied: fewer at the end of src.
func copyRange(dst, src int, off, length int64, readWrite *bool) (int64, error) {
	var n int64
	for n < length && !*readWrite {
		soff, doff := off+n, off+n
		c, err := unix.CopyFileRange(src, &soff, dst, &doff, int(min(length-n, 1<<30)), 0)
		if err == unix.EXDEV || err == unix.EINVAL || err == unix.ENOSYS || err == unix.EOPNOTSUPP {
			*readWrite = true
			break
		}
		if err != nil {
			return n, err
		}
		if c == 0 {
			return n, nil
		}
		n += int64(c)
	}
	buf := make([]byte, min(length-n, 1<<20))
	for n < length {
		r, err := unix.Pread(src, buf[:min(int64(len(buf)), length-n)], off+n)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if r == 0 {
			return n, nil
		}
		for w := 0; w < r; {
			c, err := unix.Pwrite(dst, buf[w:r], off+n+int64(w))
			if err != nil {
				return n, err
			}
			w += c
		}
		n += int64(r)
	}
	return n, nil
}

// futimens sets an open file's access and modification times.
func futimens(fd int, atime, mtime unix.Timespec) error {
	ts := [2]unix.Timespec{atime, mtime}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0,
		uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Extended attributes go with a copy-up, as overlayfs copies them: user.* (which getfattr in the
// view would otherwise find gone), ACLs, trusted.* and security.* where the supervisor may set
// them. One the supervisor may not set, or the private layer's file system does not take, is
// left out; running out of space is a failed copy-up.

// copyXattrs copies the extended attributes of host path src to dst, neither followed.
func copyXattrs(src, dst string) error {
	return copyXattrsWith(func(b []byte) (int, error) { return long.Llistxattr(src, b) },
		func(n string, b []byte) (int, error) { return long.Lgetxattr(src, n, b) },
		func(n string, b []byte) error { return long.Lsetxattr(dst, n, b, 0) },
		func(n string) error { return long.Lremovexattr(dst, n) })
}

// copyXattrsFD is copyXattrs between open files.
func copyXattrsFD(src, dst int) error {
	return copyXattrsWith(func(b []byte) (int, error) { return unix.Flistxattr(src, b) },
		func(n string, b []byte) (int, error) { return unix.Fgetxattr(src, n, b) },
		func(n string, b []byte) error { return unix.Fsetxattr(dst, n, b, 0) },
		func(n string) error { return unix.Fremovexattr(dst, n) })
}

// aclNames are the extended attributes of POSIX ACLs, which a new object takes from its
// directory's default ACL.
var aclNames = []string{"system.posix_acl_access", "system.posix_acl_default"}

// copyXattrsWith copies the attributes list names, get reads and set writes. The copy is made
// in an upper directory that may have a default ACL, which the kernel gave the new object: an
// ACL the source does not have is removed (remove), so that the copy has the source's alone.
func copyXattrsWith(list func([]byte) (int, error), get func(string, []byte) (int, error),
	set func(string, []byte) error, remove func(string) error) error {
	defer func(had map[string]bool) {
		for _, n := range aclNames {
			if !had[n] {
				remove(n) // ENODATA: none was inherited; EOPNOTSUPP: no ACLs here
			}
		}
	}(sourceACLs(get))
	size, err := list(nil)
	if err != nil || size == 0 {
		return nil // none, or a file system without them
	}
	names := make([]byte, size)
	if size, err = list(names); err != nil {
		return nil
	}
	var value []byte
	for _, name := range strings.Split(strings.TrimRight(string(names[:size]), "\x00"), "\x00") {
		n, err := get(name, nil)
		if err != nil {
			continue
		}
		if cap(value) < n {
			value = make([]byte, n)
		}
		if n, err = get(name, value[:n]); err != nil {
			continue
		}
		switch err := set(name, value[:n]); err {
		case nil, unix.EPERM, unix.EACCES, unix.ENOTSUP, unix.EINVAL:
		default:
			return err
		}
	}
	return nil
}

// sourceACLs reports which of aclNames the source that get reads has.
func sourceACLs(get func(string, []byte) (int, error)) map[string]bool {
	had := map[string]bool{}
	for _, n := range aclNames {
		if _, err := get(n, nil); err == nil {
			had[n] = true
		}
	}
	return had
}
