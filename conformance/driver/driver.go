package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/internal/sysexec"
)

// Args says what one run of the driver does.
type Args struct {
	// Root is the directory the script's paths are relative to, and whose
	// view the run sees: "/a/f" and "a/f" both name Root/a/f.
	Root string
	// Sync is a directory outside Root that all runs of a case share, where
	// signal creates a file and wait looks for one.
	Sync string
	// Case is the case, and Run the index of the script in Case.Scripts.
	Case *Case
	Run  int
}

// Observation is what one op observed: one JSON line of the driver's output.
// The last line of a run, with Op "tree", lists the whole view in the
// notation of [fsvirt.Tree].
type Observation struct {
	Step    int      `json:"step"`
	Op      string   `json:"op"`
	Ret     int64    `json:"ret"`             // bytes, offset or entries; 0 for a successful open
	Errno   string   `json:"errno,omitempty"` // "ENOENT"; empty on success
	Data    *string  `json:"data,omitempty"`  // read, cat, readlink, getcwd, getxattr, listxattr
	Stat    *Stat    `json:"stat,omitempty"`
	Entries []string `json:"entries,omitzero"` // getdents, ls: sorted, without "." and ".."
	Same    *bool    `json:"same,omitempty"`   // samefile
	Mtime   *int64   `json:"mtime,omitempty"`  // mtime: seconds
	Tree    []string `json:"tree,omitzero"`
}

// Stat holds the fields of a stat that every implementation must agree on.
// Inode and device numbers and times are not among them; the size and link
// count of a directory are file-system specific and left zero.
type Stat struct {
	Type  string `json:"type"` // file, dir, symlink, fifo
	Mode  string `json:"mode"` // permission bits in octal, setuid, setgid and sticky included
	Size  int64  `json:"size"`
	Nlink uint64 `json:"nlink"`
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
}

// waitTimeout bounds a wait op: a run whose partner never signals fails
// instead of hanging.
const waitTimeout = 10 * time.Second

// Run performs one script of a case with real system calls and writes one
// JSON line per op to w, then the "tree" line.
//
// Run changes the calling thread's working directory to a.Root and its umask
// to 022: it must run on a thread with a file-system context of its own
// (unshare(CLONE_FS), as the engine's workers have), or in a process of its
// own. It makes every system call on the calling goroutine and starts none.
func Run(ctx context.Context, a Args, w io.Writer) error {
	scripts := a.Case.Scripts()
	if a.Run < 0 || a.Run >= len(scripts) {
		return fmt.Errorf("case %s has no run %d", a.Case.Name, a.Run)
	}
	root, err := filepath.Abs(a.Root)
	if err != nil {
		return err
	}
	syscall.Umask(0o022)
	x, err := sysexec.NewInCwd(root)
	if err != nil {
		return fmt.Errorf("chdir %s: %w", root, err)
	}
	r := &run{ctx: ctx, x: x, root: root, sync: a.Sync, fds: map[string]fsvirt.Handle{}}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i, op := range scripts[a.Run] {
		obs := r.do(op)
		obs.Step = i
		if err := enc.Encode(obs); err != nil {
			return errors.Join(err, x.Close())
		}
	}
	closeErr := x.Close()
	return errors.Join(enc.Encode(r.tree(len(scripts[a.Run]))), closeErr)
}

// run is the state of one script: the executor and the descriptors by name.
type run struct {
	ctx  context.Context
	x    *sysexec.Exec
	root string
	sync string
	fds  map[string]fsvirt.Handle
}

// noHandle is a handle no descriptor has: ops on it fail with EBADF.
const noHandle fsvirt.Handle = -1

func (r *run) handle(name string) fsvirt.Handle {
	if name == "" {
		return fsvirt.AtCWD
	}
	if h, ok := r.fds[name]; ok {
		return h
	}
	return noHandle
}

// must parses what Case.check already validated.
func must[T any](v T, err error) T {
	if err != nil {
		panic("[bug] driver: unchecked case: " + err.Error())
	}
	return v
}

