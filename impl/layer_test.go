package impl

import (
	"context"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// ls logs the listing of directory rel, with a type mark on each name.
func (r *rec) ls(rel string) {
	ents, err := os.ReadDir(r.p(rel))
	var names []string
	for _, e := range ents {
		mark := ""
		switch {
		case e.IsDir():
			mark = "/"
		case e.Type()&os.ModeSymlink != 0:
			mark = "@"
		case e.Type()&os.ModeNamedPipe != 0:
			mark = "|"
		}
		names = append(names, e.Name()+mark)
	}
	r.logf("ls %s = %s [%s]", rel, errStr(err), strings.Join(names, " "))
}

func (r *rec) create(rel string) {
	r.close(r.open(rel, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644))
}

var partialTree = []string{"dir s", "file s/f1 one", "file s/f2 two", "dir s/sub", "file s/sub/x x",
	"symlink s/l -> f1", "dir t", "dir e"}

// partialCases: a shared directory the view only adds to is partial, its upper directory holding
// only what the view made (and mirrors of the shared subdirectories); whatever lists it, removes or
// replaces a shared name in it must see the shared names too.
var partialCases = []openCase{
	{"partial-create-list", partialTree, func(r *rec) {
		var before, after unix.Stat_t
		unix.Lstat(r.p("s"), &before)
		r.create("s/new")
		r.ls("s") // the open completes the listing: the times the create gave s stay
		r.statDot("s", unix.AT_FDCWD, r.p("s"))
		unix.Lstat(r.p("s"), &after)
		r.logf("s modified: %v", after.Mtim != before.Mtim)
		r.cat("s/f1")
	}},
	{"partial-unlink-shared", partialTree, func(r *rec) {
		r.create("s/new")
		r.call("unlink s/f1", unix.Unlink(r.p("s/f1")))
		r.ls("s")
		r.cat("s/f1")
		r.cat("s/f2")
	}},
	{"partial-rename-shared-away", partialTree, func(r *rec) {
		r.create("s/new")
		r.call("rename s/f1 t/f1", unix.Rename(r.p("s/f1"), r.p("t/f1")))
		r.call("rename s/sub t/sub", unix.Rename(r.p("s/sub"), r.p("t/sub")))
		r.ls("s")
		r.ls("t")
		r.ls("t/sub")
	}},
	{"partial-rename-shared-within", partialTree, func(r *rec) {
		r.create("s/new")
		r.call("rename s/f1 s/g", unix.Rename(r.p("s/f1"), r.p("s/g")))
		r.ls("s")
		r.cat("s/g")
	}},
	{"partial-own-names", partialTree, func(r *rec) {
		r.create("s/new")
		r.call("rename new new2", unix.Rename(r.p("s/new"), r.p("s/new2")))
		r.call("link new2 new3", unix.Link(r.p("s/new2"), r.p("s/new3")))
		r.call("unlink new2", unix.Unlink(r.p("s/new2")))
		r.call("symlink", unix.Symlink("f2", r.p("s/sym")))
		r.call("mkfifo", unix.Mkfifo(r.p("s/fifo"), 0o600))
		r.call("mkdir nd", unix.Mkdir(r.p("s/nd"), 0o755))
		r.statDot("s with nd", unix.AT_FDCWD, r.p("s"))
		r.call("rmdir nd", unix.Rmdir(r.p("s/nd")))
		r.statDot("s", unix.AT_FDCWD, r.p("s"))
		r.ls("s")
		r.cat("s/sym")
	}},
	{"partial-rmdir", partialTree, func(r *rec) {
		r.create("s/sub/new")
		r.call("rmdir s/sub", unix.Rmdir(r.p("s/sub")))
		r.call("unlink s/sub/new", unix.Unlink(r.p("s/sub/new")))
		r.call("rmdir s/sub", unix.Rmdir(r.p("s/sub")))
		r.call("unlink s/sub/x", unix.Unlink(r.p("s/sub/x")))
		r.call("rmdir s/sub", unix.Rmdir(r.p("s/sub")))
		r.create("e/n")
		r.call("unlink e/n", unix.Unlink(r.p("e/n")))
		r.call("rmdir e", unix.Rmdir(r.p("e")))
		r.ls("s")
		r.ls(".")
	}},
	{"partial-rename-dir", partialTree, func(r *rec) {
		r.create("s/new")
		r.call("rename s s2", unix.Rename(r.p("s"), r.p("s2")))
		r.ls("s2")
		r.cat("s2/f1")
		r.create("s2/sub/y")
		r.call("rename s2/sub t/sub", unix.Rename(r.p("s2/sub"), r.p("t/sub")))
		r.ls("t/sub")
		r.ls("s2")
	}},
	{"partial-list-through-fds", partialTree, func(r *rec) {
		r.create("s/new")
		fd := r.open("s", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		dfd := r.openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if dfd >= 0 {
			n, err := unix.Getdents(dfd, make([]byte, 4096))
			r.logf("getdents = %d %s", n, errStr(err))
		}
		r.close(dfd)
		r.close(fd)
		r.ls("s")
	}},
	{"partial-cwd", partialTree, func(r *rec) {
		r.call("chdir s", unix.Chdir(r.p("s")))
		r.close(r.openat(unix.AT_FDCWD, "new", unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644))
		r.call("unlink new", unix.Unlink("new"))
		r.close(r.openat(unix.AT_FDCWD, "new2", unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644))
		r.statDot(".", unix.AT_FDCWD, ".")
		r.statDot("f1", unix.AT_FDCWD, "f1")
		r.call("unlink f2", unix.Unlink("f2"))
		r.ls(".")
		r.call("chdir ..", unix.Chdir(".."))
		r.ls("s")
	}},
	{"partial-chmod", partialTree, func(r *rec) {
		r.create("s/new")
		r.call("chmod s", unix.Chmod(r.p("s"), 0o750))
		r.statDot("s", unix.AT_FDCWD, r.p("s"))
		r.ls("s")
	}},
	{"partial-replace-shared", partialTree, func(r *rec) {
		r.create("s/new")
		r.call("rename new f1", unix.Rename(r.p("s/new"), r.p("s/f1")))
		r.ls("s")
		r.cat("s/f1")
		r.create("s/new")
		r.call("rename f2 new", unix.Rename(r.p("s/f2"), r.p("s/new")))
		r.ls("s")
		r.cat("s/new")
		r.create("s/new2")
		r.call("exchange new2 l", unix.Renameat2(unix.AT_FDCWD, r.p("s/new2"), unix.AT_FDCWD, r.p("s/l"), unix.RENAME_EXCHANGE))
		r.ls("s")
	}},
	{"partial-link-shared", partialTree, func(r *rec) {
		r.create("s/new")
		r.call("link f1 f1b", unix.Link(r.p("s/f1"), r.p("s/f1b")))
		r.call("unlink f1", unix.Unlink(r.p("s/f1")))
		r.ls("s")
		r.cat("s/f1b")
	}},
}

func TestSupervisorPartialDirectories(t *testing.T) {
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(pol.String(), func(t *testing.T) {
			for _, c := range partialCases {
				t.Run(c.name, func(t *testing.T) { runOpenCase(t, c, pol) })
			}
		})
	}
}

func TestProcessPartialDirectories(t *testing.T) {
	for _, c := range partialCases {
		t.Run(c.name, func(t *testing.T) { runProcessCase(t, c) })
	}
}

// TestSupervisorPartialChanges: what an invocation reports of a directory it added to and removed
// from.
func TestSupervisorPartialChanges(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, partialTree...)
	p, err := NewPool(Config{Workers: 1, Trees: []string{shared}, Store: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, c := range []struct {
		name string
		ops  func(r *rec)
		want string
	}{
		{"add", func(r *rec) { r.create("s/new") }, "A s/new"},
		{"add-remove-own", func(r *rec) { r.create("s/new"); unix.Unlink(r.p("s/new")) }, ""},
		{"add-remove-shared", func(r *rec) { r.create("s/new"); unix.Unlink(r.p("s/f2")) }, "D s/f2,A s/new"},
		{"mkdir", func(r *rec) { unix.Mkdir(r.p("s/d"), 0o755) }, "A s/d"},
		// A shared directory renamed away and back is itself again: nothing in it was deleted.
		{"rename-away-and-back", func(r *rec) {
			unix.Rename(r.p("s"), r.p("s2"))
			unix.Rename(r.p("s2"), r.p("s"))
		}, ""},
		{"rename-away-remove-back", func(r *rec) {
			unix.Rename(r.p("s"), r.p("s2"))
			unix.Unlink(r.p("s2/f1"))
			unix.Rename(r.p("s2"), r.p("s"))
		}, "D s/f1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			err := p.Invoke(context.Background(), func(inv *Invocation) error {
				c.ops(&rec{root: shared})
				for _, ch := range inv.Changes() {
					got = append(got, string(ch.Kind)+" "+strings.TrimPrefix(ch.Path, shared+"/"))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.Join(got, ","); s != c.want {
				t.Errorf("changes %q, want %q", s, c.want)
			}
		})
	}
}
