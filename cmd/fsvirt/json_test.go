package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// runSchema compiles docs/fsvirt-run.schema.json.
func runSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	return compileSchema(t, "fsvirt-run.schema.json")
}

// compileSchema compiles docs/NAME.
func compileSchema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../../docs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(name)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// validLine checks that line is one JSON document the schema accepts.
func validLine(t *testing.T, sch *jsonschema.Schema, line string) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("%s\ndoes not satisfy the schema: %v", line, err)
	}
}

// TestJSONOutcomes: --json writes one line that satisfies the schema for every way a run ends,
// with the outcome, exit status, signal and reason each says.
func TestJSONOutcomes(t *testing.T) {
	requireEngine(t)
	sch := runSchema(t)
	f := newFixture(t)
	badInterp := filepath.Join(f.tree, "bad-interpreter")
	os.WriteFile(badInterp, []byte("#!/nonexistent/interpreter\n"), 0o755)
	run := []string{"run", "--tree", f.tree, "--store", f.store}
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		outcome string
		signal  string
		err     string // a substring of "error"
	}{
		{"exit-0", append(run, "--json", "--", "sh", "-c", f.changeScript()), 0, "exited", "", ""},
		{"exit-3", append(run, "--json", "--", "sh", "-c", "exit 3"), 3, "exited", "", ""},
		{"sigterm", append(run, "--json", "--", "sh", "-c", "kill -TERM $$"), 143, "signaled", "SIGTERM", ""},
		{"sigkill", append(run, "--json", "--", "sh", "-c", "kill -KILL $$"), 137, "signaled", "SIGKILL", ""},
		{"not-found", append(run, "--json", "--", "fsvirt-no-such-command"), 127, "not_run", "", "command not found"},
		{"not-executable", append(run, "--json", "--", f.motd), 126, "not_run", "", "permission denied"},
		{"exec-fails-in-view", append(run, "--json", "--", badInterp), 127, "not_run", "", "exec " + badInterp + ": no such file or directory"},
		{"bad-tree", []string{"run", "--tree", "/nonexistent", "--store", f.store, "--json", "--", "true"}, 125, "failed", "", "tree /nonexistent"},
		{"bad-flag", append(run, "--json", "--bogus", "--", "true"), 125, "failed", "", "flag provided but not defined: -bogus"},
		{"keep-not-empty", append(run, "--json", "--keep", f.tree, "--", "true"), 125, "failed", "", "not empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fsvirt(t, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit status %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			var line string
			for _, l := range lines {
				if strings.HasPrefix(l, "{") {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no JSON on stderr: %q", r.stderr)
			}
			validLine(t, sch, line)
			var s jsonSummary
			if err := jsonDecode(line, &s); err != nil {
				t.Fatal(err)
			}
			if s.Outcome != tc.outcome || *s.ExitStatus != tc.code || s.SignalName != tc.signal || !strings.Contains(s.Error, tc.err) {
				t.Errorf("%s\nwant outcome %q, exit_status %d, signal %q, error containing %q", line, tc.outcome, tc.code, tc.signal, tc.err)
			}
		})
	}
}

// TestJSONSchemaRejects: the schema test can fail: output with a change kind as a letter, or
// without an outcome, or a failure without its reason, is refused.
func TestJSONSchemaRejects(t *testing.T) {
	sch := runSchema(t)
	for _, bad := range []string{
		`{"schema":1,"outcome":"exited","exit_status":0,"changes":[{"kind":"M","path":"/a"}],"calls":{},"copy_ups":0,"bytes_copied":0,"usage":{"bytes":0,"files":0}}`,
		`{"schema":1,"exit_status":0,"changes":[]}`,
		`{"schema":1,"outcome":"failed","exit_status":125,"changes":[]}`,
		`{"schema":2,"outcome":"failed","exit_status":125,"error":"x","changes":[]}`,
	} {
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if err := sch.Validate(v); err == nil {
			t.Errorf("the schema accepts %s", bad)
		}
	}
}

