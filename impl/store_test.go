package impl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

func newStorePool(t *testing.T, cfg Config) *Pool {
	t.Helper()
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// listNames lists directory dir, sorted.
func listNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, err
}

// notFound returns an error unless err is ENOENT.
func notFound(what string, err error) error {
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("%s: %v, want ENOENT", what, err)
}

// TestStoreRootHiddenAcrossViews: one invocation of a pool writes a secret in its view and holds a
// descriptor of it; another invocation of that pool and one of a second pool, all three with one
// store directory, inside the tree, find no trace of any private layer: not in a listing of the
// store directory or a walk of the tree, not by path, not through the magic links of the
// descriptor (/proc/self/fd/N) or of a process whose working directory is in the layer
// (/proc/PID/cwd).
func TestStoreRootHiddenAcrossViews(t *testing.T) {
	base := t.TempDir()
	shared, storeDir := base+"/data", base+"/tmp"
	treetest.Build(t, base, "dir data", "file data/f shared", "dir tmp", "file tmp/other x")
	a := newStorePool(t, Config{Workers: 2, Trees: []string{base}, Store: storeDir})
	b := newStorePool(t, Config{Workers: 1, Trees: []string{base}, Store: storeDir})
	const secret = "secret-7f3a"
	ctx := context.Background()

	ready, done := make(chan struct{}), make(chan struct{})
	var layer string
	var fd int
	errA := make(chan error, 1)
	go func() {
		errA <- a.Invoke(ctx, func(inv *Invocation) error {
			defer close(ready)
			if err := os.WriteFile(shared+"/f", []byte(secret), 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(shared+"/new", []byte(secret), 0o644); err != nil {
				return err
			}
			var err error
			if fd, err = unix.Open(shared+"/new", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
				return err
			}
			defer unix.Close(fd)
			layer = inv.LayerDir()
			ready <- struct{}{}
			<-done
			return nil
		})
	}()
	<-ready
	defer func() {
		close(done)
		if err := <-errA; err != nil {
			t.Error(err)
		}
	}()
	// A process outside any view that works in the secret's directory.
	sleeper := exec.Command("sleep", "60")
	sleeper.Dir = layer + "/upper" + shared
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Wait()
	defer sleeper.Process.Kill()
	cwd := "/proc/" + strconv.Itoa(sleeper.Process.Pid) + "/cwd"
	magic := "/proc/self/fd/" + strconv.Itoa(fd)
	user := userStoreRoot(storeDir)

	look := func(*Invocation) error {
		var errs []error
		if names, err := listNames(storeDir); err != nil || !slices.Equal(names, []string{"other"}) {
			errs = append(errs, fmt.Errorf("%s lists %q (%v), want only other", storeDir, names, err))
		}
		for _, p := range []string{user, filepath.Dir(layer), layer, layer + "/upper" + shared + "/new",
			user + "/..", magic, cwd, cwd + "/new"} {
			var st unix.Stat_t
			errs = append(errs, notFound("stat "+p, unix.Stat(p, &st)))
		}
		for _, p := range []string{magic, cwd + "/new", layer + "/upper" + shared + "/f"} {
			b, err := os.ReadFile(p)
			errs = append(errs, notFound(fmt.Sprintf("read %s (%q)", p, b), err))
		}
		_, err := os.Readlink(magic)
		errs = append(errs, notFound("readlink "+magic, err))
		_, err = os.Readlink(cwd)
		errs = append(errs, notFound("readlink "+cwd, err))
		if b, err := os.ReadFile(shared + "/f"); string(b) != "shared" {
			errs = append(errs, fmt.Errorf("%s/f reads %q (%v), want the shared file", shared, b, err))
		}
		err = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if within(p, user) {
				errs = append(errs, fmt.Errorf("the walk of the tree reached %s", p))
			}
			if d.Type().IsRegular() {
				if b, err := os.ReadFile(p); err != nil || strings.Contains(string(b), secret) {
					errs = append(errs, fmt.Errorf("the walk of the tree read %s: %q (%v)", p, b, err))
				}
			}
			return nil
		})
		return errors.Join(append(errs, err)...)
	}
	if err := a.Invoke(ctx, look); err != nil {
		t.Errorf("another invocation of the same pool:\n%v", err)
	}
	if err := b.Invoke(ctx, look); err != nil {
		t.Errorf("an invocation of another pool:\n%v", err)
	}
}

