package notify

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// minKernel is the release that brought each feature; a kernel at or above it must have it
// (unless FSVIRT_DISABLE turned it off), so a probe that silently fails is caught.
var minKernel = map[string][2]int{
	"user-notif":    {5, 0},
	"addfd":         {5, 9},
	"addfd-send":    {5, 14},
	"id-valid-w":    {5, 9}, // see backported
	"wait-killable": {5, 19},
	"sync-wakeup":   {6, 6},
	"pidfd-getfd":   {5, 6},
	"landlock":      {5, 13},
}

// optional features may be missing from a kernel at or above minKernel: a build without them, or
// a boot that leaves them out. absent says whether this kernel lacks one, and why.
var optional = map[string]func() (absent bool, why string){
	"landlock": func() (bool, string) {
		if b, err := os.ReadFile("/sys/kernel/security/lsm"); err == nil {
			lsms := strings.TrimSpace(string(b))
			return !strings.Contains(","+lsms+",", ",landlock,"), "LSMs " + lsms
		}
		_, err := LandlockVersion() // ENOSYS: not built; EOPNOTSUPP: not among the booted LSMs
		return err == unix.ENOSYS || err == unix.EOPNOTSUPP, fmt.Sprintf("landlock_create_ruleset: %v", err)
	},
}

// backported features reached older stable kernels too, so a kernel below minKernel may have
// them. The corrected ID_VALID number (47e33c05f9f0) went into mainline in mid-2020, before the
// 5.9 floor, and into 5.4.59; Debian's 5.10 has it.
var backported = map[string]bool{"id-valid-w": true}

func kernelVersion(t *testing.T) [2]int {
	t.Helper()
	var v [2]int
	if _, err := fmt.Sscanf(KernelRelease(), "%d.%d", &v[0], &v[1]); err != nil {
		t.Fatalf("cannot parse kernel release %q: %v", KernelRelease(), err)
	}
	return v
}

func atLeast(v, min [2]int) bool { return v[0] > min[0] || v[0] == min[0] && v[1] >= min[1] }

// TestProbes prints one "fsvirt-probe: NAME=on|off" line per feature (the vmtest matrix collects
// them) and checks each probe against the kernel version.
func TestProbes(t *testing.T) {
	if err := ProbeError(); err != nil {
		t.Fatal(err)
	}
	v := kernelVersion(t)
	disabled := os.Getenv("FSVIRT_DISABLE")
	fmt.Printf("fsvirt-probe: kernel=%s\n", KernelRelease())
	Features().Each(func(name string, on bool) {
		fmt.Printf("fsvirt-probe: %s=%s\n", name, map[bool]string{true: "on", false: "off"}[on])
		min, ok := minKernel[name]
		if !ok {
			t.Errorf("feature %s has no minimum kernel in the test", name)
			return
		}
		forcedOff := strings.Contains(","+disabled+",", ","+name+",")
		if absent := optional[name]; !on && !forcedOff && absent != nil {
			if ok, why := absent(); ok {
				t.Logf("%s is off: kernel %s lacks it (%s)", name, KernelRelease(), why)
				return
			}
		}
		switch {
		case on && forcedOff:
			t.Errorf("%s is on although FSVIRT_DISABLE turns it off", name)
		case !on && !forcedOff && atLeast(v, min):
			t.Errorf("%s is off on kernel %s, which has it since %d.%d", name, KernelRelease(), min[0], min[1])
		case on && !atLeast(v, min) && !backported[name]:
			t.Errorf("%s is on on kernel %s, older than %d.%d", name, KernelRelease(), min[0], min[1])
		}
	})
	if f := Features(); f.Landlock {
		fmt.Printf("fsvirt-probe: landlock-abi-%d=on\n", f.LandlockABI)
	}
}

func TestCheckSizes(t *testing.T) {
	if err := CheckSizes(); err != nil {
		t.Fatal(err)
	}
}

func TestRequireRefusesOldKernel(t *testing.T) {
	restore := SetForTest(FeatureSet{UserNotif: true}) // a 5.5-like kernel: no ADDFD
	defer restore()
	err := Require()
	if err == nil {
		t.Fatal("Require accepted a kernel without ADDFD")
	}
	for _, want := range []string{KernelRelease(), "SECCOMP_IOCTL_NOTIF_ADDFD", "5.9"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestDisableUnknownFeature(t *testing.T) {
	var f FeatureSet
	if err := applyDisable(&f, "addfd-send,no-such-thing"); err == nil || !strings.Contains(err.Error(), "no-such-thing") {
		t.Fatalf("applyDisable accepted an unknown feature: %v", err)
	}
}
