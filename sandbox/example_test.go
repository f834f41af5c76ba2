package sandbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fsvirt/fsvirt/sandbox"
)

// Three invocations build on one named layer; the shared tree is untouched until Apply writes
// the layer into it.
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	config := filepath.Join(dir, "config")
	os.WriteFile(config, []byte("v1\n"), 0o644)
	named := filepath.Join(dir, "..", filepath.Base(dir)+".layer")
	defer os.RemoveAll(named)
	defer os.Remove(named + ".lock")

	pool, err := sandbox.NewPool(sandbox.Config{Trees: []string{dir}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	steps := []func() error{
		func() error { return os.WriteFile(config, []byte("v2\n"), 0o644) },
		func() error { return os.WriteFile(filepath.Join(dir, "cache"), []byte("hit\n"), 0o644) },
		func() error {
			b, err := os.ReadFile(config)
			fmt.Printf("third invocation reads: %s", b)
			return err
		},
	}
	for _, step := range steps {
		err := pool.Invoke(context.Background(), sandbox.Options{Layer: named}, func(inv *sandbox.Invocation) error {
			return step()
		})
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	b, _ := os.ReadFile(config)
	fmt.Printf("shared tree before apply: %s", b)

	changes, err := sandbox.Apply(named, sandbox.ApplyOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range changes {
		rel, _ := filepath.Rel(dir, c.Path)
		fmt.Println(c.Kind, rel)
	}
	b, _ = os.ReadFile(config)
	fmt.Printf("shared tree after apply: %s", b)

	j, _ := json.Marshal(sandbox.Change{Kind: sandbox.Modified, Path: "/etc/motd"})
	fmt.Println(string(j))
	// Output:
	// third invocation reads: v2
	// shared tree before apply: v1
	// added cache
	// modified config
	// shared tree after apply: v2
	// {"kind":"modified","path":"/etc/motd"}
}