// TestStoreRootNotListed: a view lists the directory that holds the store root without it, however
// the directory is opened, and counts that as no change; the name is free in the view, as that of
// a removed file is, and a file made there is the view's own.
func TestStoreRootNotListed(t *testing.T) {
	base := t.TempDir()
	storeDir := base + "/tmp"
	treetest.Build(t, base, "dir tmp", "dir tmp/sub", "file tmp/other x")
	p := newStorePool(t, Config{Workers: 1, Trees: []string{base}, Store: storeDir})
	user := userStoreRoot(storeDir)
	err := p.Invoke(context.Background(), func(inv *Invocation) error {
		var errs []error
		list := func(how string, names []string, err error, want ...string) {
			if err != nil || !slices.Equal(names, want) {
				errs = append(errs, fmt.Errorf("%s lists %q (%v), want %q", how, names, err, want))
			}
		}
		names, err := listNames(storeDir)
		list(storeDir, names, err, "other", "sub")
		names, err = listNames(storeDir + "/sub/..")
		list(storeDir+"/sub/..", names, err, "other", "sub")
		if dir, err := os.Open(base); err == nil { // relative to a descriptor of its parent
			fd, err := unix.Openat(int(dir.Fd()), "tmp", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err == nil {
				f := os.NewFile(uintptr(fd), "tmp")
				names, err = f.Readdirnames(-1)
				slices.Sort(names)
				f.Close()
			}
			list("openat(base, tmp)", names, err, "other", "sub")
			dir.Close()
		}
		if err := os.Chdir(storeDir); err == nil { // from the working directory
			names, err = listNames(".")
			list("cd "+storeDir+"; ls .", names, err, "other", "sub")
		}
		var st unix.Stat_t // one link fewer than on the host: the store root is not a subdirectory
		if err := unix.Stat(storeDir, &st); err != nil || st.Nlink != 3 {
			errs = append(errs, fmt.Errorf("stat %s: %d links (%v), want 3", storeDir, st.Nlink, err))
		}
		if c := inv.Changes(); len(c) != 0 {
			errs = append(errs, fmt.Errorf("changes %v after listing, want none", c))
		}
		if err := os.Remove(storeDir + "/other"); err != nil {
			return err
		}
		if c := inv.Changes(); !slices.Equal(c, []Change{{'D', storeDir + "/other"}}) {
			errs = append(errs, fmt.Errorf("changes %v, want only other deleted", c))
		}
		// The name is free.
		if err := os.Mkdir(user, 0o700); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := os.WriteFile(user+"/mine", []byte("mine"), 0o600); err != nil {
			return errors.Join(append(errs, err)...)
		}
		names, err = listNames(storeDir)
		list(storeDir, names, err, filepath.Base(user), "sub")
		names, err = listNames(user)
		list(user, names, err, "mine")
		if b, err := os.ReadFile(user + "/mine"); string(b) != "mine" {
			errs = append(errs, fmt.Errorf("read %s/mine: %q (%v)", user, b, err))
		}
		want := []Change{{'A', user}, {'A', user + "/mine"}, {'D', storeDir + "/other"}}
		if c := inv.Changes(); !slices.Equal(c, want) {
			errs = append(errs, fmt.Errorf("changes %v, want %v", c, want))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(user+"/mine", &st); err != unix.ENOENT {
		t.Errorf("the view's %s/mine is in the store root on the host (%v)", user, err)
	}
	if _, err := os.Stat(storeDir + "/other"); err != nil {
		t.Errorf("the view's removal reached the shared tree: %v", err)
	}
}

// TestStoreSweepsDeadStores: a new store sweeps the stores in the user's store root whose process
// has died (their lock is free, or gone: killed while removing its store), and leaves those of
// live processes.
func TestStoreSweepsDeadStores(t *testing.T) {
	storeDir := t.TempDir()
	user := userStoreRoot(storeDir)
	treetest.Build(t, user, "dir store-dead", "dir store-dead/inv-3", "dir store-dead/inv-3/upper", "file store-dead/lock",
		"dir store-live", "file store-live/lock", "dir store-half-removed", "dir store-half-removed/inv-1", "dir store-half-removed/inv-1/upper")
	if err := os.Chmod(user, 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := unix.Open(user+"/store-live/lock", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lock)
	if err := unix.Flock(lock, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	p, err := NewPool(Config{Store: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	if got := storeEntries(t, storeDir); !slices.Equal(got, []string{filepath.Base(user) + "/store-live"}) {
		t.Errorf("store directory holds %q after a pool came and went, want only the live store", got)
	}
}

// TestStoreRootRefused: a store directory that is not a directory, and a store root that another
// user could have planted or can change, are refused with an error that says what is wrong, and
// nothing is made.
func TestStoreRootRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir, user string) // dir: the --store directory
		want  string
	}{
		{"store-is-file", func(t *testing.T, dir, user string) {
			treetest.Build(t, dir, "file store x")
		}, "not a directory"},
		{"root-is-symlink", func(t *testing.T, dir, user string) {
			treetest.Build(t, dir, "dir store", "dir elsewhere", "symlink store/"+filepath.Base(user)+" -> ../elsewhere")
		}, "is a symbolic link"},
		{"root-is-file", func(t *testing.T, dir, user string) {
			treetest.Build(t, dir, "dir store", "file store/"+filepath.Base(user)+" x")
		}, "is not a directory"},
		{"root-of-another-user", func(t *testing.T, dir, user string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			treetest.Build(t, dir, "dir store", "dir store/"+filepath.Base(user))
			if err := os.Chmod(user, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(user, 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}, "is owned by uid 4242"},
		{"root-writable-by-others", func(t *testing.T, dir, user string) {
			treetest.Build(t, dir, "dir store", "dir store/"+filepath.Base(user))
			if err := os.Chmod(user, 0o733); err != nil {
				t.Fatal(err)
			}
		}, "is writable by others"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			store := dir + "/store"
			user := userStoreRoot(store)
			tt.setup(t, dir, user)
			before := treetest.Snap(t, dir)
			p, err := NewPool(Config{Store: store})
			if err == nil {
				p.Close()
				t.Fatal("NewPool succeeded")
			}
			_, rerr := Run(context.Background(), RunConfig{Store: store, Path: "/bin/true", Args: []string{"true"}})
			for _, err := range []error{err, rerr} {
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), store) {
					t.Errorf("error %v, want one that names %s and says %q", err, store, tt.want)
				}
			}
			if d := before.Diff(treetest.Snap(t, dir), treetest.Exact); d != nil {
				t.Errorf("the refused store changed %s: %q", dir, d)
			}
		})
	}
}

// BenchmarkStoreParentHidden measures what hiding the store root from the listing of its directory
// costs an invocation, against the same call on a directory like it that holds no store root,
// interleaved on one pool: a stat (which makes the store's directory partial: a private layer, a
// mirror of each subdirectory), a listing (which materializes it: a placeholder for each entry),
// and, for scale, an invocation that creates one file.
func BenchmarkStoreParentHidden(b *testing.B) {
	for _, entries := range []int{8, 1000} {
		b.Run(strconv.Itoa(entries)+"-entries", func(b *testing.B) {
			base := b.TempDir()
			storeDir, other := base+"/tmp", base+"/other"
			for _, d := range []string{storeDir, other} {
				if err := os.Mkdir(d, 0o755); err != nil {
					b.Fatal(err)
				}
				for i := 0; i < entries; i++ {
					name := fmt.Sprintf("%s/e%d", d, i)
					var err error
					if i%8 == 0 {
						err = os.Mkdir(name, 0o755)
					} else {
						err = os.WriteFile(name, nil, 0o644)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			p, err := NewPool(Config{Workers: 1, Trees: []string{base}, Store: storeDir})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			stat := func(dir string) func() error {
				return func() error { var st unix.Stat_t; return unix.Stat(dir, &st) }
			}
			list := func(dir string) func() error {
				return func() error {
					names, err := listNames(dir)
					if err == nil && len(names) != entries {
						err = fmt.Errorf("%s lists %d names, want %d", dir, len(names), entries)
					}
					return err
				}
			}
			variants := []struct {
				name string
				fn   func() error
			}{
				{"stat-other", stat(other)},
				{"stat-store-dir", stat(storeDir)},
				{"list-other", list(other)},
				{"list-store-dir", list(storeDir)},
				{"create-file", func() error { return os.WriteFile(other+"/new", nil, 0o644) }},
			}
			total := make([]time.Duration, len(variants))
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j, v := range variants {
					t0 := time.Now()
					if err := p.Invoke(ctx, func(*Invocation) error { return v.fn() }); err != nil {
						b.Fatal(err)
					}
					total[j] += time.Since(t0)
				}
			}
			b.StopTimer()
			for j, v := range variants {
				b.ReportMetric(float64(total[j])/float64(b.N), v.name+"-ns/op")
			}
		})
	}
}

// TestOpenStoreInvisible checks that nothing inside the store can be opened from a view.
func TestOpenStoreInvisible(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f x")
	storeRoot := t.TempDir()
	p, err := NewPool(Config{Trees: []string{"/"}, Store: storeRoot})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	store := p.store.dir
	// An absolute target, which the tree notation leaves out.
	if err := os.Symlink(store, shared+"/into-store"); err != nil {
		t.Fatal(err)
	}
	err = p.Invoke(context.Background(), func(*Invocation) error {
		fd, err := unix.Open(shared+"/f", unix.O_WRONLY, 0) // something in the private layer
		if err != nil {
			return err
		}
		unix.Close(fd)
		for _, path := range []string{store, store + "/lock", store + "/inv-1/upper" + shared + "/f", shared + "/into-store/lock", store + "/../" + filepath.Base(store) + "/lock"} {
			for _, flags := range []int{unix.O_RDONLY, unix.O_WRONLY | unix.O_CREAT} {
				fd, err := unix.Open(path, flags, 0o644)
				if err != unix.ENOENT {
					unix.Close(fd)
					t.Errorf("open(%s, %#o) = %v, want ENOENT", path, flags, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
