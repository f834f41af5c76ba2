package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRunLimits: --max-bytes and --max-files bound the private layer; the write that would pass
// them fails with ENOSPC in the command, --json reports the usage and the limits, and nothing is
// left behind.
func TestRunLimits(t *testing.T) {
	requireEngine(t)
	if os.Geteuid() != 0 {
		t.Skip("limits need root (CAP_SYS_ADMIN) to mount the layer's tmpfs; TestRunLimitsRefused covers the refusal")
	}
	f := newFixture(t)
	r := f.run(t, []string{"--max-bytes", "64k", "--max-files", "20", "--json"}, "sh", "-c",
		`cd "$0" && head -c 40000 /dev/zero > a && echo a made; head -c 100000 /dev/zero > b || echo b refused`, f.tree)
	if r.code != 0 || r.stdout != "a made\nb refused\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "No space left on device") {
		t.Errorf("stderr %q: no ENOSPC", r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	var s summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("--json: %v in %q", err, r.stderr)
	}
	if s.Limits == nil || s.Limits.Bytes != 64<<10 || s.Limits.Files != 20 {
		t.Errorf("limits %+v", s.Limits)
	}
	if s.Usage.Bytes < 40000 || s.Usage.Bytes > 64<<10 || s.Usage.Files < 2 {
		t.Errorf("usage %+v", s.Usage)
	}
	assertFile(t, f.motd, motdContent)
	if _, err := os.Stat(filepath.Join(f.tree, "a")); !os.IsNotExist(err) {
		t.Errorf("a reached the shared tree: %v", err)
	}
}

// TestRunLimitsRefused: a user who may not mount gets a clear error before the command runs.
func TestRunLimitsRefused(t *testing.T) {
	requireEngine(t)
	if os.Geteuid() != 0 {
		t.Skip("runs fsvirt as nobody, which only root can")
	}
	dir := attackBin(t) // a copy of fsvirt that nobody may run
	bin := filepath.Join(dir, "fsvirt")
	store := filepath.Join(dir, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(store, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(store, "ran")
	cmd := exec.Command(bin, "run", "--tree", store, "--store", store, "--max-bytes", "1M", "--", "sh", "-c", "echo ran > "+marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 125 {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "CAP_SYS_ADMIN") {
		t.Errorf("output %q does not say what is missing", out)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the command ran: %v", err)
	}
}

// TestRunMinFree: --min-free takes a size, 0 for none; a floor above the store's free space is
// refused with a clear error before the command runs, and a bad size names the flag.
func TestRunMinFree(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	r := f.run(t, []string{"--min-free", "1000000T"}, "sh", "-c", `echo ran`)
	if r.code != 125 || r.stdout != "" || !strings.Contains(r.stderr, "to keep free") {
		t.Errorf("--min-free 1000000T: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = f.run(t, []string{"--min-free", "lots"}, "true")
	if r.code != 125 || !strings.Contains(r.stderr, "min-free") {
		t.Errorf("--min-free lots: exit %d, stderr %q", r.code, r.stderr)
	}
	r = f.run(t, []string{"--min-free", "0"}, "sh", "-c", `cd "$0" && echo x > made && cat made`, f.tree)
	if r.code != 0 || r.stdout != "x\n" {
		t.Errorf("--min-free 0: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
