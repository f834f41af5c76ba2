package impl

// Thread mode's share of the adversarial suite (cmd/fsvirt/attack_test.go has the rest): what one
// invocation leaves in the process must give the next nothing of its view, and a process started
// with Start must not change the shared tree by racing the supervisor.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fsvirt/fsvirt/internal/attacktest"
	"github.com/fsvirt/fsvirt/internal/treetest"
	"golang.org/x/sys/unix"
)

// TestAttackThreadLeakedDescriptor: invocation 1 writes a secret into its view of a shared file
// and leaves a descriptor of it open; invocation 2, on the same worker, reads through every
// descriptor number of the process and must not find the secret.
func TestAttackThreadLeakedDescriptor(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared")
	p, _ := newTestPool(t, 1, shared)
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	secret := []byte("attack-secret-" + hex.EncodeToString(b))

	leaked := -1
	var leakedStat unix.Stat_t
	err := p.Invoke(context.Background(), func(*Invocation) error {
		if err := os.WriteFile(filepath.Join(shared, "f"), secret, 0o644); err != nil {
			return err
		}
		fd, err := unix.Open(filepath.Join(shared, "f"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		leaked = fd // deliberately left open
		return unix.Fstat(fd, &leakedStat)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Close the leak, unless the engine closed it and the number now names another file.
		var st unix.Stat_t
		if unix.Fstat(leaked, &st) == nil && st.Dev == leakedStat.Dev && st.Ino == leakedStat.Ino {
			unix.Close(leaked)
		}
	})

	var found []int
	err = p.Invoke(context.Background(), func(*Invocation) error {
		buf := make([]byte, 4096)
		for fd := 3; fd < 1024; fd++ {
			// pread never blocks: a pipe, socket or terminal says ESPIPE.
			if n, err := unix.Pread(fd, buf, 0); err == nil && bytes.Contains(buf[:n], secret) {
				found = append(found, fd)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range found {
		t.Errorf("invocation 2 read invocation 1's private copy through fd %d (invocation 1 left fd %d open)", fd, leaked)
	}
	if b, _ := os.ReadFile(filepath.Join(shared, "f")); string(b) != "shared" {
		t.Errorf("shared f holds %q", b)
	}
}

// flipBudget bounds each race, in milliseconds (flip.c also stops after 20000 calls, and once it
// sees the shared tree change).
const flipBudget = "1000"

// flipOps are the path-flip attacks (cmd/fsvirt/testdata/attack/flip.c) that thread mode runs
// through Start: the call, and the shared paths it flips to, by the fixture's names.
var flipOps = []struct {
	name, op string
	shared   []string
}{
	{"truncate-path-flip", "truncate", []string{"root-file"}},
	{"chmod-path-flip", "chmod", []string{"root-file"}},
	{"setxattr-path-flip", "setxattr", []string{"root-file"}},
	{"unlink-path-flip", "unlink", []string{"root-file"}},
	{"rename-away-path-flip", "rename", []string{"root-file", "renamed"}},
	{"bind-path-flip", "bind", []string{"made-socket"}},
}

// TestAttackThreadStartFlip runs flip.c in thread mode, started with Invocation.Start, with each
// policy: a path buffer rewritten between a decoy outside the tree and a shared file must not let
// a call through to the shared file.
func TestAttackThreadStartFlip(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc is not installed (scripts/test.sh installs it)")
	}
	flip := attacktest.Compile(t, filepath.Join("..", "cmd", "fsvirt", "testdata", "attack", "flip.c"), t.TempDir())
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		for _, fo := range flipOps {
			t.Run(fo.name+"/"+pol.String(), func(t *testing.T) {
				// root/t is the tree, holding only the fixture; root/d the decoys, whose paths
				// are the shared ones with one byte changed (see flip.c).
				root := attacktest.TempDir(t, attacktest.FlagsBase(), "attack-", 0o755, os.Geteuid())
				parent, decoy := filepath.Join(root, "t"), filepath.Join(root, "d")
				if err := os.Mkdir(parent, 0o755); err != nil {
					t.Fatal(err)
				}
				fx := attacktest.NewFixture(t, parent)
				fx.Mirror(t, decoy, os.Geteuid())
				p, err := NewPool(Config{Workers: 1, Trees: []string{parent}, Store: t.TempDir(), Policy: pol})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if err := p.Close(); err != nil {
						t.Error(err)
					}
				})
				argv := []string{fo.op, flipBudget}
				for _, name := range fo.shared {
					target := filepath.Join(fx.Dir, name)
					argv = append(argv, decoy+strings.TrimPrefix(target, parent), target)
				}
				before := fx.Take(t)
				var out bytes.Buffer
				err = p.Invoke(context.Background(), func(inv *Invocation) error {
					cmd := exec.Command(flip, argv...)
					cmd.Stdout, cmd.Stderr = &out, &out
					if err := inv.Start(cmd); err != nil {
						return err
					}
					return cmd.Wait()
				})
				t.Logf("flip %s: %v\n%s", strings.Join(argv, " "), err, out.String())
				if err != nil {
					t.Errorf("the attack did not run to its end: %v", err)
				}
				fx.Check(t, before)
			})
		}
	}
}
