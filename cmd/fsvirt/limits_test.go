package main

import (
	"encoding/json"
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

// TestRunLimitsWithoutRoot: a user who may not mount gets the limits all the same, from an fsvirt
// in a user namespace of its own (userns.go): the write that would pass them fails with ENOSPC,
// the command holds no capability (it cannot mount, nor undo the limit), the files of others show
// the overflow uid, and nothing is left in the store or the tree.
func TestRunLimitsWithoutRoot(t *testing.T) {
	requireEngine(t)
	if os.Geteuid() != 0 {
		t.Skip("runs fsvirt as nobody, which only root can")
	}
	for file, off := range map[string]string{"/proc/sys/kernel/unprivileged_userns_clone": "0", "/proc/sys/user/max_user_namespaces": "0"} {
		if b, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(b)) == off {
			t.Skipf("unprivileged user namespaces are disabled here (%s is %s)", file, off)
		}
	}
	dir := attackBin(t) // a copy of fsvirt that nobody may run
	bin := filepath.Join(dir, "fsvirt")
	store, tree := filepath.Join(dir, "store"), filepath.Join(dir, "tree")
	for _, d := range []string{store, tree} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	rootFile := filepath.Join(dir, "rootfile")
	if err := os.WriteFile(rootFile, []byte("r"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--store", store, "--max-bytes", "64k", "--max-files", "20", "--json", "--", "sh", "-c",
		`cd "$0" && head -c 40000 /dev/zero > a && echo a made
head -c 100000 /dev/zero > b 2>/dev/null || echo b refused
grep CapEff /proc/self/status
stat -c '%u' "$1"
echo x >> "$1" 2>/dev/null || echo append refused`, tree, rootFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s%s", err, stdout.String(), stderr.String())
	}
	if want := "a made\nb refused\nCapEff:\t0000000000000000\n65534\nappend refused\n"; stdout.String() != want {
		t.Errorf("stdout %q, want %q (stderr %q)", stdout.String(), want, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	var s summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("--json: %v in %q", err, stderr.String())
	}
	if s.Limits == nil || s.Limits.Bytes != 64<<10 || s.Usage.Bytes > 64<<10 || s.Usage.Bytes < 40000 {
		t.Errorf("limits %+v, usage %+v", s.Limits, s.Usage)
	}
	ents, err := os.ReadDir(tree)
	if err != nil || len(ents) != 0 {
		t.Errorf("the tree has %v (%v)", ents, err)
	}
	if b, err := os.ReadFile(rootFile); err != nil || string(b) != "r" {
		t.Errorf("root's file: %q, %v", b, err)
	}
	sub, err := filepath.Glob(filepath.Join(store, "fsvirt-*", "*"))
	if err != nil || len(sub) != 0 {
		t.Errorf("left in the store: %v (%v)", sub, err)
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