func (r *run) do(op Op) Observation {
	flags := 0
	if op.Flags != "" {
		flags = must(parseBits(op.Flags))
	}
	mode := func(def uint32) uint32 {
		if op.Mode == "" {
			return def
		}
		return must(parseMode(op.Mode))
	}
	size := func(def int64) int64 {
		if op.Size == nil {
			return def
		}
		return *op.Size
	}
	id := func(p *int) int {
		if p == nil {
			return -1
		}
		return *p
	}
	sys := fsvirt.Op{Fd: r.handle(op.Fd), Dirfd: r.handle(op.Dirfd), Path: op.Path,
		NewDirfd: r.handle(op.NewDirfd), NewPath: op.NewPath, Flags: flags}
	switch op.Op {
	case "open":
		sys.Kind, sys.Mode = fsvirt.OpOpen, mode(0o644)
		out := r.x.Do(sys)
		r.fds[op.As] = noHandle
		if out.Errno == 0 {
			r.fds[op.As], out.Ret = fsvirt.Handle(out.Ret), 0
		}
		return observe(sys, out)
	case "close":
		sys.Kind = fsvirt.OpClose
		out := r.x.Do(sys)
		r.fds[op.Fd] = noHandle
		return observe(sys, out)
	case "read":
		sys.Kind, sys.Size = fsvirt.OpRead, size(4096)
	case "write", "pwrite":
		sys.Kind, sys.Data, sys.Offset = fsvirt.OpWrite, []byte(op.Data), op.Offset
		if op.Op == "pwrite" {
			sys.Kind = fsvirt.OpPwrite
		}
	case "lseek":
		sys.Kind, sys.Offset, sys.Whence = fsvirt.OpSeek, op.Offset, must(parseBits(op.Whence))
	case "ftruncate":
		sys.Kind, sys.Size = fsvirt.OpTruncate, size(0)
	case "fstat":
		sys.Kind = fsvirt.OpStat
	case "getdents":
		sys.Kind = fsvirt.OpGetdents
	case "fchdir":
		sys.Kind = fsvirt.OpFchdir
	case "stat", "lstat":
		sys.Kind = fsvirt.OpFstatat
		if op.Op == "lstat" {
			sys.Flags = unix.AT_SYMLINK_NOFOLLOW
		}
	case "access":
		sys.Kind, sys.Mode = fsvirt.OpAccess, mode(unix.F_OK)
	case "readlink":
		sys.Kind, sys.Size = fsvirt.OpReadlink, size(unix.PathMax)
	case "mkdir":
		sys.Kind, sys.Mode = fsvirt.OpMkdir, mode(0o755)
	case "unlink":
		sys.Kind = fsvirt.OpUnlink
	case "rmdir":
		sys.Kind, sys.Flags = fsvirt.OpUnlink, unix.AT_REMOVEDIR
	case "rename":
		sys.Kind = fsvirt.OpRename
	case "link":
		sys.Kind = fsvirt.OpLink
	case "symlink":
		sys.Kind, sys.Data = fsvirt.OpSymlink, []byte(op.Target)
	case "chmod":
		sys.Kind, sys.Mode = fsvirt.OpChmod, mode(0)
	case "chown":
		sys.Kind, sys.Uid, sys.Gid = fsvirt.OpChown, id(op.UID), id(op.GID)
	case "truncate":
		sys.Kind, sys.Size = fsvirt.OpTruncatePath, size(0)
	case "utimens":
		sys.Kind, sys.Time = fsvirt.OpUtimens, op.Time
	case "mknod":
		sys.Kind, sys.Mode = fsvirt.OpMknod, mode(0)
	case "chdir":
		sys.Kind = fsvirt.OpChdir
	case "getcwd":
		sys.Kind = fsvirt.OpGetcwd
	case "setxattr":
		sys.Kind, sys.Name, sys.Data = fsvirt.OpSetxattr, op.Name, []byte(op.Data)
	case "getxattr":
		sys.Kind, sys.Name, sys.Size = fsvirt.OpGetxattr, op.Name, 256
	case "listxattr":
		sys.Kind, sys.Size = fsvirt.OpListxattr, 1024
	case "removexattr":
		sys.Kind, sys.Name = fsvirt.OpRemovexattr, op.Name
	default:
		return r.composite(op, sys)
	}
	return observe(sys, r.x.Do(sys))
}

