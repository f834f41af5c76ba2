package main

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// wantHandling is a sample of the syscall table: the open family is virtualized, the ways around
// the filter are denied with ENOSYS.
var wantHandling = []struct {
	name     string
	nr       int
	handling string
	errno    string
}{
	{"open", unix.SYS_OPEN, "virtualized", ""},
	{"openat", unix.SYS_OPENAT, "virtualized", ""},
	{"openat2", unix.SYS_OPENAT2, "virtualized", ""},
	{"creat", unix.SYS_CREAT, "virtualized", ""},
	{"io_uring_setup", unix.SYS_IO_URING_SETUP, "denied", "ENOSYS"},
	{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, "denied", "ENOSYS"},
	{"name_to_handle_at", unix.SYS_NAME_TO_HANDLE_AT, "denied", "ENOSYS"},
}

type syscallRow struct {
	Name     string `json:"name"`
	Nr       int    `json:"nr"`
	Handling string `json:"handling"`
	Errno    string `json:"errno"`
	Note     string `json:"note"`
}

func TestSyscallsText(t *testing.T) {
	r := fsvirt(t, "syscalls")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit status %d, stderr %q; want 0 and none", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if h := strings.Fields(lines[0]); strings.Join(h, " ") != "NAME NR HANDLING NOTE" {
		t.Errorf("header %q, want NAME NR HANDLING NOTE", lines[0])
	}
	rows := map[string]syscallRow{}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "(") { // the "(other)" and "(i386, x32)" footers
			continue
		}
		f := strings.Fields(l)
		if len(f) < 3 {
			t.Errorf("line %q: want NAME NR HANDLING [NOTE]", l)
			continue
		}
		nr, err := strconv.Atoi(f[1])
		if err != nil {
			t.Errorf("line %q: NR: %v", l, err)
			continue
		}
		row := syscallRow{Name: f[0], Nr: nr, Handling: f[2]}
		if len(f) > 3 && strings.HasPrefix(f[3], "(") {
			row.Errno = strings.Trim(f[3], "()")
		}
		rows[row.Name] = row
	}
	for _, w := range wantHandling {
		got, ok := rows[w.name]
		switch {
		case !ok:
			t.Errorf("%s not listed", w.name)
		case got.Nr != w.nr || got.Handling != w.handling || got.Errno != w.errno:
			t.Errorf("%s: got nr %d, %s %s; want nr %d, %s %s", w.name, got.Nr, got.Handling, got.Errno, w.nr, w.handling, w.errno)
		}
	}
	if !strings.Contains(r.stdout, "(i386, x32)") || !strings.Contains(r.stdout, "(other)") {
		t.Errorf("output lacks the footers for other syscalls and architectures:\n%s", r.stdout)
	}
}

func TestSyscallsJSON(t *testing.T) {
	r := fsvirt(t, "syscalls", "--json")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit status %d, stderr %q; want 0 and none", r.code, r.stderr)
	}
	var rows []syscallRow
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rows); err != nil {
		t.Fatalf("stdout is not a JSON array of syscalls: %v\n%s", err, r.stdout)
	}
	byName := map[string]syscallRow{}
	for _, row := range rows {
		if row.Name == "" || row.Nr < 0 || row.Handling == "" {
			t.Errorf("row %+v lacks name, nr or handling", row)
		}
		if (row.Handling == "denied") != (row.Errno != "") {
			t.Errorf("row %+v: want an errno exactly when denied", row)
		}
		byName[row.Name] = row
	}
	if !sort.SliceIsSorted(rows, func(i, j int) bool { return rows[i].Nr < rows[j].Nr }) {
		t.Errorf("rows not sorted by number")
	}
	for _, w := range wantHandling {
		got, ok := byName[w.name]
		switch {
		case !ok:
			t.Errorf("%s not listed", w.name)
		case got.Nr != w.nr || got.Handling != w.handling || got.Errno != w.errno:
			t.Errorf("%s: got %+v; want nr %d, %s %s", w.name, got, w.nr, w.handling, w.errno)
		}
	}

	// The text table lists the same rows.
	text := fsvirt(t, "syscalls").stdout
	for _, row := range rows {
		if !strings.Contains(text, "\n"+row.Name+" ") {
			t.Errorf("%s is in the JSON but not in the text table", row.Name)
		}
	}
}
