package impl_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/fsvirt/fsvirt/impl"
)

// A function run by Invoke changes a shared file; the change is visible to the function only.
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	config := filepath.Join(dir, "config")
	os.WriteFile(config, []byte("shared\n"), 0o644)

	pool, err := impl.NewPool(impl.Config{Workers: 2, Trees: []string{dir}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	err = pool.Invoke(context.Background(), func(inv *impl.Invocation) error {
		if err := os.WriteFile(config, []byte("private\n"), 0o644); err != nil {
			return err
		}
		b, err := os.ReadFile(config)
		fmt.Printf("inside:  %s", b)
		fmt.Println("copy-ups:", inv.Stats().CopyUps)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	b, _ := os.ReadFile(config)
	fmt.Printf("outside: %s", b)
	// Output:
	// inside:  private
	// copy-ups: 1
	// outside: shared
}

// A function starts a program with Invocation.Start: the program reads the function's view.
func ExampleInvocation_Start() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	config := filepath.Join(dir, "config")
	os.WriteFile(config, []byte("shared\n"), 0o644)

	pool, err := impl.NewPool(impl.Config{Trees: []string{dir}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	err = pool.Invoke(context.Background(), func(inv *impl.Invocation) error {
		if err := os.WriteFile(config, []byte("private\n"), 0o644); err != nil {
			return err
		}
		cmd := exec.Command("cat", config)
		cmd.Stdout = os.Stdout
		if err := inv.Start(cmd); err != nil {
			return err
		}
		return cmd.Wait()
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// private
}
