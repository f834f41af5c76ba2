package impl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/layer"
	"github.com/fsvirt/fsvirt/internal/treetest"
)

// keepScript changes a tree in every way a layer records: files modified, added, deleted; a
// directory deleted, one deleted and made again, one added with children; modes changed; a
// symlink; a rename.
const keepScript = `set -e
echo more >> f
echo new > docs/new
rm docs/a
rm -r gone
rm -r again && mkdir again && echo fresh > again/only
mkdir -p made/deep && echo deep > made/deep/x
chmod 600 docs/b
chmod 1777 open
ln -s docs/b link
mv docs/c docs/c2
`

var keepTree = []string{"file f shared", "dir docs", "file docs/a a", "file docs/b b", "file docs/c c",
	"dir gone", "file gone/x x", "dir again", "file again/old old", "dir open"}

// TestKeepAppliesToTheViewsState: the kept layer, applied over a copy of the shared tree as an OCI
// layer is applied, gives what the same script gives run on a copy of its own.
func TestKeepAppliesToTheViewsState(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "tree")
	os.Mkdir(shared, 0o755)
	treetest.Build(t, shared, keepTree...)
	ref := treetest.Copy(t, shared, filepath.Join(t.TempDir(), "copy"))
	if out, err := exec.Command("/bin/sh", "-c", "cd "+ref+" && "+keepScript).CombinedOutput(); err != nil {
		t.Fatalf("reference run: %v: %s", err, out)
	}
	keep := filepath.Join(t.TempDir(), "kept")
	res, err := Run(context.Background(), RunConfig{Trees: []string{shared}, Store: t.TempDir(), Keep: keep,
		Path: "/bin/sh", Args: []string{"sh", "-c", "cd " + shared + " && " + keepScript}})
	if err != nil || res.ExitStatus != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	applied := treetest.Copy(t, shared, filepath.Join(t.TempDir(), "copy"))
	applyLayer(t, filepath.Join(keep, shared), applied)
	if d := treetest.Snap(t, ref).Diff(treetest.Snap(t, applied), treetest.Data); d != nil {
		t.Errorf("the kept layer applied over the shared tree differs from the script's result: %q", d)
	}
	// The directories above the tree are in the layer with their own modes: applying it changes
	// none of them.
	for _, a := range ancestors(shared) {
		var kst, st unix.Stat_t
		if err := unix.Lstat(filepath.Join(keep, a), &kst); err != nil {
			t.Fatal(err)
		}
		unix.Lstat(a, &st)
		if kst.Mode != st.Mode || kst.Uid != st.Uid {
			t.Errorf("layer has %s as %o %d, the view %o %d", a, kst.Mode, kst.Uid, st.Mode, st.Uid)
		}
	}
}

// TestKeepRefusesNonEmptyDirectory: a layer is not merged into a directory that holds something;
// the command does not run.
func TestKeepRefusesNonEmptyDirectory(t *testing.T) {
	shared := t.TempDir()
	keep := t.TempDir()
	os.WriteFile(filepath.Join(keep, "old"), nil, 0o644)
	marker := filepath.Join(t.TempDir(), "ran")
	_, err := Run(context.Background(), RunConfig{Trees: []string{shared}, Store: t.TempDir(), Keep: keep,
		Path: "/bin/sh", Args: []string{"sh", "-c", "touch " + marker}})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Run with a non-empty keep directory: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran although the keep directory was refused")
	}
}

