package impl

import (
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// readNext reads up to n bytes at fd's offset, which it advances.
func (r *rec) readNext(fd, n int) {
	buf := make([]byte, n)
	got, err := unix.Read(fd, buf)
	r.logf("read(%d) = %q %s", n, buf[:max(got, 0)], errStr(err))
}

// lsFD logs the names getdents gives through directory descriptor fd, from its offset.
func (r *rec) lsFD(fd int) {
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			r.logf("getdents = %s", errStr(err))
			return
		}
		if n == 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	slices.Sort(names)
	r.logf("getdents = [%s]", strings.Join(names, " "))
}

// followCases: a descriptor opened before the view copied its object up reaches the view's copy
// afterwards, as on the kernel's own file system (and on overlayfs since 4.19:
// docs/kernel.md, "Descriptors opened before a copy-up"). Process mode only (see followCopyUps): in
// thread mode the descriptors stay on the shared objects.
var followCases = []openCase{
	{"read-after-rewrite", baseTree, func(r *rec) {
		fd := r.open("a/f", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		w := r.open("a/f", unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
		r.write(w, "rewritten")
		r.close(w)
		r.readNext(fd, 64)
		r.fstat(fd)
	}},
	{"offset-kept", baseTree, func(r *rec) {
		fd := r.open("a/f", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		r.readNext(fd, 2)
		w := r.open("a/f", unix.O_WRONLY|unix.O_CLOEXEC, 0)
		r.write(w, "HELLO")
		r.close(w)
		r.readNext(fd, 64)
		r.readNext(fd, 64)
	}},
	{"fstat-after-chmod", baseTree, func(r *rec) {
		fd := r.open("g", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		r.call("chmod", unix.Chmod(r.p("g"), 0o600))
		r.fstat(fd)
		r.readNext(fd, 64)
	}},
	{"several-descriptors", baseTree, func(r *rec) {
		fds := []int{r.open("a/f", unix.O_RDONLY|unix.O_CLOEXEC, 0), r.open("a/f", unix.O_RDONLY, 0),
			r.open("g", unix.O_RDONLY|unix.O_CLOEXEC, 0)}
		r.readNext(fds[1], 1)
		w := r.open("a/f", unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
		r.write(w, " more")
		r.close(w)
		for _, fd := range fds {
			r.readNext(fd, 64)
		}
		flags, err := unix.FcntlInt(uintptr(fds[1]), unix.F_GETFD, 0)
		r.logf("close-on-exec of the second = %v %s", flags&unix.FD_CLOEXEC != 0, errStr(err))
	}},
	{"listing-after-create", baseTree, func(r *rec) {
		fd := r.open("d", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		r.create("d/new")
		r.lsFD(fd)
	}},
	{"listing-after-remove", baseTree, func(r *rec) {
		fd := r.open("a", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		r.call("unlink", unix.Unlink(r.p("a/f")))
		r.lsFD(fd)
	}},
	{"directory-mode-after-chmod", baseTree, func(r *rec) {
		fd := r.open("d", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		r.call("chmod", unix.Chmod(r.p("d"), 0o700))
		r.fstat(fd)
	}},
}

// TestProcessFollowCopyUp runs followCases in a process under Run, under both policies (the strict
// one opens read-only files itself, of the shared tree too), and on a private copy.
func TestProcessFollowCopyUp(t *testing.T) {
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		for _, c := range followCases {
			t.Run(pol.String()+"/"+c.name, func(t *testing.T) { runProcessCasePolicy(t, c, pol) })
		}
	}
}

// TestFollowLeavesInheritedFiles: the command's standard input, a file of the tree that fsvirt's
// caller opened, is the caller's file, not the view's: it does not follow the copy-up, and another
// process of the view does follow it.
func TestFollowLeavesInheritedFiles(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared")
	before := treetest.Snap(t, shared)
	in, err := os.Open(shared + "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// fd 3 is opened in the view, before another process rewrites f; cat reads it after its exec.
	script := `exec 3< f; sh -c 'echo changed > f'; cat <&3; echo ---; cat`
	res, err := Run(t.Context(), RunConfig{Trees: []string{shared}, Store: t.TempDir(), Path: "/bin/sh",
		Args: []string{"sh", "-c", script}, Dir: shared, Stdin: in, Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out.Name())
	if want := "changed\n---\nshared"; res.ExitStatus != 0 || string(got) != want {
		t.Errorf("exit %d, output %q, want %q", res.ExitStatus, got, want)
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}