// composite performs the ops that are more than one system call.
func (r *run) composite(op Op, sys fsvirt.Op) Observation {
	label := fmt.Sprintf("%s(%q)", op.Op, op.Path)
	switch op.Op {
	case "cat", "ls":
		sys.Kind, sys.Flags = fsvirt.OpOpen, unix.O_RDONLY|unix.O_CLOEXEC
		if op.Op == "ls" {
			sys.Flags |= unix.O_DIRECTORY
		}
		open := r.x.Do(sys)
		if open.Errno != 0 {
			return Observation{Op: label, Ret: -1, Errno: unix.ErrnoName(open.Errno)}
		}
		h := fsvirt.Handle(open.Ret)
		defer r.x.Do(fsvirt.Op{Kind: fsvirt.OpClose, Fd: h})
		if op.Op == "ls" {
			obs := observe(fsvirt.Op{Kind: fsvirt.OpGetdents, Fd: h}, r.x.Do(fsvirt.Op{Kind: fsvirt.OpGetdents, Fd: h}))
			obs.Op = label
			return obs
		}
		var data []byte
		for {
			out := r.x.Do(fsvirt.Op{Kind: fsvirt.OpRead, Fd: h, Size: 4096})
			if out.Errno != 0 {
				return Observation{Op: label, Ret: -1, Errno: unix.ErrnoName(out.Errno)}
			}
			if out.Ret == 0 {
				s := string(data)
				return Observation{Op: label, Ret: int64(len(data)), Data: &s}
			}
			data = append(data, out.Data...)
		}
	case "samefile":
		label = fmt.Sprintf("samefile(%q, %q)", op.Path, op.NewPath)
		var a, b unix.Stat_t
		if err := unix.Stat(r.path(op.Path), &a); err != nil {
			return fail(label, err)
		}
		if err := unix.Stat(r.path(op.NewPath), &b); err != nil {
			return fail(label, err)
		}
		same := a.Dev == b.Dev && a.Ino == b.Ino
		return Observation{Op: label, Same: &same}
	case "mtime":
		var st unix.Stat_t
		if err := unix.Fstatat(unix.AT_FDCWD, r.path(op.Path), &st, sys.Flags); err != nil {
			return fail(label, err)
		}
		return Observation{Op: label, Mtime: &st.Mtim.Sec}
	case "signal":
		label = fmt.Sprintf("signal(%q)", op.Name)
		fd, err := unix.Open(filepath.Join(r.sync, op.Name), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fail(label, err)
		}
		return Observation{Op: label, Ret: 0, Errno: errnoName(unix.Close(fd))}
	case "wait":
		label = fmt.Sprintf("wait(%q)", op.Name)
		ctx, cancel := context.WithTimeout(r.ctx, waitTimeout)
		defer cancel()
		var st unix.Stat_t
		for unix.Stat(filepath.Join(r.sync, op.Name), &st) != nil {
			select {
			case <-ctx.Done():
				return fail(label, unix.ETIMEDOUT)
			case <-time.After(2 * time.Millisecond):
			}
		}
		return Observation{Op: label}
	}
	panic("[bug] driver: unchecked op " + op.Op)
}

// path is what to pass to a path syscall for a script's path: absolute paths
// are taken from the root; relative ones from the working directory, which
// starts at the root.
func (r *run) path(unsafePath string) string {
	if strings.HasPrefix(unsafePath, "/") {
		return r.root + unsafePath
	}
	return unsafePath
}

// tree lists the view under the root, absolute symlink targets without the
// root in front.
func (r *run) tree(step int) Observation {
	t, err := sysexec.Walk(r.root)
	if err != nil {
		return Observation{Step: step, Op: "tree", Ret: -1, Errno: "walk: " + err.Error()}
	}
	for p, n := range t {
		if rest, ok := strings.CutPrefix(n.Target, r.root+"/"); ok && n.Type == fsvirt.Symlink {
			n.Target = "/" + rest
			t[p] = n
		}
	}
	lines := strings.Split(strings.TrimSuffix(t.String(), "\n"), "\n")
	if len(t) == 0 {
		lines = []string{}
	}
	return Observation{Step: step, Op: "tree", Tree: lines}
}

// observe turns an executor outcome into an observation.
func observe(op fsvirt.Op, out fsvirt.Outcome) Observation {
	obs := Observation{Op: op.String(), Ret: out.Ret}
	if out.Errno != 0 {
		obs.Errno = unix.ErrnoName(out.Errno)
		return obs
	}
	switch op.Kind {
	case fsvirt.OpRead, fsvirt.OpReadlink, fsvirt.OpGetcwd, fsvirt.OpGetxattr, fsvirt.OpListxattr:
		s := string(out.Data)
		obs.Data = &s
	case fsvirt.OpStat, fsvirt.OpFstatat:
		obs.Stat = statOf(out.Stat)
	case fsvirt.OpGetdents:
		obs.Entries = []string{}
		for _, d := range out.Dirents {
			if d.Name != "." && d.Name != ".." {
				obs.Entries = append(obs.Entries, d.String())
			}
		}
		obs.Ret = int64(len(obs.Entries))
	}
	return obs
}

var typeNames = map[uint32]string{unix.S_IFREG: "file", unix.S_IFDIR: "dir", unix.S_IFLNK: "symlink", unix.S_IFIFO: "fifo"}

func statOf(s fsvirt.Stat) *Stat {
	typ, ok := typeNames[s.Mode&unix.S_IFMT]
	if !ok {
		typ = fmt.Sprintf("%#o", s.Mode&unix.S_IFMT)
	}
	st := &Stat{Type: typ, Mode: fmt.Sprintf("%04o", s.Mode&^uint32(unix.S_IFMT)), Size: s.Size, Nlink: s.Nlink, UID: s.Uid, GID: s.Gid}
	if typ == "dir" {
		st.Size, st.Nlink = 0, 0
	}
	return st
}

func fail(label string, err error) Observation {
	return Observation{Op: label, Ret: -1, Errno: errnoName(err)}
}

func errnoName(err error) string {
	if err == nil {
		return ""
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}
