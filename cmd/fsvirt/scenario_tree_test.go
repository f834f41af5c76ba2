package main

// The scenario test's model of a tree, and its checks of --diff and --keep (scenario_test.go).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// A node is what the comparisons know of one entry of a tree.
type node struct {
	// core is what find's listing shows: type, mode, owner, link count (not for directories)
	// and, by type, size and sha256 or symlink target.
	core   string
	xattrs string
}

// A tree maps "." and "./PATH" to its nodes.
type tree map[string]node

// Field sets that comparisons use.
type fields int

const (
	coreField fields = 1 << iota
	xattrField

	listedFields = coreField | xattrField // view vs reference, both listed by find
	diffFields   = coreField              // what --diff must account for
)

func (n node) render(f fields) string {
	var b strings.Builder
	if f&coreField != 0 {
		b.WriteString(n.core)
	}
	if f&xattrField != 0 && n.xattrs != "" {
		b.WriteString(" xattrs{" + n.xattrs + "}")
	}
	return b.String()
}

func (tr tree) lines(f fields) []string {
	var out []string
	for p, n := range tr {
		out = append(out, p+"\t"+n.render(f))
	}
	slices.Sort(out)
	return out
}

// placeholder returns tr with shared replaced by treePlaceholder in symlink targets, as in output.
func (tr tree) placeholder(shared string) tree {
	out := tree{}
	for p, n := range tr {
		n.core = strings.ReplaceAll(n.core, shared, treePlaceholder)
		out[p] = n
	}
	return out
}

func (tr tree) equal(other tree, f fields) bool {
	return slices.Equal(tr.lines(f), other.lines(f))
}

// treeOf is a host snapshot as find's listing would show it.
func treeOf(s treetest.Snapshot) tree {
	tr := tree{}
	for p, e := range s {
		if p != "." {
			p = "./" + p
		}
		tr[p] = nodeOf(e)
	}
	return tr
}

// nodeOf is an entry as find's listing would show it.
func nodeOf(e treetest.Entry) node {
	mode := strconv.FormatUint(uint64(e.Mode), 8)
	owner := fmt.Sprintf("%d:%d", e.Uid, e.Gid)
	n := node{xattrs: e.Xattrs}
	switch e.Type {
	case "dir":
		n.core = fmt.Sprintf("d %s %s", mode, owner)
	case "file":
		n.core = fmt.Sprintf("f %s %s %d %d %s", mode, owner, e.Nlink, e.Size, e.Sum)
	case "symlink":
		n.core = fmt.Sprintf("l %s %s %d -> %s", mode, owner, e.Nlink, e.Target)
	default:
		typ := map[string]string{"fifo": "p", "socket": "s", "char-device": "c", "block-device": "b"}[e.Type]
		n.core = fmt.Sprintf("%s %s %s %d", typ, mode, owner, e.Nlink)
	}
	return n
}

