package fsvirt

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Tree is a file tree by path: slash-separated, relative to the tree root,
// which itself is not an entry. Its text notation has one entry a line:
//
//	dir a
//	file a/f hello world
//	symlink l -> a/f
//	fifo p
//
// A file's content is the rest of its line; a line written in code may hold
// newlines and tabs, which are content too ("file f two\nlines\n"). An octal
// mode of four digits may follow the kind ("file 0600 a/f secret",
// "dir 1777 tmp"); the defaults are
// 0755 for directories, 0644 for files and FIFOs and 0777 for symlinks. An
// owner UID:GID may follow ("dir 2775 0:100 shared", "file 65534:65534 own");
// the default 0:0 stands for the owner of the directory the tree is built in.
// Symlink targets are relative: an absolute target would leave the tree.
type Tree map[string]Node

// NodeType is the kind of a [Node].
type NodeType byte

// The node types, spelled as in the notation.
const (
	Dir     NodeType = 'd'
	File    NodeType = 'f'
	Symlink NodeType = 'l'
	Fifo    NodeType = 'p'
)

var typeNames = map[NodeType]string{Dir: "dir", File: "file", Symlink: "symlink", Fifo: "fifo"}

var defaultModes = map[NodeType]uint32{Dir: 0o755, File: 0o644, Symlink: 0o777, Fifo: 0o644}

// Node is one entry of a [Tree].
type Node struct {
	Type     NodeType
	Mode     uint32 // permission bits
	Uid, Gid uint32 // the owner; 0 stands for the owner of the directory the tree is built in
	Data     string // File
	Target   string // Symlink
}

// ParseTree reads a tree in the notation of [Tree]. Parents must come first.
func ParseTree(lines ...string) (Tree, error) {
	t := Tree{}
	for _, line := range lines {
		kind, rest, _ := strings.Cut(line, " ")
		typ := NodeType(0)
		for k, name := range typeNames {
			if name == kind {
				typ = k
			}
		}
		if typ == 0 {
			return nil, fmt.Errorf("tree: %q: unknown kind %q", line, kind)
		}
		n := Node{Type: typ, Mode: defaultModes[typ]}
		if tok, after, _ := strings.Cut(rest, " "); len(tok) == 4 && (tok[0] == '0' || strings.Trim(tok, "01234567") == "") {
			mode, err := strconv.ParseUint(tok, 8, 32)
			if err != nil {
				return nil, fmt.Errorf("tree: %q: %w", line, err)
			}
			n.Mode, rest = uint32(mode), after
		}
		if tok, after, _ := strings.Cut(rest, " "); strings.Contains(tok, ":") {
			u, g, _ := strings.Cut(tok, ":")
			uid, err := strconv.ParseUint(u, 10, 32)
			gid, gerr := strconv.ParseUint(g, 10, 32)
			if err = errors.Join(err, gerr); err != nil {
				return nil, fmt.Errorf("tree: %q: owner: %w", line, err)
			}
			n.Uid, n.Gid, rest = uint32(uid), uint32(gid), after
		}
		p, rest, _ := strings.Cut(rest, " ")
		switch typ {
		case File:
			n.Data = rest
		case Symlink:
			target, ok := strings.CutPrefix(rest, "-> ")
			if !ok || target == "" || path.IsAbs(target) {
				return nil, fmt.Errorf("tree: %q: want \"symlink PATH -> RELATIVE-TARGET\"", line)
			}
			n.Target = target
		}
		if p == "" || p != path.Clean(p) || path.IsAbs(p) || strings.HasPrefix(p, "..") {
			return nil, fmt.Errorf("tree: %q: path must be clean and relative", line)
		}
		if dir := path.Dir(p); dir != "." && t[dir].Type != Dir {
			return nil, fmt.Errorf("tree: %q: parent %q is not a dir listed before", line, dir)
		}
		if _, dup := t[p]; dup {
			return nil, fmt.Errorf("tree: %q: %q listed twice", line, p)
		}
		t[p] = n
	}
	return t, nil
}

// MustParseTree is [ParseTree] for trees written in code; it panics on error.
func MustParseTree(lines ...string) Tree {
	t, err := ParseTree(lines...)
	if err != nil {
		panic(err)
	}
	return t
}

// Paths returns the paths of t, parents before children.
func (t Tree) Paths() []string {
	paths := make([]string, 0, len(t))
	for p := range t {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

// String renders t in its notation, one entry a line, sorted by path.
func (t Tree) String() string {
	var b strings.Builder
	for _, p := range t.Paths() {
		n := t[p]
		b.WriteString(typeNames[n.Type])
		if n.Mode != defaultModes[n.Type] {
			fmt.Fprintf(&b, " %04o", n.Mode)
		}
		if n.Uid != 0 || n.Gid != 0 {
			fmt.Fprintf(&b, " %d:%d", n.Uid, n.Gid)
		}
		b.WriteString(" " + p)
		switch n.Type {
		case File:
			if n.Data != "" {
				b.WriteString(" " + n.Data)
			}
		case Symlink:
			b.WriteString(" -> " + n.Target)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Hash is a digest of t's content, for cheap comparisons.
func (t Tree) Hash() string {
	sum := sha256.Sum256([]byte(t.String()))
	return hex.EncodeToString(sum[:])
}
