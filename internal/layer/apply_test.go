package layer_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/impl"
	"github.com/fsvirt/fsvirt/internal/layer"
	"github.com/fsvirt/fsvirt/internal/treetest"
	"golang.org/x/sys/unix"
)

// TestMain: a test binary started with FSVIRT_TEST_APPLY=LAYER:ROOT applies LAYER under ROOT
// and exits (TestApplyKilled kills it).
func TestMain(m *testing.M) {
	if arg := os.Getenv("FSVIRT_TEST_XATTRS"); arg != "" {
		// In a view: a file and a directory made there, each with a user xattr.
		err := os.WriteFile(arg+"/g", []byte("g\n"), 0o644)
		if err == nil {
			err = os.Mkdir(arg+"/d", 0o755)
		}
		for _, p := range []string{arg + "/g", arg + "/d"} {
			if err == nil {
				err = unix.Lsetxattr(p, "user.fsvirt", []byte("on "+filepath.Base(p)), 0)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if arg := os.Getenv("FSVIRT_TEST_APPLY"); arg != "" {
		l, root, _ := strings.Cut(arg, ":")
		os.Stdout.WriteString("applying\n")
		if _, err := layer.Apply(l, layer.Options{Root: root}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// script changes a tree in every way a layer records: files modified, added, deleted, renamed;
// a directory deleted, one deleted and made again, one added with children; modes changed; a
// symlink; a hard link; a file replaced by a directory and a directory by a file.
const script = `set -e
echo more >> f
echo new > docs/new
rm docs/a
rm -r gone
rm -r again && mkdir again && echo fresh > again/only
mkdir -p made/deep && echo deep > made/deep/x
chmod 600 docs/b
chmod 1777 open
ln -s docs/b link
ln docs/new docs/hard
mv docs/c docs/c2
rm was-file && mkdir was-file && echo in > was-file/in
rm -r was-dir && echo now-a-file > was-dir
mv moved moved2
mv remade remade.old && mkdir -p remade/sub && echo again > remade/sub/z
`

var tree = []string{"file f shared", "dir docs", "file docs/a a", "file docs/b b", "file docs/c c",
	"dir gone", "file gone/x x", "dir again", "file again/old old", "dir open", "file was-file w",
	"dir was-dir", "file was-dir/y y", "dir moved", "dir moved/sub", "file moved/sub/z z",
	"dir remade", "dir remade/sub", "file remade/sub/z z"}

// listing prints, from the working directory, every name with its type, mode, owner and, for
// what is not a directory, link count, size, modification time, symlink target and digest: the
// same command inside the view and on the applied tree.
const listing = `find . -path ./.wh..wh..fsvirt -prune -o -type d -printf '%p %M %U:%G\n' -o -printf '%p %M %U:%G %n %s %T@ %l\n' | sort; find . -type f -exec sha256sum {} + | sort`

func list(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", listing)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("listing %s: %v: %s", dir, err, out)
	}
	return string(out)
}

// keep runs cmd in a view of shared and keeps its layer; it returns the layer and what cmd
// printed.
func keep(t *testing.T, shared, cmd string) (string, string) {
	t.Helper()
	l := filepath.Join(t.TempDir(), "layer")
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	res, err := impl.Run(context.Background(), impl.RunConfig{Trees: []string{shared}, Store: t.TempDir(), Keep: l,
		Path: "/bin/sh", Args: []string{"sh", "-c", cmd}, Dir: shared, Stdout: out})
	if err != nil || res.ExitStatus != 0 {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("Run: %v (result %v): %s", err, res != nil, b)
	}
	b, _ := os.ReadFile(out.Name())
	return l, string(b)
}

// TestApplyRoundTrip: a layer applied to a copy of the tree it was made over gives the tree the
// view showed at the end: names, types, modes, owners, link counts, sizes, times, targets, data.
func TestApplyRoundTrip(t *testing.T) {
	base := t.TempDir()
	shared := filepath.Join(base, "tree")
	treetest.Build(t, shared, tree...)
	l, viewed := keep(t, shared, script+listing)
	root := t.TempDir()
	treetest.Copy(t, shared, filepath.Join(root, shared))
	before := list(t, shared)
	if _, err := layer.Apply(l, layer.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	if got := list(t, filepath.Join(root, shared)); got != viewed {
		t.Errorf("the applied copy differs from the view's final state:\nview:\n%s\napplied:\n%s", viewed, got)
	}
	if after := list(t, shared); after != before {
		t.Errorf("apply under another root changed the shared tree:\n%s\n%s", before, after)
	}
	// Applying again changes nothing: every path already is what the layer makes of it.
	if _, err := layer.Apply(l, layer.Options{Root: root}); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if got := list(t, filepath.Join(root, shared)); got != viewed {
		t.Errorf("a second apply changed the tree:\n%s", got)
	}
}

// TestApplyInPlace: with the tree itself as root (fsvirt apply LAYER), the shared tree becomes
// what the view showed.
func TestApplyInPlace(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "tree")
	treetest.Build(t, shared, tree...)
	l, viewed := keep(t, shared, script+listing)
	if _, err := layer.Apply(l, layer.Options{}); err != nil {
		t.Fatal(err)
	}
	if got := list(t, shared); got != viewed {
		t.Errorf("the tree after apply differs from the view's final state:\nview:\n%s\napplied:\n%s", viewed, got)
	}
}

// TestKeepXattrs: the extended attributes a command gives what it makes are in the kept layer,
// and apply writes them into the tree.
func TestKeepXattrs(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "tree")
	treetest.Build(t, shared, "file f x")
	if err := unix.Lsetxattr(filepath.Join(shared, "f"), "user.probe", []byte("1"), 0); err != nil {
		t.Skipf("user xattrs on %s: %v", shared, err)
	}
	l := filepath.Join(t.TempDir(), "layer")
	res, err := impl.Run(context.Background(), impl.RunConfig{Trees: []string{shared}, Store: t.TempDir(), Keep: l,
		Path: os.Args[0], Args: []string{os.Args[0], "-test.run=^$"}, Env: append(os.Environ(), "FSVIRT_TEST_XATTRS="+shared)})
	if err != nil || res.ExitStatus != 0 {
		t.Fatalf("Run: %v, %+v", err, res)
	}
	root := t.TempDir()
	treetest.Copy(t, shared, filepath.Join(root, shared))
	if _, err := layer.Apply(l, layer.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(l, shared), filepath.Join(root, shared)} {
		for _, name := range []string{"g", "d"} {
			buf := make([]byte, 64)
			n, err := unix.Lgetxattr(filepath.Join(dir, name), "user.fsvirt", buf)
			if err != nil || string(buf[:n]) != "on "+name {
				t.Errorf("%s/%s: user.fsvirt = %q, %v; want %q", dir, name, buf[:max(n, 0)], err, "on "+name)
			}
		}
	}
}

// TestApplyXattrs: a file's extended attributes in the layer reach the tree.
func TestApplyXattrs(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "tree")
	treetest.Build(t, shared, "file f x")
	l, _ := keep(t, shared, "echo y > g")
	kept := filepath.Join(l, shared, "g")
	if err := unix.Lsetxattr(kept, "user.fsvirt.test", []byte("v"), 0); err != nil {
		t.Skipf("user xattrs: %v", err)
	}
	if _, err := layer.Apply(l, layer.Options{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := unix.Lgetxattr(filepath.Join(shared, "g"), "user.fsvirt.test", buf)
	if err != nil || string(buf[:n]) != "v" {
		t.Errorf("applied g has user.fsvirt.test = %q, %v; want \"v\"", buf[:n], err)
	}
}

// TestApplyConflicts: a tree changed since the view copied or removed a file, or that has
// gained a file the layer adds, is refused, the conflicting paths named, nothing changed.
func TestApplyConflicts(t *testing.T) {
	cases := []struct {
		name   string
		change string // run on the shared tree after the layer was kept
		want   []string
	}{
		{"modified-file-changed", "echo host >> f", []string{"f"}},
		{"modified-file-same-size", "printf 'SHARED' > f", []string{"f"}},
		{"modified-file-chmod", "chmod 640 f", []string{"f"}},
		{"modified-file-removed", "rm f", []string{"f"}},
		{"deleted-file-changed", "echo host >> docs/a", []string{"docs/a"}},
		{"deleted-dir-gained-a-file", "echo host > gone/y", []string{"gone"}},
		{"added-file-exists", "echo host > docs/new", []string{"docs/new"}},
		{"several", "echo host >> f; echo host > made", []string{"f", "made"}},
		{"moved-dir-gained-a-nested-file", "echo host > moved/sub/new", []string{"moved"}},
		{"remade-dir-gained-a-nested-file", "echo host > remade/sub/new", []string{"remade", "remade/sub"}},
		{"remade-dir-gained-a-file", "echo host > again/new", []string{"again"}},
		{"ancestor-now-a-symlink", "mv docs docs.moved && ln -s docs.moved docs", []string{"docs"}},
		{"deleted-file-gone-too", "rm docs/a", nil},
		{"unrelated-file", "echo host > unrelated", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			shared := filepath.Join(t.TempDir(), "tree")
			treetest.Build(t, shared, tree...)
			l, _ := keep(t, shared, script)
			if out, err := exec.Command("/bin/sh", "-c", "cd "+shared+" && "+tc.change).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", tc.change, err, out)
			}
			before := list(t, shared)
			_, err := layer.Apply(l, layer.Options{})
			var ce *layer.ConflictError
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Apply: %v, want no conflict", err)
				}
				return
			}
			if !errors.As(err, &ce) {
				t.Fatalf("Apply = %v, want a conflict", err)
			}
			var got []string
			for _, c := range ce.Conflicts {
				rel, _ := filepath.Rel(shared, c.Path)
				got = append(got, rel)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("conflicts %v, want %v (%v)", got, tc.want, err)
			}
			if after := list(t, shared); after != before {
				t.Errorf("a refused apply changed the tree:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestApplyKilled: an apply killed (SIGKILL) at a random moment leaves every file of the tree
// whole, as it was or as the layer has it, never half-written; applying again completes it.
func TestApplyKilled(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "tree")
	n, rounds := 40, 8
	if testing.Short() {
		n, rounds = 30, 4
	}
	var spec []string
	for i := range n {
		lines := 4000 // 28 kB
		if i%10 == 5 {
			lines = 150000 // 1 MB: long enough to be killed in the middle of writing it
		}
		spec = append(spec, fmt.Sprintf("file f%03d %s", i, strings.Repeat(fmt.Sprintf("old %d\n", i), lines)))
	}
	treetest.Build(t, shared, spec...)
	l, viewed := keep(t, shared, `for f in f*; do sed -i 's/old/NEW/' $f; done; rm f000; echo added > zz;`+listing)
	oldData, newData := map[string]string{}, map[string]string{}
	for i := range n {
		name := fmt.Sprintf("f%03d", i)
		b, _ := os.ReadFile(filepath.Join(shared, name))
		oldData[name] = string(b)
		b, _ = os.ReadFile(filepath.Join(l, shared, name))
		newData[name] = string(b)
	}
	newData["zz"] = "added\n"
	// How long a whole apply takes here, to kill within it.
	root := t.TempDir()
	treetest.Copy(t, shared, filepath.Join(root, shared))
	start := time.Now()
	if _, err := layer.Apply(l, layer.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	whole := time.Since(start)
	partial := 0
	for r := range rounds {
		root := t.TempDir()
		dst := filepath.Join(root, shared)
		treetest.Copy(t, shared, dst)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "FSVIRT_TEST_APPLY="+l+":"+root)
		cmd.Stderr = os.Stderr
		started, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started.Read(make([]byte, 16)) // "applying": kill anywhere from here to past its end
		time.Sleep(time.Duration(rand.Int64N(int64(whole + whole/4))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		ents, _ := os.ReadDir(dst)
		old, new := 0, 0
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, ".fsvirt-apply-") {
				continue // the file being written when it was killed: not in place yet
			}
			b, err := os.ReadFile(filepath.Join(dst, name))
			if err != nil {
				t.Fatal(err)
			}
			switch string(b) {
			case oldData[name]:
				old++
			case newData[name]:
				new++
			default:
				t.Fatalf("round %d: %s is neither the old file nor the new one (%d bytes)", r, name, len(b))
			}
		}
		if old > 0 && new > 0 {
			partial++
		}
		if _, err := layer.Apply(l, layer.Options{Root: root}); err != nil {
			t.Fatalf("round %d: apply after the kill: %v", r, err)
		}
		if got := list(t, dst); got != viewed {
			t.Fatalf("round %d: after the kill and a second apply the tree differs from the view's:\n%s\n%s", r, viewed, got)
		}
	}
	t.Logf("%d files, a whole apply %v; %d of %d kills landed in the middle", n, whole, partial, rounds)
}

// TestApplyRefusesUnrecorded: a file or whiteout in the layer that its record does not list is
// refused before anything is written: apply (and loading a layer into a view) writes only what
// the record lists.
func TestApplyRefusesUnrecorded(t *testing.T) {
	for _, extra := range []string{"stray", ".wh.motd"} {
		t.Run(extra, func(t *testing.T) {
			shared := filepath.Join(t.TempDir(), "tree")
			treetest.Build(t, shared, "file motd hello", "file f x")
			l, _ := keep(t, shared, "echo y > f; echo new > g")
			if err := os.WriteFile(filepath.Join(l, shared, extra), []byte("planted"), 0o644); err != nil {
				t.Fatal(err)
			}
			before := list(t, shared)
			for _, opt := range []layer.Options{{}, {NoCheck: true}} {
				_, err := layer.Apply(l, opt)
				if err == nil || !strings.Contains(err.Error(), filepath.Join(shared, extra)+", which its record") {
					t.Errorf("Apply(%+v) = %v, want a refusal naming %s", opt, err, extra)
				}
			}
			if after := list(t, shared); after != before {
				t.Errorf("a refused apply changed the tree:\n%s", after)
			}
		})
	}
}