// applyLayer applies an unpacked OCI layer changeset over root: opaque markers clear their
// directory, whiteouts remove their name, everything else replaces what is there.
func applyLayer(t *testing.T, layer, root string) {
	t.Helper()
	err := filepath.WalkDir(layer, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(layer, p)
		dst := filepath.Join(root, rel)
		name := d.Name()
		switch {
		case rel == ".":
			return nil
		case name == ".wh..wh..opq":
			ents, _ := os.ReadDir(filepath.Dir(dst))
			for _, e := range ents {
				if _, err := os.Lstat(filepath.Join(filepath.Dir(p), e.Name())); os.IsNotExist(err) {
					os.RemoveAll(filepath.Join(filepath.Dir(dst), e.Name()))
				}
			}
			return nil
		case strings.HasPrefix(name, ".wh."):
			return os.RemoveAll(filepath.Join(filepath.Dir(dst), strings.TrimPrefix(name, ".wh.")))
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if d.IsDir() {
			if fi, err := os.Lstat(dst); err != nil || !fi.IsDir() {
				os.RemoveAll(dst)
				if err := os.Mkdir(dst, 0o700); err != nil {
					return err
				}
			}
		} else {
			os.RemoveAll(dst)
			if out, err := exec.Command("cp", "-a", p, dst).CombinedOutput(); err != nil {
				return fmt.Errorf("cp: %v: %s", err, out)
			}
		}
		return keepMeta(p, dst, &st)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKeepRecordsOrigins: the layer's record lists every change with its kind as a word, and
// for what the view modified or deleted, the shared object as it was before the run: its inode,
// size, times and a digest of its data.
func TestKeepRecordsOrigins(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "tree")
	os.Mkdir(shared, 0o755)
	treetest.Build(t, shared, keepTree...)
	before := map[string]unix.Stat_t{}
	for _, p := range []string{"f", "docs/a", "docs/c"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(shared, p), &st); err != nil {
			t.Fatal(err)
		}
		before[filepath.Join(shared, p)] = st
	}
	keep := filepath.Join(t.TempDir(), "kept")
	res, err := Run(context.Background(), RunConfig{Trees: []string{shared}, Store: t.TempDir(), Keep: keep,
		Path: "/bin/sh", Args: []string{"sh", "-c", "cd " + shared + " && " + keepScript}})
	if err != nil || res.ExitStatus != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	rec, err := layer.ReadRecord(keep)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Changes) != len(res.Changes) {
		t.Fatalf("record has %d changes, the run %d", len(rec.Changes), len(res.Changes))
	}
	for i, c := range rec.Changes {
		if r := res.Changes[i]; c.Path != r.Path || layer.KindLetter(c.Kind) != r.Kind {
			t.Errorf("record change %d is %s %s, the run's %c %s", i, c.Kind, c.Path, r.Kind, r.Path)
		}
		st, ok := before[c.Path]
		if !ok {
			continue
		}
		o := c.Origin
		if o == nil {
			t.Errorf("%s %s: no origin", c.Kind, c.Path)
			continue
		}
		if o.Ino != st.Ino || o.Dev != st.Dev || o.Size != st.Size || o.Mtime != st.Mtim.Nano() || o.Ctime != st.Ctim.Nano() || o.Type != "file" {
			t.Errorf("%s: origin %+v, the file before the run %+v", c.Path, o, st)
		}
		data, _ := os.ReadFile(c.Path)
		if sum := sha256.Sum256(data); o.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: digest %s, the file's %x", c.Path, o.SHA256, sum)
		}
	}
	// The record is AUFS metadata to an OCI runtime: skipped, like every .wh..wh. name but the
	// opaque marker.
	if !strings.HasPrefix(layer.RecordName, ".wh..wh.") || layer.RecordName == ".wh..wh..opq" {
		t.Errorf("record name %q would be unpacked as a file", layer.RecordName)
	}
}

// TestKeepOriginIsAtCopyUp: a shared file that changes after the view copied it up is recorded as
// it was at the copy-up, without a digest (its data is no longer the data the view copied).
func TestKeepOriginIsAtCopyUp(t *testing.T) {
	shared := t.TempDir()
	f := filepath.Join(shared, "f")
	os.WriteFile(f, []byte("shared\n"), 0o644)
	var before unix.Stat_t
	unix.Lstat(f, &before)
	sig := t.TempDir() // outside the tree: the host's
	ready, gate := filepath.Join(sig, "ready"), filepath.Join(sig, "gate")
	script := fmt.Sprintf("echo more >> %s && touch %s && while [ ! -e %s ]; do sleep 0.01; done", f, ready, gate)
	keep := filepath.Join(t.TempDir(), "kept")
	done := make(chan error, 1)
	go func() {
		res, err := Run(context.Background(), RunConfig{Trees: []string{shared}, Store: t.TempDir(), Keep: keep,
			Path: "/bin/sh", Args: []string{"sh", "-c", script}})
		if err == nil && res.ExitStatus != 0 {
			err = fmt.Errorf("exit status %d", res.ExitStatus)
		}
		done <- err
	}()
	for i := 0; ; i++ {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if i == 3000 {
			t.Fatal("the command did not copy f up within 30 s")
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
	}
	if err := os.WriteFile(f, []byte("changed on the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(gate, nil, 0o644)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec, err := layer.ReadRecord(keep)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Changes) != 1 || rec.Changes[0].Origin == nil {
		t.Fatalf("record: %+v", rec)
	}
	o := rec.Changes[0].Origin
	if o.Ino != before.Ino || o.Size != before.Size || o.Mtime != before.Mtim.Nano() || o.SHA256 != "" {
		t.Errorf("origin %+v, want the file before the run (ino %d size %d mtime %d) without a digest", o, before.Ino, before.Size, before.Mtim.Nano())
	}
	if ok, _ := o.Unchanged(f); ok {
		t.Error("Unchanged says the file changed on the host is unchanged")
	}
}

func TestProcessKeep(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared")
	keep := t.TempDir() + "/kept"
	res, err := Run(context.Background(), RunConfig{Trees: []string{shared}, Store: t.TempDir(),
		Path: "/bin/sh", Args: []string{"sh", "-c", "echo kept > " + shared + "/f"}, Keep: keep})
	if err != nil || res.ExitStatus != 0 {
		t.Fatalf("Run = %v, %v", res, err)
	}
	if b, err := os.ReadFile(keep + shared + "/f"); err != nil || string(b) != "kept\n" {
		t.Errorf("kept layer has %q, %v", b, err)
	}
}
