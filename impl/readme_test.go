package impl_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/fsvirt/fsvirt/impl"
)

// TestReadmeCoverage: the README's coverage table lists every syscall of the table, with the
// handling (and errno) the filter gives it.
func TestReadmeCoverage(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Syscall coverage")
	if !ok {
		t.Fatal("README.md has no Syscall coverage section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	readme := map[string]string{} // syscall name -> "handling errno" as the README says
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 4 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") || strings.TrimSpace(cells[1]) == "handling" {
			continue
		}
		how := strings.TrimSpace(cells[1])
		handling, errno, ok := strings.Cut(how, ", ")
		key := strings.Fields(handling)[0]
		if ok {
			key += " " + strings.Fields(errno)[0]
		}
		for _, name := range strings.FieldsFunc(cells[2], func(r rune) bool { return r == ',' || r == ';' }) {
			name = strings.TrimSpace(name)
			if f := strings.Fields(name); len(f) > 0 && f[0] != "every" && f[0] != "and" {
				if prev, dup := readme[f[0]]; dup {
					t.Errorf("README coverage table lists %s twice: %s and %s", f[0], prev, key)
				}
				readme[f[0]] = key
			}
		}
	}
	for _, s := range impl.Syscalls() {
		want := s.Handling
		if s.Errno != "" {
			want += " " + s.Errno
		}
		got, ok := readme[s.Name]
		switch {
		case !ok:
			t.Errorf("README coverage table does not list %s (%s)", s.Name, want)
		case got != want:
			t.Errorf("README coverage table says %s is %q, the syscall table %q", s.Name, got, want)
		}
		delete(readme, s.Name)
	}
	extra := slices.Sorted(func(yield func(string) bool) {
		for name := range readme {
			if !yield(name) {
				return
			}
		}
	})
	for _, name := range extra {
		if readme[name] != "passed" {
			t.Errorf("README coverage table lists %s as %s, but the syscall table does not have it", name, readme[name])
		}
	}
}
