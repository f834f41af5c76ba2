package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestQuickStart is the README's example scaled to a temporary tree: the command sees its own
// change, the host does not.
func TestQuickStart(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	r := f.run(t, nil, "sh", "-c", "echo changed >> "+f.motd+"; cat "+f.motd)
	if r.code != 0 {
		t.Errorf("exit status %d, want 0 (stderr %q)", r.code, r.stderr)
	}
	if want := motdContent + "changed\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	if r.stderr != "" {
		t.Errorf("stderr %q, want none", r.stderr)
	}
	assertFile(t, f.motd, motdContent)
}

// TestExitStatus checks that fsvirt exits as its command did, and as env(1) does when the command
// cannot be started.
func TestExitStatus(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(f.tree, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notExec := f.motd
	badInterp := write("bad-interpreter", "#!/nonexistent/interpreter\n", 0o755)
	noFormat := write("no-format", "\x7fELF but not really\x00\x00", 0o755)
	dir := filepath.Join(f.tree, "dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cmd    []string
		want   int
		stderr string // a substring of stderr; "" means stderr must be empty
	}{
		{"true", []string{"true"}, 0, ""},
		{"false", []string{"false"}, 1, ""},
		{"exit-3", []string{"sh", "-c", "exit 3"}, 3, ""},
		{"exit-255", []string{"sh", "-c", "exit 255"}, 255, ""},
		{"killed-by-sigkill", []string{"sh", "-c", "kill -9 $$"}, 128 + 9, ""},
		{"killed-by-sigterm", []string{"sh", "-c", "kill -TERM $$"}, 128 + 15, ""},
		{"not-found-in-path", []string{"fsvirt-no-such-command"}, 127, "fsvirt: fsvirt-no-such-command: command not found\n"},
		{"not-found-by-path", []string{filepath.Join(f.tree, "nothing")}, 127, filepath.Join(f.tree, "nothing")},
		{"interpreter-not-found", []string{badInterp}, 127, badInterp},
		{"not-executable", []string{notExec}, 126, "fsvirt: " + notExec + ": permission denied\n"},
		{"exec-format-error", []string{noFormat}, 126, noFormat},
		// env(1) and sh(1) say 126 (EACCES) for a directory: it exists but cannot be executed.
		{"directory", []string{dir}, 126, dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.run(t, nil, tt.cmd...)
			if r.code != tt.want {
				t.Errorf("exit status %d, want %d (stderr %q)", r.code, tt.want, r.stderr)
			}
			switch {
			case tt.stderr == "" && r.stderr != "":
				t.Errorf("stderr %q, want none", r.stderr)
			case !strings.Contains(r.stderr, tt.stderr):
				t.Errorf("stderr %q, want it to contain %q", r.stderr, tt.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want none", r.stdout)
			}
		})
	}
	assertFile(t, f.motd, motdContent)
}

// changeScript is a shell script that appends to motd and creates new: one copy-up, one file
// added.
func (f fixture) changeScript() string {
	return "echo changed >> " + f.motd + "; echo new > " + filepath.Join(f.tree, "new")
}

func TestDiff(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	r := f.run(t, []string{"--diff"}, "sh", "-c", f.changeScript())
	if r.code != 0 {
		t.Errorf("exit status %d, want 0", r.code)
	}
	if want := "M " + f.motd + "\nA " + filepath.Join(f.tree, "new") + "\n"; r.stderr != want {
		t.Errorf("stderr:\n%s\nwant exactly:\n%s", r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want none: the diff goes to stderr", r.stdout)
	}
	assertFile(t, f.motd, motdContent)
	assertNotExist(t, filepath.Join(f.tree, "new"))
}

func TestDiffSorted(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	// Enough names that neither creation order nor chance sorts them.
	var script []string
	for c := 'p'; c >= 'a'; c-- {
		script = append(script, "echo x > "+filepath.Join(f.tree, string(c)))
	}
	r := f.run(t, []string{"--diff"}, "sh", "-c", strings.Join(script, "; "))
	var want string
	for c := 'a'; c <= 'p'; c++ {
		want += "A " + filepath.Join(f.tree, string(c)) + "\n"
	}
	if r.code != 0 || r.stderr != want {
		t.Errorf("exit status %d, stderr:\n%s\nwant 0 and:\n%s", r.code, r.stderr, want)
	}
}

func TestDiffNoChanges(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	r := f.run(t, []string{"--diff"}, "cat", f.motd)
	if r.code != 0 || r.stdout != motdContent || r.stderr != "" {
		t.Errorf("got exit status %d, stdout %q, stderr %q; want 0, %q and no diff lines", r.code, r.stdout, r.stderr, motdContent)
	}
}

// summary mirrors the --json output; decoding into it checks the field names.
type jsonSummary struct {
	Schema     int    `json:"schema"`
	Outcome    string `json:"outcome"`
	ExitStatus *int   `json:"exit_status"`
	Signal     int    `json:"signal"`
	SignalName string `json:"signal_name"`
	Error      string `json:"error"`
	Changes    []struct {
		Kind string `json:"kind"`
		Path string `json:"path"`
	} `json:"changes"`
	Calls       map[string]int `json:"calls"`
	CopyUps     *int           `json:"copy_ups"`
	BytesCopied *int64         `json:"bytes_copied"`
	Usage       *struct {
		Bytes int64 `json:"bytes"`
		Files int64 `json:"files"`
	} `json:"usage"`
	Limits *struct {
		Bytes int64 `json:"bytes"`
		Files int64 `json:"files"`
	} `json:"limits"`
	Keep  string `json:"keep"`
	Layer string `json:"layer"`
	Apply *struct {
		Applied   bool `json:"applied"`
		Conflicts []struct {
			Path   string `json:"path"`
			Reason string `json:"reason"`
		} `json:"conflicts"`
	} `json:"apply"`
}

// jsonDecode decodes line into s, refusing fields s does not know.
func jsonDecode(line string, s *jsonSummary) error {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	return dec.Decode(s)
}

// lastJSON decodes stderr's last line.
func lastJSON(t *testing.T, stderr string) jsonSummary {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	var s jsonSummary
	dec := json.NewDecoder(strings.NewReader(last))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("last stderr line %q: %v", last, err)
	}
	if s.ExitStatus == nil || s.CopyUps == nil || s.BytesCopied == nil || s.Changes == nil || s.Calls == nil || s.Usage == nil {
		t.Fatalf("last stderr line %q lacks a field", last)
	}
	return s
}

func TestJSON(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	r := f.run(t, []string{"--json"}, "sh", "-c", f.changeScript()+"; exit 4")
	if r.code != 4 {
		t.Errorf("exit status %d, want 4", r.code)
	}
	s := lastJSON(t, r.stderr)
	if *s.ExitStatus != 4 || s.Schema != 1 || s.Outcome != "exited" {
		t.Errorf("schema %d, outcome %q, exit_status %d; want 1, exited, 4", s.Schema, s.Outcome, *s.ExitStatus)
	}
	type change struct{ kind, path string }
	var got []change
	for _, c := range s.Changes {
		got = append(got, change{c.Kind, c.Path})
	}
	want := []change{{"modified", f.motd}, {"added", filepath.Join(f.tree, "new")}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("changes %+v, want %+v", got, want)
	}
	if s.Calls["openat"] <= 0 {
		t.Errorf("calls %v, want openat > 0", s.Calls)
	}
	if *s.CopyUps != 1 {
		t.Errorf("copy_ups %d, want 1 (motd; new was created, not copied)", *s.CopyUps)
	}
	if *s.BytesCopied != int64(len(motdContent)) {
		t.Errorf("bytes_copied %d, want %d, the size of motd", *s.BytesCopied, len(motdContent))
	}
	if strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr %q, want the JSON line only", r.stderr)
	}
}

