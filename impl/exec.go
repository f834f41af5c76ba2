package impl

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// exec is execve and execveat. A program the kernel finds under its path is left to it. One that
// exists only in the private layer, or changed there, is opened by the supervisor and installed in
// the task, and the path in the task's memory is rewritten to /dev/fd/N, padded with leading
// slashes to its length, before the kernel runs the call: the kernel then executes the view's
// file (a script's interpreter opens /dev/fd/N, which the view resolves to it too). A path too
// short to hold /dev/fd/N fails with ENOEXEC where running the file with /bin/sh, what execvp
// and shells do then, runs it as the kernel would (a "#!/bin/sh" script); else with EOPNOTSUPP:
// on ENOEXEC a binary's bytes would run as shell commands.
func (v *View) exec(t tracee, o op) (reply, error) {
	v.settleCwd(t)
	if o.pathErr != nil { // execveat copies the path in before it checks its flags
		return reply{}, o.pathErr
	}
	if o.flags&^uint64(unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW) != 0 {
		return reply{}, unix.EINVAL
	}
	if o.unsafePath == "" && o.flags&unix.AT_EMPTY_PATH != 0 {
		return reply{kind: replyContinue}, nil // fexecve: the descriptor is what the view gave
	}
	r, _, err := v.lookup(t, o, o.flags&unix.AT_SYMLINK_NOFOLLOW == 0) // not AT_EMPTY_PATH's form
	switch {
	case err != nil:
		return reply{}, err
	case r.kind == resFDObject:
		// A magic link to an object the task holds and the view has no path for (a memfd, as
		// fexecve uses): the kernel finds that object itself, whatever the view, and decides.
		return reply{kind: replyContinue}, nil
	case r.mode == unix.S_IFLNK:
		return reply{}, unix.ELOOP
	case r.mode != unix.S_IFREG:
		return reply{}, unix.EACCES
	case r.pure:
		return reply{kind: replyContinue}, nil
	}
	// The caller's permission, checked before anything is rewritten (access(2) would check the
	// supervisor's); the kernel checks it again on the installed file.
	c, err := t.status()
	if err != nil {
		return reply{}, err
	}
	if err := hostMay(c, r.host, unix.X_OK); err != nil {
		return reply{}, err
	}
	fd, err := long.Open(r.host, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return reply{}, err
	}
	interp, script := shebang(fd)
	if script {
		// The kernel looks a script's interpreter up itself, on the host. One that only the view
		// has, or whose view differs from the host's, it would not find, or find another: the
		// call fails as it would without that interpreter, before anything of the task changes.
		ri, err := v.resolve(t, unix.AT_FDCWD, interp, resolveOpts{followFinal: true})
		if err == nil && (!ri.exists() || !ri.pure || ri.kind == resFDObject) {
			err = unix.ENOENT
		}
		if err != nil {
			unix.Close(fd)
			return reply{}, err
		}
	}
	// What execvp and shells do on ENOEXEC, running the file with /bin/sh, runs it as the kernel
	// would: a "#!/bin/sh" script, or a file of no format the kernel knows, which it refuses
	// with ENOEXEC itself.
	shRuns := script && (interp == "/bin/sh" || interp == "/usr/bin/sh") || !script && !isELF(fd)
	tooShort := unix.EOPNOTSUPP
	if shRuns {
		tooShort = unix.ENOEXEC
	}
	if o.pathLen < len("/dev/fd/0") {
		// No descriptor's name fits: fail before one is installed, which the task would keep.
		unix.Close(fd)
		return reply{}, tooShort
	}
	// The new program does not inherit the descriptor it was executed through, as it would not
	// natively: the kernel opens the program before it closes close-on-exec descriptors. A
	// script's stays open: the kernel refuses to run a script by a /dev/fd path whose descriptor
	// is close-on-exec (the interpreter could not open it), so the interpreter inherits it.
	rewrite := func(newfd int) error { return rewriteExecPath(t, o, newfd, tooShort) }
	return reply{kind: replyExec, fd: fd, rewrite: rewrite, cloexec: !script}, nil
}

// rewriteExecPath writes /dev/fd/newfd, padded with leading slashes to the length of exec's path,
// over that path in the task's memory, once the file is installed as newfd. A name that does not
// fit fails with tooShort.
func rewriteExecPath(t tracee, o op, newfd int, tooShort error) error {
	short := "/dev/fd/" + strconv.Itoa(newfd)
	if len(short) > o.pathLen {
		return tooShort // the descriptor stays in the task: close-on-exec unless a script's
	}
	b := []byte(strings.Repeat("/", o.pathLen-len(short)) + short)
	keepArgv0(t, o)
	if err := t.write(o.pathAddr, b); err != nil {
		// A read-only string (a literal): /proc/TID/mem writes through the protection, to the
		// task's private copy of the page
		// (docs/kernel.md, "Reading and writing a task's memory").
		mem, ferr := os.OpenFile(t.procPath("mem"), os.O_WRONLY, 0)
		if ferr != nil {
			return err
		}
		defer mem.Close()
		if _, err := mem.WriteAt(b, int64(o.pathAddr)); err != nil {
			return unix.EFAULT
		}
	}
	return nil
}

// isELF reports whether file fd starts as an ELF binary does.
func isELF(fd int) bool {
	var magic [4]byte
	n, _ := unix.Pread(fd, magic[:], 0)
	return n == 4 && string(magic[:]) == "\x7fELF"
}

// shebang returns the interpreter a script in file fd names in its "#!" line, as the kernel reads
// it (binfmt_script: the first 256 bytes, blanks skipped, up to a blank or the line's end;
// docs/kernel.md, "A script's first line").
func shebang(fd int) (string, bool) {
	var buf [256]byte
	n, _ := unix.Pread(fd, buf[:], 0)
	line, ok := bytes.CutPrefix(buf[:max(n, 0)], []byte("#!"))
	if !ok {
		return "", false
	}
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	f := bytes.Fields(line)
	if len(f) == 0 {
		return "", false
	}
	return string(f[0]), true
}

// keepArgv0 keeps the program's argv[0] what the caller wrote when argv[0] is the path string
// exec rewrites (a shell runs "dir/prog" with execve(argv[0], argv, envp)): a copy of the string
// is put below the task's stack pointer, where nothing lives while it is in the call (a signal
// handler's frame would go there), and argv[0] pointed at it. Programs that find their files
// from argv[0] (python finds a virtual environment next to it) then see the name they were run
// by, not /dev/fd/N. Where the page below the stack is not mapped, argv[0] stays the rewritten
// path. So it does in a child of vfork or posix_spawn, which shares its parent's memory: the
// parent goes on with the argument vector after the exec, and the copy would be gone with the
// child's stack.
func keepArgv0(t tracee, o op) {
	var p0 uint64
	if o.argv == 0 || t.readStruct(o.argv, unsafe.Pointer(&p0), 8) != nil {
		return
	}
	if p0 < o.pathAddr || p0 >= o.pathAddr+uint64(o.pathLen) {
		return
	}
	if c, err := t.status(); err != nil || sharesMemory(t.tid, c.ppid) {
		return
	}
	sp, err := t.stackPointer()
	if err != nil {
		return
	}
	orig := append([]byte(o.unsafePath[p0-o.pathAddr:]), 0)
	// Past the 128-byte red zone of the x86-64 ABI, with room to spare, 16-byte aligned.
	dst := (sp - 512 - uint64(len(orig))) &^ 15
	if t.write(dst, orig) != nil {
		return
	}
	t.writeStruct(o.argv, unsafe.Pointer(&dst), 8)
}