// TestJSONFDAndFile: --json-fd and --json-file receive the same line as --json; a descriptor
// that is not open and a file in a missing directory are refused before the command runs.
func TestJSONFDAndFile(t *testing.T) {
	requireEngine(t)
	sch := runSchema(t)
	f := newFixture(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "out.json")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fsvirtBin, "run", "--tree", f.tree, "--store", f.store, "--json", "--json-fd", "3",
		"--json-file", file, "--", "sh", "-c", f.changeScript())
	cmd.ExtraFiles = []*os.File{pw}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	pw.Close()
	var fromFD bytes.Buffer
	fromFD.ReadFrom(pr)
	fromFile, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if stderr.String() != fromFD.String() || fromFD.String() != string(fromFile) {
		t.Errorf("stderr %q, fd 3 %q, file %q: want one line, the same", stderr.String(), fromFD.String(), fromFile)
	}
	validLine(t, sch, strings.TrimSuffix(string(fromFile), "\n"))
	marker := filepath.Join(dir, "ran")
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--json-fd", "9"}, "--json-fd 9: not an open descriptor"},
		{[]string{"--json-fd", "-2"}, "--json-fd -2: not a descriptor number"},
		{[]string{"--json-file", filepath.Join(dir, "missing", "out.json")}, "--json-file " + filepath.Join(dir, "missing", "out.json")},
	} {
		r := f.run(t, tc.flags, "touch", marker)
		if r.code != 125 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit status %d, stderr %q; want 125 and %q", tc.flags, r.code, r.stderr, tc.want)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran although a JSON destination was refused")
	}
}

// TestApplyJSON: apply --json writes one line on stdout that satisfies
// docs/fsvirt-apply.schema.json for each outcome: would apply, refused, failed, applied.
func TestApplyJSON(t *testing.T) {
	requireEngine(t)
	sch := compileSchema(t, "fsvirt-apply.schema.json")
	f := newFixture(t)
	l := filepath.Join(t.TempDir(), "layer")
	if r := f.run(t, []string{"--keep", l}, "sh", "-c", f.changeScript()); r.code != 0 {
		t.Fatalf("run: %d %s", r.code, r.stderr)
	}
	type outcome struct {
		Outcome    string `json:"outcome"`
		ExitStatus int    `json:"exit_status"`
		Changes    []struct{ Kind, Path string }
		Conflicts  []struct{ Path, Reason string }
	}
	apply := func(wantCode int, wantOutcome string, args ...string) outcome {
		t.Helper()
		r := fsvirt(t, append([]string{"apply", "--json"}, args...)...)
		if r.code != wantCode || strings.Count(r.stdout, "\n") != 1 {
			t.Fatalf("apply %v: exit status %d, stdout %q; want %d and one line", args, r.code, r.stdout, wantCode)
		}
		line := strings.TrimSuffix(r.stdout, "\n")
		validLine(t, sch, line)
		var o outcome
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatal(err)
		}
		if o.Outcome != wantOutcome || o.ExitStatus != wantCode {
			t.Errorf("apply %v: %s; want outcome %s", args, line, wantOutcome)
		}
		return o
	}
	o := apply(0, "would_apply", "--dry-run", l)
	if len(o.Changes) != 2 || o.Changes[0].Kind != "modified" || o.Changes[0].Path != f.motd || o.Changes[1].Kind != "added" {
		t.Errorf("changes %+v", o.Changes)
	}
	apply(125, "failed", t.TempDir())
	os.WriteFile(f.motd, []byte("changed meanwhile\n"), 0o644)
	o = apply(1, "refused", l)
	if len(o.Conflicts) != 1 || o.Conflicts[0].Path != f.motd {
		t.Errorf("conflicts %+v, want motd", o.Conflicts)
	}
	os.WriteFile(f.motd, []byte(motdContent), 0o644)
	apply(1, "refused", l) // the same data again, but not the file the view copied: a new mtime
	os.RemoveAll(filepath.Join(f.tree, "new"))
	l2 := filepath.Join(t.TempDir(), "layer")
	if r := f.run(t, []string{"--keep", l2}, "sh", "-c", "echo x > "+filepath.Join(f.tree, "new")); r.code != 0 {
		t.Fatalf("run: %d %s", r.code, r.stderr)
	}
	apply(0, "applied", l2)
	assertFile(t, filepath.Join(f.tree, "new"), "x\n")
}