// TestJSONWithDiff: both reports, the diff lines first, the JSON last.
func TestJSONWithDiff(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	r := f.run(t, []string{"--diff", "--json"}, "sh", "-c", f.changeScript())
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 3 || lines[0] != "M "+f.motd || lines[1] != "A "+filepath.Join(f.tree, "new") {
		t.Fatalf("stderr:\n%s\nwant the two diff lines, then JSON", r.stderr)
	}
	if s := lastJSON(t, r.stderr); len(s.Changes) != 2 || *s.ExitStatus != 0 {
		t.Errorf("summary %+v, want 2 changes and exit_status 0", s)
	}
}

func TestKeep(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	keep := filepath.Join(t.TempDir(), "kept")
	r := f.run(t, []string{"--keep", keep}, "sh", "-c", f.changeScript())
	if r.code != 0 || r.stderr != "" {
		t.Errorf("exit status %d, stderr %q; want 0 and none", r.code, r.stderr)
	}
	// The layer mirrors view paths: the tree's absolute path, below keep.
	assertFile(t, filepath.Join(keep, f.motd), motdContent+"changed\n")
	assertFile(t, filepath.Join(keep, f.tree, "new"), "new\n")
	assertFile(t, f.motd, motdContent)
	assertNotExist(t, filepath.Join(f.tree, "new"))
}

