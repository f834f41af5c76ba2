package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestParseCPULine(t *testing.T) {
	idle, total, err := parseCPULine("cpu  100 5 50 800 40 3 2 0 7 0\n")
	if err != nil || idle != 840 || total != 1000 {
		t.Errorf("parseCPULine = %d, %d, %v; want 840, 1000", idle, total, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5", "cpu 1 2 x 4 5 6", "intr 1 2 3 4 5"} {
		if _, _, err := parseCPULine(bad); err == nil {
			t.Errorf("parseCPULine(%q) succeeded", bad)
		}
	}
	if _, _, err := procStatCPU(); err != nil {
		t.Errorf("procStatCPU: %v", err)
	}
}

// fakeCPU returns samples in which each window has the given idle shares, then stays idle.
func fakeCPU(shares ...float64) cpuSample {
	var idle, total uint64
	i := -1
	return func() (uint64, uint64, error) {
		if i >= 0 {
			share := 1.0
			if i < len(shares) {
				share = shares[i]
			}
			idle += uint64(share * 100)
			total += 100
		}
		i++
		return idle, total, nil
	}
}

func TestSettle(t *testing.T) {
	ctx := context.Background()
	const w = time.Millisecond
	if got := settle(ctx, time.Second, fakeCPU(0.95), w); got > 500*w {
		t.Errorf("an idle machine kept settle waiting %v", got)
	}
	// Busy for 20 windows, then idle: it waits for the idle window.
	busy := make([]float64, 20)
	if got := settle(ctx, time.Second, fakeCPU(busy...), w); got < 20*w {
		t.Errorf("settle returned after %v on a machine busy for 20 windows", got)
	}
	// Busy for good: it gives up after the limit.
	always := make([]float64, 1<<20)
	if got := settle(ctx, 30*w, fakeCPU(always...), w); got < 30*w || got > 2*time.Second {
		t.Errorf("settle on a machine busy for good returned after %v, want the 30 ms limit", got)
	}
	if got := settle(ctx, 0, fakeCPU(always...), w); got != 0 {
		t.Errorf("settle with no limit waited %v", got)
	}
	broken := func() (uint64, uint64, error) { return 0, 0, errors.New("no /proc") }
	if got := settle(ctx, time.Second, broken, w); got != 0 {
		t.Errorf("settle without CPU times waited %v", got)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if got := settle(canceled, time.Second, fakeCPU(always...), w); got > 500*w {
		t.Errorf("settle went on for %v after cancellation", got)
	}
}
