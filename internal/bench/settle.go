package bench

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// A cell that follows one of the modes that start processes (chroot, process, overlayfs) can start
// while the kernel is still busy with what they left (roots, mounts, exited processes). Once, a
// thread-fast cell at 1 thread that followed chroot's six workloads took 713 µs per readonly
// invocation, against 405 µs in a run without chroot; a later check with chroot's readonly alone
// before it showed no such slowdown (395 µs), so the cause is not established. Each cell waits
// until the machine is idle, for a bounded time, as a guard that costs little (0.8 s in that
// check).

// settleIdle is the share of CPU time that must be idle over one settleWindow.
const (
	settleIdle   = 0.90
	settleWindow = 250 * time.Millisecond
)

// cpuSample reads the idle and total jiffies of all CPUs.
type cpuSample func() (idle, total uint64, err error)

// procStatCPU reads the first line of /proc/stat: "cpu user nice system idle iowait irq softirq
// steal ...". Idle time counts idle and iowait.
func procStatCPU() (idle, total uint64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return 0, 0, err
	}
	return parseCPULine(line)
}

func parseCPULine(line string) (idle, total uint64, err error) {
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	for i, s := range f[1:] {
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		total += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return idle, total, nil
}

// settle waits until the share of idle CPU time over a window reaches settleIdle, for at most
// limit, and returns how long it waited. It gives up at once if the CPU times cannot be read.
func settle(ctx context.Context, limit time.Duration, sample cpuSample, window time.Duration) time.Duration {
	start := time.Now()
	if limit <= 0 {
		return 0
	}
	idle0, total0, err := sample()
	if err != nil {
		return 0
	}
	t := time.NewTimer(window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-t.C:
		}
		idle1, total1, err := sample()
		if err != nil {
			return time.Since(start)
		}
		if total1 > total0 && float64(idle1-idle0)/float64(total1-total0) >= settleIdle {
			return time.Since(start)
		}
		if time.Since(start) >= limit {
			return time.Since(start)
		}
		idle0, total0 = idle1, total1
		t.Reset(window)
	}
}
