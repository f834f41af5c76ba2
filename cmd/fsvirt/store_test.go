package main

import (
	"bufio"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// TestStoreRootAcrossRuns: while one fsvirt run holds a secret in its view, a second run with the
// same --store, inside the tree, finds no store in a listing of the store directory or of the
// store root, cannot read the secret by its path in the first run's private layer, and reports no
// change (--diff, --json, --keep) for the store root it did not see.
func TestStoreRootAcrossRuns(t *testing.T) {
	requireEngine(t)
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store, data, keep := filepath.Join(base, "tmp"), filepath.Join(base, "data"), filepath.Join(t.TempDir(), "keep")
	for _, d := range []string{store, data} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(store, "other"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const secret = "secret-9b2e"

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	first := exec.CommandContext(ctx, fsvirtBin, "run", "--tree", base, "--store", store, "--",
		"sh", "-c", "echo "+secret+" > "+data+"/f; echo ready; read x || true")
	stdin, err := first.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := first.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Wait()
	defer stdin.Close()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		t.Fatalf("first run said %q (%v), want ready", line, err)
	}
	// The secret's path on the host, in the first run's private layer.
	var private string
	filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "f" {
			private = p
		}
		return nil
	})
	if private == "" {
		t.Fatal("the first run's private layer holds no f")
	}
	user := userRoot(store)
	r := fsvirt(t, "run", "--tree", base, "--store", store, "--diff", "--json", "--keep", keep, "--",
		"sh", "-c", "ls -a "+store+"; ls -a "+user+"; cat "+private+"; ls "+store+"/*/*/inv-*; cat "+data+"/f")
	if want := ".\n..\nother\n"; r.stdout != want {
		t.Errorf("second run printed %q, want only the listing %q", r.stdout, want)
	}
	if strings.Contains(r.stdout+r.stderr, secret) {
		t.Errorf("second run read the secret: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if n := strings.Count(r.stderr, "No such file or directory"); n != 4 {
		t.Errorf("stderr %q: %d ENOENT, want 4 (ls of the store root, cat of the secret, ls of a glob that matched nothing, cat of data/f)", r.stderr, n)
	}
	if s := lastJSON(t, r.stderr); len(s.Changes) != 0 {
		t.Errorf("--json reports changes %v, want none", s.Changes)
	}
	if strings.Contains(r.stderr, "D ") {
		t.Errorf("--diff reports a deletion: %q", r.stderr)
	}
	// Nothing but the layer's record, which lists no change.
	if ents, err := os.ReadDir(keep); err != nil || len(ents) != 1 || ents[0].Name() != ".wh..wh..fsvirt" {
		t.Errorf("--keep wrote %v (%v), want the record only", ents, err)
	}
	if rec, err := os.ReadFile(filepath.Join(keep, ".wh..wh..fsvirt")); err != nil || !strings.Contains(string(rec), `"changes": []`) {
		t.Errorf("--keep's record: %s (%v), want no change", rec, err)
	}
	stdin.Close()
	if err := first.Wait(); err != nil {
		t.Errorf("first run: %v", err)
	}
	if ents, err := os.ReadDir(user); err != nil || len(ents) != 0 {
		t.Errorf("store root %s holds %v (%v) after both runs", user, ents, err)
	}
}

// TestStoreRootRefused: a --store that is not a directory, and a store root in it that another
// user could have planted, are refused with a reason (exit status 125), and nothing is made.
func TestStoreRootRefused(t *testing.T) {
	requireEngine(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, store string)
		want  string
	}{
		{"store-is-file", func(t *testing.T, store string) {
			if err := os.WriteFile(store, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a directory"},
		{"root-is-symlink", func(t *testing.T, store string) {
			if err := os.Mkdir(store, 0o755); err != nil {
				t.Fatal(err)
			}
			// To a directory beside the store, where the snapshot of the test's directory sees
			// whatever a run would make in it.
			elsewhere := filepath.Join(filepath.Dir(store), "elsewhere")
			if err := os.Mkdir(elsewhere, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(elsewhere, userRoot(store)); err != nil {
				t.Fatal(err)
			}
		}, "is a symbolic link"},
		{"root-of-another-user", func(t *testing.T, store string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			if err := os.MkdirAll(userRoot(store), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(userRoot(store), 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}, "is owned by uid 4242"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			store := filepath.Join(dir, "store")
			tt.setup(t, store)
			before := treetest.Snap(t, dir)
			r := fsvirt(t, "run", "--store", store, "--", "true")
			if r.code != 125 || !strings.Contains(r.stderr, store) || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit status %d, stderr %q; want 125 and a reason that names %s and says %q", r.code, r.stderr, store, tt.want)
			}
			if d := before.Diff(treetest.Snap(t, dir), treetest.Exact); d != nil {
				t.Errorf("the refused store changed %s: %q", dir, d)
			}
		})
	}
}
