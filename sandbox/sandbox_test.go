package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fsvirt/fsvirt/sandbox"
)

// TestPanicIsOneLine: a panic in the function comes back as a *PanicError whose message is one
// line, with the stack, which names the function, beside it; the pool goes on.
func TestPanicIsOneLine(t *testing.T) {
	pool, err := sandbox.NewPool(sandbox.Config{Trees: []string{t.TempDir()}, Store: t.TempDir()})
	if err != nil {
		t.Skip(err)
	}
	defer pool.Close()
	err = pool.Invoke(context.Background(), sandbox.Options{}, func(*sandbox.Invocation) error {
		panicky()
		return nil
	})
	var pe *sandbox.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("Invoke = %v, want a *PanicError", err)
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "deliberately, across two lines") {
		t.Errorf("message %q: want the panic value on one line", err.Error())
	}
	if !strings.Contains(string(pe.Stack), "panicky") {
		t.Errorf("stack does not name the panicking function:\n%s", pe.Stack)
	}
	if err := pool.Invoke(context.Background(), sandbox.Options{}, func(*sandbox.Invocation) error { return nil }); err != nil {
		t.Errorf("the next invocation: %v", err)
	}
}

func panicky() { panic("deliberately,\nacross two lines") }

// TestInvokeKeep: Options.Keep writes the invocation's layer, with its record, and the shared
// tree is untouched; Keep and Layer together are refused.
func TestInvokeKeep(t *testing.T) {
	tree := t.TempDir()
	pool, err := sandbox.NewPool(sandbox.Config{Trees: []string{tree}, Store: t.TempDir()})
	if err != nil {
		t.Skip(err)
	}
	defer pool.Close()
	keep := filepath.Join(t.TempDir(), "kept")
	var seen []sandbox.Change
	err = pool.Invoke(context.Background(), sandbox.Options{Keep: keep}, func(inv *sandbox.Invocation) error {
		if err := os.WriteFile(filepath.Join(tree, "f"), []byte("x"), 0o644); err != nil {
			return err
		}
		seen = sandbox.Changes(inv)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != (sandbox.Change{Kind: sandbox.Added, Path: filepath.Join(tree, "f")}) {
		t.Errorf("Changes = %v", seen)
	}
	if b, err := os.ReadFile(filepath.Join(keep, tree, "f")); err != nil || string(b) != "x" {
		t.Errorf("kept f: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(keep, ".wh..wh..fsvirt")); err != nil {
		t.Errorf("no record: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tree, "f")); err == nil {
		t.Error("the shared tree has f")
	}
	err = pool.Invoke(context.Background(), sandbox.Options{Keep: t.TempDir(), Layer: t.TempDir()}, func(*sandbox.Invocation) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "Keep and Layer together") {
		t.Errorf("Keep with Layer: %v", err)
	}
}

// TestRun: process mode through the public package, a named layer accumulating over two runs.
func TestRun(t *testing.T) {
	tree := t.TempDir()
	named := filepath.Join(t.TempDir(), "layer")
	opts := sandbox.RunOptions{Trees: []string{tree}, Store: t.TempDir(), Layer: named}
	if _, err := sandbox.Run(context.Background(), []string{"sh", "-c", "echo 1 > " + tree + "/one"}, opts); err != nil {
		t.Skip(err)
	}
	res, err := sandbox.Run(context.Background(), []string{"sh", "-c", "cat " + tree + "/one && echo 2 > " + tree + "/two; exit 4"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []sandbox.Change{{sandbox.Added, tree + "/one"}, {sandbox.Added, tree + "/two"}}
	if res.ExitStatus != 4 || len(res.Changes) != 2 || res.Changes[0] != want[0] || res.Changes[1] != want[1] {
		t.Errorf("Run = %+v, want exit status 4 and changes %v", res, want)
	}
}

// TestInvokeLayerLocked: while an invocation uses a named layer, another one on the same layer
// is refused at once, naming it; afterwards the layer holds the first one's change.
func TestInvokeLayerLocked(t *testing.T) {
	tree := t.TempDir()
	pool, err := sandbox.NewPool(sandbox.Config{Workers: 2, Trees: []string{tree}, Store: t.TempDir()})
	if err != nil {
		t.Skip(err)
	}
	defer pool.Close()
	named := filepath.Join(t.TempDir(), "layer")
	inside, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- pool.Invoke(context.Background(), sandbox.Options{Layer: named}, func(*sandbox.Invocation) error {
			err := os.WriteFile(filepath.Join(tree, "first"), []byte("1"), 0o644)
			close(inside)
			<-release
			return err
		})
	}()
	<-inside
	err = pool.Invoke(context.Background(), sandbox.Options{Layer: named}, func(*sandbox.Invocation) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "layer "+named+" is in use") {
		t.Errorf("second invocation: %v, want the layer in use", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(named, tree, "first")); err != nil || string(b) != "1" {
		t.Errorf("the layer's first: %q, %v", b, err)
	}
}

// TestInvokeLimits: Options.Limits bound one invocation's private layer and not the next one's:
// past them, creation fails with ENOSPC, as with Config.Limits.
func TestInvokeLimits(t *testing.T) {
	tree := t.TempDir()
	pool, err := sandbox.NewPool(sandbox.Config{Trees: []string{tree}, Store: t.TempDir()})
	if err != nil {
		t.Skip(err)
	}
	defer pool.Close()
	create := func(n int) func(*sandbox.Invocation) error {
		return func(*sandbox.Invocation) error {
			for i := range n {
				if err := os.WriteFile(filepath.Join(tree, fmt.Sprint(i)), nil, 0o644); err != nil {
					return err
				}
			}
			return nil
		}
	}
	err = pool.Invoke(context.Background(), sandbox.Options{Limits: sandbox.Limits{Files: 3}}, create(10))
	if err != nil && strings.Contains(err.Error(), "CAP_SYS_ADMIN") {
		t.Skipf("limits cannot be enforced here: %v", err)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("10 files with Files: 3: %v, want ENOSPC", err)
	}
	if err := pool.Invoke(context.Background(), sandbox.Options{}, create(10)); err != nil {
		t.Errorf("10 files in the next invocation, without limits: %v", err)
	}
}
