package fsvirt_test

import (
	"strings"
	"testing"

	"github.com/fsvirt/fsvirt"
)

func TestParseTree(t *testing.T) {
	lines := []string{
		"dir a",
		"file 0600 a/f hello world",
		"file a/g",
		"symlink l -> a/f",
		"dir 1777 t",
		"file 2755 65534:100 t/o",
		"dir 0:100 s",
	}
	tree, err := fsvirt.ParseTree(lines...)
	if err != nil {
		t.Fatal(err)
	}
	want := fsvirt.Tree{
		"a":   {Type: fsvirt.Dir, Mode: 0o755},
		"a/f": {Type: fsvirt.File, Mode: 0o600, Data: "hello world"},
		"a/g": {Type: fsvirt.File, Mode: 0o644},
		"l":   {Type: fsvirt.Symlink, Mode: 0o777, Target: "a/f"},
		"t":   {Type: fsvirt.Dir, Mode: 0o1777},
		"t/o": {Type: fsvirt.File, Mode: 0o2755, Uid: 65534, Gid: 100},
		"s":   {Type: fsvirt.Dir, Mode: 0o755, Gid: 100},
	}
	if tree.String() != want.String() || len(tree) != len(want) {
		t.Errorf("got\n%s\nwant\n%s", tree, want)
	}
	again, err := fsvirt.ParseTree(strings.Split(strings.TrimSuffix(tree.String(), "\n"), "\n")...)
	if err != nil || again.Hash() != tree.Hash() {
		t.Errorf("round trip: %v\n%s", err, again)
	}
}

// TestParseTreeMultilineContent: a line written in code may carry newlines and tabs in a file's
// content, as tests that build trees with treetest.Build do.
func TestParseTreeMultilineContent(t *testing.T) {
	tree, err := fsvirt.ParseTree("file f two\nlines\n", "file 0755 s #!/bin/sh\n\techo hi\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := tree["f"].Data; got != "two\nlines\n" {
		t.Errorf("f holds %q", got)
	}
	if got := tree["s"]; got.Data != "#!/bin/sh\n\techo hi\n" || got.Mode != 0o755 {
		t.Errorf("s is %+v", got)
	}
}

func TestParseTreeErrors(t *testing.T) {
	for name, lines := range map[string][]string{
		"unknown-kind":       {"socket s"},
		"parent-missing":     {"file a/f"},
		"parent-is-a-file":   {"file a", "file a/f"},
		"absolute-symlink":   {"symlink l -> /etc/passwd"},
		"symlink-no-target":  {"symlink l"},
		"unclean-path":       {"dir a", "file a/../f"},
		"path-leaves-tree":   {"file ../f"},
		"listed-twice":       {"file f", "file f"},
		"bad-octal-mode":     {"file 0999 f"},
		"bad-owner":          {"file 0644 1:x f"},
		"absolute-node-path": {"file /f"},
	} {
		if _, err := fsvirt.ParseTree(lines...); err == nil {
			t.Errorf("%s: %q parsed", name, lines)
		}
	}
}