// splitListing separates the script's output from the wrapper's listing of the tree.
func splitListing(stdout string) (string, tree, error) {
	out, rest, ok := strings.Cut(stdout, markListing+"\n")
	if !ok {
		return "", nil, fmt.Errorf("no %q line: the wrapper did not finish", markListing)
	}
	listing, rest, ok := strings.Cut(rest, markHashes+"\n")
	if !ok {
		return "", nil, fmt.Errorf("no %q line", markHashes)
	}
	hashes, xattrs, ok := strings.Cut(rest, markXattrs+"\n")
	if !ok {
		return "", nil, fmt.Errorf("no %q line", markXattrs)
	}
	tr := tree{}
	for _, line := range splitLines(listing) {
		p, core, ok := strings.Cut(line, "\t")
		if !ok {
			return "", nil, fmt.Errorf("listing line %q: no tab", line)
		}
		tr[p] = node{core: core}
	}
	for _, line := range splitLines(hashes) {
		sum, p, ok := strings.Cut(line, "  ")
		n, listed := tr[p]
		if !ok || !listed {
			return "", nil, fmt.Errorf("sha256 line %q: not SUM  PATH of a listed file", line)
		}
		n.core += " " + sum
		tr[p] = n
	}
	// getfattr -d: "# file: PATH", then NAME="VALUE" lines, then an empty line.
	var cur string
	attrs := map[string][]string{}
	for _, line := range splitLines(xattrs) {
		switch {
		case strings.HasPrefix(line, "# file: "):
			cur = strings.TrimPrefix(line, "# file: ")
		case line == "":
		case cur != "":
			attrs[cur] = append(attrs[cur], line)
		default:
			return "", nil, fmt.Errorf("getfattr line %q outside a file", line)
		}
	}
	for p, a := range attrs {
		n := tr[p]
		slices.Sort(a)
		n.xattrs = strings.Join(a, " ")
		tr[p] = n
	}
	return out, tr, nil
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// A diffLine is one line of --diff.
type diffLine struct {
	kind byte // 'A', 'M' or 'D'
	path string
	rel  string // as in a tree: "./PATH"
}

var changeLine = regexp.MustCompile(`^([AMD]) (/.*)$`)

// parseChanges reads fsvirt's --diff lines from stderr: each one well formed, naming a clean
// path in the tree, in sorted order, each path once.
func parseChanges(stderr, shared string) ([]diffLine, []string) {
	var changes []diffLine
	var problems []string
	for i, line := range splitLines(stderr) {
		m := changeLine.FindStringSubmatch(line)
		if m == nil {
			problems = append(problems, fmt.Sprintf("stderr line %d %q is not a --diff line (A|M|D PATH)", i+1, line))
			continue
		}
		c := diffLine{kind: m[1][0], path: m[2]}
		rel, ok := strings.CutPrefix(c.path, shared)
		switch {
		case filepath.Clean(c.path) != c.path:
			problems = append(problems, fmt.Sprintf("--diff line %q: path not clean", line))
			continue
		case !ok || (rel != "" && rel[0] != '/'):
			problems = append(problems, fmt.Sprintf("--diff line %q: path outside the tree %s", line, shared))
			continue
		}
		c.rel = "." + rel
		if n := len(changes); n > 0 && changes[n-1].path >= c.path {
			problems = append(problems, fmt.Sprintf("--diff line %q: not after %q (want sorted, each path once)", line, changes[n-1].path))
		}
		changes = append(changes, c)
	}
	return changes, problems
}

// checkChanges checks the --diff lines against the shared tree before the run and the tree the
// view ended with. "A" names a path the view added, "D" one it removed, "M" one in both; and
// every path whose type, mode, owner, content or target differs is reported, by its own line or
// by an "A" or "D" line for a directory above it.
func checkChanges(changes []diffLine, shared string, before, view tree) []string {
	var problems []string
	byRel := map[string]byte{}
	for _, c := range changes {
		byRel[c.rel] = c.kind
		_, inBefore := before[c.rel]
		_, inView := view[c.rel]
		var want string
		switch {
		case c.kind == 'A' && (inBefore || !inView):
			want = "a path absent from the shared tree and present in the view"
		case c.kind == 'D' && (!inBefore || inView):
			want = "a path present in the shared tree and absent from the view"
		case c.kind == 'M' && (!inBefore || !inView):
			want = "a path present both in the shared tree and in the view"
		}
		if want != "" {
			problems = append(problems, fmt.Sprintf("--diff line %c %s: want %c only for %s (shared tree: %v, view: %v)",
				c.kind, c.path, c.kind, want, inBefore, inView))
		}
	}
	covered := func(rel string) bool {
		if _, ok := byRel[rel]; ok {
			return true
		}
		// "./a/b" is below "./a"; "." itself is never added or deleted.
		for i := strings.LastIndexByte(rel, '/'); i > 1; i = strings.LastIndexByte(rel[:i], '/') {
			if k := byRel[rel[:i]]; k == 'A' || k == 'D' {
				return true
			}
		}
		return false
	}
	var missed []string
	for _, rel := range unionKeys(before, view) {
		b, inBefore := before[rel]
		v, inView := view[rel]
		if inBefore == inView && b.render(diffFields) == v.render(diffFields) {
			continue
		}
		if !covered(rel) {
			missed = append(missed, fmt.Sprintf("  %s\tshared: %q\tview: %q", shared+rel[1:], b.core, v.core))
		}
	}
	if len(missed) > 0 {
		problems = append(problems, fmt.Sprintf("--diff does not report %d changed paths:\n%s",
			len(missed), strings.Join(capLines(missed), "\n")))
	}
	return problems
}

// checkKeep checks that --keep holds, at the view's path, what the view ended with for every
// path reported added or modified: the same type, content and symlink target. Sockets and device
// nodes are not kept (impl/keep.go says so): for them, it checks that nothing is.
func checkKeep(t *testing.T, keep, shared string, changes []diffLine, view tree) []string {
	t.Helper()
	var problems []string
	for _, c := range changes {
		if c.kind == 'D' {
			continue
		}
		v, ok := view[c.rel]
		if !ok {
			continue // checkChanges reported it
		}
		e, err := treetest.Stat(filepath.Join(keep, c.path))
		k := nodeOf(e)
		k.core = strings.ReplaceAll(k.core, shared, treePlaceholder)
		notKept := strings.IndexByte("scb", v.core[0]) >= 0
		switch {
		case notKept && !errors.Is(err, os.ErrNotExist):
			problems = append(problems, fmt.Sprintf("--keep: %c %s: kept %q (err %v), want no socket or device node", c.kind, c.path, k.core, err))
		case notKept:
		case err != nil:
			problems = append(problems, fmt.Sprintf("--keep: %c %s: %v", c.kind, c.path, err))
		case k.core[0] != v.core[0]:
			problems = append(problems, fmt.Sprintf("--keep: %c %s: kept %q, view has %q", c.kind, c.path, k.core, v.core))
		case v.core[0] == 'f' && lastField(k.core) != lastField(v.core),
			v.core[0] == 'l' && k.core[strings.Index(k.core, " -> "):] != v.core[strings.Index(v.core, " -> "):]:
			problems = append(problems, fmt.Sprintf("--keep: %c %s: kept %q, view has %q", c.kind, c.path, k.core, v.core))
		}
	}
	return problems
}

func lastField(s string) string { return s[strings.LastIndexByte(s, ' ')+1:] }

func unionKeys(a, b tree) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// maxDiffLines bounds what one failure prints, maxRun the lines in a row from one side only.
const (
	maxDiffLines = 40
	maxRun       = 8
)

func capLines(lines []string) []string {
	if len(lines) > maxDiffLines {
		return append(lines[:maxDiffLines:maxDiffLines], fmt.Sprintf("  ... and %d more lines", len(lines)-maxDiffLines))
	}
	return lines
}

// lineDiff shows how got differs from want, line by line ("-" want only, "+" got only), with two
// lines of context, from the first difference on, at most maxDiffLines lines.
func lineDiff(want, got []string) string {
	// lcs[i][j] is the length of the longest common subsequence of want[i:] and got[j:].
	lcs := make([][]int, len(want)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(got)+1)
	}
	for i := len(want) - 1; i >= 0; i-- {
		for j := len(got) - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		mark byte
		line string
	}
	var ops []op
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case i < len(want) && j < len(got) && want[i] == got[j]:
			ops = append(ops, op{' ', want[i]})
			i, j = i+1, j+1
		case i < len(want) && (j == len(got) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', want[i]})
			i++
		default:
			ops = append(ops, op{'+', got[j]})
			j++
		}
	}
	const context = 2
	show := make([]bool, len(ops))
	for k, o := range ops {
		if o.mark != ' ' {
			for c := max(0, k-context); c <= min(len(ops)-1, k+context); c++ {
				show[c] = true
			}
		}
	}
	var out []string
	last, run := -1, 0 // run: how many lines in a row carry o.mark
	for k, o := range ops {
		if !show[k] {
			continue
		}
		if last >= 0 && k != last+1 {
			out = append(out, "  ...")
		}
		last = k
		if k > 0 && ops[k-1].mark == o.mark && o.mark != ' ' {
			run++
		} else {
			run = 1
		}
		// A long run of lines on one side alone (a script that stopped early) would hide what
		// the other side printed instead: cut it short.
		if o.mark == ' ' || run <= maxRun {
			out = append(out, fmt.Sprintf("  %c %s", o.mark, o.line))
			continue
		}
		if run == maxRun+1 {
			end := k + 1
			for end < len(ops) && ops[end].mark == o.mark {
				end++
			}
			if end-k == 1 {
				out = append(out, fmt.Sprintf("  %c %s", o.mark, o.line))
			} else {
				out = append(out, fmt.Sprintf("  %c ... %d more lines", o.mark, end-k))
			}
		}
	}
	if len(out) == 0 {
		return "  (no line differs: the difference is in line endings)"
	}
	return strings.Join(capLines(out), "\n")
}
