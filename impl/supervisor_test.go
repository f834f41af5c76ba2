package impl

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// TestSupervisorSeveralSupervisorsIsolatedAndAnswered: with three supervisors serving five workers,
// every worker's listener belongs to one supervisor, all three are used, every notification is
// answered (each invocation finishes), and concurrent invocations still see only their own writes.
func TestSupervisorSeveralSupervisorsIsolatedAndAnswered(t *testing.T) {
	shared := t.TempDir()
	treetest.Build(t, shared, "file f shared")
	storeRoot := t.TempDir()
	const workers, supervisors, rounds = 5, 3, 40
	p, err := NewPool(Config{Workers: workers, Supervisors: supervisors, Trees: []string{shared}, Store: storeRoot})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.sups) != supervisors {
		t.Fatalf("pool has %d supervisors, want %d", len(p.sups), supervisors)
	}
	used := map[*supervisor]int{}
	for _, w := range p.all {
		used[w.sup]++
	}
	if len(used) != supervisors {
		t.Errorf("workers use %d distinct supervisors, want %d", len(used), supervisors)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for i := 0; i < workers*rounds; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			mine := fmt.Sprintf("invocation %d", i)
			errs <- p.Invoke(ctx, func(inv *Invocation) error {
				if err := os.WriteFile(shared+"/f", []byte(mine), 0o644); err != nil {
					return err
				}
				runtime.Gosched()
				got, err := os.ReadFile(shared + "/f")
				if err != nil {
					return err
				}
				if string(got) != mine {
					return fmt.Errorf("read back %q, want %q", got, mine)
				}
				if n := inv.Stats().Calls["openat"]; n < 2 {
					return fmt.Errorf("view answered %d openat calls, want at least 2", n)
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	if b, _ := os.ReadFile(shared + "/f"); string(b) != "shared" {
		t.Errorf("shared file changed to %q", b)
	}
	if left := storeEntries(t, storeRoot); len(left) != 0 {
		t.Errorf("store not empty after Close: %v", left)
	}
}