// TestStoreHidden: the store is outside the tree, yet every path into it fails with ENOENT from
// inside the view. The shell learns the store's name from a listing of its parent (getdents is
// not virtualized), then cannot stat it or open the lock file in it.
func TestStoreHidden(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	tests := []struct {
		name  string
		store string
		dir   string // fsvirt's working directory
		pat   string // the store's parent, as the command names it
	}{
		{"absolute-store", f.store, "", f.store},
		{"relative-store", "store", filepath.Dir(f.store), "store"},
		{"relative-store-absolute-open", "store", filepath.Dir(f.store), f.store},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := `for d in ` + tt.pat + `/*; do echo "listed $d"; ls -d "$d" || cat "$d/lock" || exit 3; done`
			r := fsvirtIn(t, tt.dir, "run", "--tree", f.tree, "--store", tt.store, "--", "sh", "-c", script)
			if r.code != 3 {
				t.Errorf("exit status %d, want 3: the command reached the store", r.code)
			}
			if !strings.Contains(r.stdout, "listed ") || !strings.Contains(r.stdout, "fsvirt-") {
				t.Errorf("stdout %q: the listing did not name the store, so the test proves nothing", r.stdout)
			}
			if strings.Count(r.stderr, "No such file or directory") < 2 {
				t.Errorf("stderr %q, want ENOENT (No such file or directory) from ls and cat", r.stderr)
			}
			assertStoreEmpty(t, f.store)
		})
	}
}

// TestBackgroundChild: the view lives until the last process in it exits, so fsvirt waits for
// an orphaned child, and that child's writes are private too.
func TestBackgroundChild(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	bg := filepath.Join(f.tree, "bg")
	const delay = 300 * time.Millisecond
	r := f.run(t, []string{"--diff"}, "sh", "-c", "(sleep 0.3; echo late > "+bg+") & echo early")
	if r.code != 0 {
		t.Errorf("exit status %d, want 0", r.code)
	}
	if r.stdout != "early\n" {
		t.Errorf("stdout %q, want %q", r.stdout, "early\n")
	}
	if want := "A " + bg + "\n"; r.stderr != want {
		t.Errorf("stderr %q, want %q: fsvirt reported before the background child wrote", r.stderr, want)
	}
	if r.elapsed < delay {
		t.Errorf("fsvirt returned after %v, before the background child's %v sleep ended", r.elapsed, delay)
	}
	assertNotExist(t, bg)
}

// TestStoreRemovedAfterFailure: the private layer goes even when the command fails or is killed
// after writing.
func TestStoreRemovedAfterFailure(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	for _, script := range []string{
		"echo changed >> " + f.motd + "; exit 1",
		"echo changed >> " + f.motd + "; kill -9 $$",
	} {
		r := f.run(t, nil, "sh", "-c", script) // asserts the store is empty
		if r.code == 0 {
			t.Errorf("%q: exit status 0, want a failure", script)
		}
	}
	assertFile(t, f.motd, motdContent)
}

// TestOutsideTree: outside the --tree, files are the host's own, and --diff does not list them.
func TestOutsideTree(t *testing.T) {
	requireEngine(t)
	f := newFixture(t)
	outside := filepath.Join(t.TempDir(), "outside")
	r := f.run(t, []string{"--diff"}, "sh", "-c", "echo host > "+outside)
	if r.code != 0 || r.stderr != "" {
		t.Errorf("exit status %d, stderr %q; want 0 and no diff lines", r.code, r.stderr)
	}
	assertFile(t, outside, "host\n")
}

// TestTerminalInterruptOnce: Ctrl-C on the terminal fsvirt runs in reaches the command once. The
// terminal sends SIGINT to its foreground process group, the command's and fsvirt's; fsvirt does
// not forward its copy.
func TestTerminalInterruptOnce(t *testing.T) {
	requireEngine(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed (scripts/test.sh installs it)")
	}
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	const count = `import signal, sys, time
n = 0
def hit(*_):
    global n
    n += 1
signal.signal(signal.SIGINT, hit)
print("ready", flush=True)
time.sleep(1.5)
print("interrupts", n, flush=True)
`
	cmd := exec.Command(fsvirtBin, "run", "--", "python3", "-c", count)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 256)
		for {
			k, err := master.Read(buf)
			b.Write(buf[:k])
			if strings.Contains(b.String(), "ready") && !strings.Contains(b.String(), "sent") {
				master.Write([]byte{3}) // ^C
				b.WriteString("sent")
			}
			if err != nil || strings.Contains(b.String(), "interrupts") && strings.HasSuffix(b.String(), "\n") {
				out <- b.String()
				return
			}
		}
	}()
	var got string
	select {
	case got = <-out:
	case <-time.After(runTimeout):
		cmd.Process.Kill()
		t.Fatal("no output from the command")
	}
	cmd.Wait()
	if !strings.Contains(got, "interrupts 1") {
		t.Errorf("the command saw %q, want one interrupt", got)
	}
}
