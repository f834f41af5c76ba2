package driver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fsvirt/fsvirt"
)

// Case is one conformance case: a starting tree, the ops of one or more runs,
// and what some of them must observe. Its file format is the JSON encoding of
// Case; docs/conformance.md describes it.
type Case struct {
	// Name is descriptive ("rename-shared-dir-keeps-contents"); it defaults to
	// the file's base name without ".json".
	Name string `json:"name"`
	// Category groups cases in the report: open-flags, copy-up, directories,
	// rename, symlinks, metadata, isolation.
	Category string `json:"category"`
	// Doc says what the case checks, in a sentence or two.
	Doc string `json:"doc,omitempty"`
	// Tree is the shared tree, one entry a line, in the notation of
	// [fsvirt.Tree] ("dir a", "file a/f hello", "symlink l -> a/f").
	Tree []string `json:"tree"`
	// Ops is the script of a case with a single run. A case has Ops or Runs.
	Ops []Op `json:"ops,omitempty"`
	// Runs are the scripts of several runs, each in a fresh view of the same
	// shared tree, all at once (they order themselves with signal and wait)
	// unless Sequential.
	Runs [][]Op `json:"runs,omitempty"`
	// Sequential runs one run after the other, each after the previous one
	// ended.
	Sequential bool `json:"sequential,omitempty"`
}

// Op is one step of a script. Which fields an op uses is listed in
// [opSpecs]; the others must be empty.
type Op struct {
	Op       string `json:"op"`
	Path     string `json:"path,omitempty"`
	Dirfd    string `json:"dirfd,omitempty"` // a name given by "as"; empty: the working directory
	NewPath  string `json:"newpath,omitempty"`
	NewDirfd string `json:"newdirfd,omitempty"`
	Fd       string `json:"fd,omitempty"` // a name given by "as"
	As       string `json:"as,omitempty"` // open: the name of the new descriptor
	Flags    string `json:"flags,omitempty"`
	Mode     string `json:"mode,omitempty"` // octal, optionally after a type: "S_IFIFO|0644"
	Data     string `json:"data,omitempty"`
	Target   string `json:"target,omitempty"` // symlink
	Name     string `json:"name,omitempty"`   // xattr name; signal and wait: the event
	Size     *int64 `json:"size,omitempty"`
	Offset   int64  `json:"offset,omitempty"`
	Whence   string `json:"whence,omitempty"`
	UID      *int   `json:"uid,omitempty"`
	GID      *int   `json:"gid,omitempty"`
	Time     int64  `json:"time,omitempty"`
	// Expect is what the observation must hold, whatever the reference says:
	// a subset of its fields ({"errno": "ENOENT"}, {"data": "hello"},
	// {"stat": {"mode": "0600"}}). A field the observation omits counts as
	// its zero value, so {"errno": ""} means success.
	Expect map[string]any `json:"expect,omitempty"`
}

// Scripts returns the runs of c: Runs, or Ops as the only one.
func (c *Case) Scripts() [][]Op {
	if len(c.Runs) > 0 {
		return c.Runs
	}
	return [][]Op{c.Ops}
}

// ParseCase decodes and checks a case file's content. name is used when the
// case has none.
func ParseCase(name string, data []byte) (*Case, error) {
	c := &Case{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("case %s: %w", name, err)
	}
	if c.Name == "" {
		c.Name = name
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("case %s: %w", c.Name, err)
	}
	return c, nil
}

// LoadCase reads a case file.
func LoadCase(file string) (*Case, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return ParseCase(strings.TrimSuffix(filepath.Base(file), ".json"), data)
}

// Categories are the known categories, in report order.
var Categories = []string{"open-flags", "copy-up", "directories", "rename", "symlinks", "metadata", "isolation"}

func (c *Case) check() error {
	if !slices.Contains(Categories, c.Category) {
		return fmt.Errorf("category %q is none of %v", c.Category, Categories)
	}
	if _, err := fsvirt.ParseTree(c.Tree...); err != nil {
		return err
	}
	if (len(c.Ops) > 0) == (len(c.Runs) > 0) {
		return errors.New("want ops or runs, not both or neither")
	}
	for r, script := range c.Scripts() {
		names := map[string]bool{}
		for i, op := range script {
			if err := op.check(names); err != nil {
				return fmt.Errorf("run %d step %d (%s): %w", r, i, op.Op, err)
			}
		}
	}
	return nil
}

// check verifies op's fields against its spec; names holds the descriptor
// names defined so far, to which an "as" is added.
func (op Op) check(names map[string]bool) error {
	spec, ok := opSpecs[op.Op]
	if !ok {
		return fmt.Errorf("unknown op %q", op.Op)
	}
	set := map[string]bool{
		"path": op.Path != "", "dirfd": op.Dirfd != "", "newpath": op.NewPath != "",
		"newdirfd": op.NewDirfd != "", "fd": op.Fd != "", "as": op.As != "", "flags": op.Flags != "",
		"mode": op.Mode != "", "data": op.Data != "", "target": op.Target != "", "name": op.Name != "",
		"size": op.Size != nil, "offset": op.Offset != 0, "whence": op.Whence != "",
		"uid": op.UID != nil, "gid": op.GID != nil, "time": op.Time != 0,
	}
	for f, isSet := range set {
		if isSet && !slices.Contains(spec.fields, f) {
			return fmt.Errorf("field %q is not used by %s", f, op.Op)
		}
	}
	for _, f := range spec.required {
		if !set[f] {
			return fmt.Errorf("field %q is required", f)
		}
	}
	for _, fd := range []string{op.Fd, op.Dirfd, op.NewDirfd} {
		if fd != "" && !names[fd] {
			return fmt.Errorf("descriptor %q is not defined by an earlier \"as\"", fd)
		}
	}
	if op.As != "" {
		names[op.As] = true
	}
	if op.Flags != "" {
		if _, err := parseBits(op.Flags); err != nil {
			return err
		}
	}
	if op.Mode != "" {
		if _, err := parseMode(op.Mode); err != nil {
			return err
		}
	}
	if op.Whence != "" {
		if _, err := parseBits(op.Whence); err != nil {
			return err
		}
	}
	return nil
}

// opSpec lists the fields an op may use and those it must.
type opSpec struct {
	fields, required []string
}

var (
	pathFields = []string{"path", "dirfd"}
	twoPaths   = []string{"path", "dirfd", "newpath", "newdirfd", "flags"}
)

// opSpecs are the ops a script may use. Most are one system call; cat, ls
// and samefile are several, and signal and wait synchronize concurrent runs.
var opSpecs = map[string]opSpec{
	"open":        {append([]string{"flags", "mode", "as"}, pathFields...), []string{"path", "as"}},
	"close":       {[]string{"fd"}, []string{"fd"}},
	"read":        {[]string{"fd", "size"}, []string{"fd"}},
	"write":       {[]string{"fd", "data"}, []string{"fd"}},
	"pwrite":      {[]string{"fd", "data", "offset"}, []string{"fd"}},
	"lseek":       {[]string{"fd", "offset", "whence"}, []string{"fd", "whence"}},
	"ftruncate":   {[]string{"fd", "size"}, []string{"fd", "size"}},
	"fstat":       {[]string{"fd"}, []string{"fd"}},
	"getdents":    {[]string{"fd"}, []string{"fd"}},
	"fchdir":      {[]string{"fd"}, []string{"fd"}},
	"stat":        {append([]string{"flags"}, pathFields...), nil},
	"lstat":       {pathFields, []string{"path"}},
	"access":      {append([]string{"mode"}, pathFields...), []string{"path"}},
	"readlink":    {append([]string{"size"}, pathFields...), []string{"path"}},
	"mkdir":       {append([]string{"mode"}, pathFields...), []string{"path"}},
	"unlink":      {pathFields, []string{"path"}},
	"rmdir":       {pathFields, []string{"path"}},
	"rename":      {twoPaths, []string{"path", "newpath"}},
	"link":        {twoPaths, []string{"path", "newpath"}},
	"symlink":     {append([]string{"target"}, pathFields...), []string{"path", "target"}},
	"chmod":       {append([]string{"mode"}, pathFields...), []string{"path", "mode"}},
	"chown":       {append([]string{"uid", "gid", "flags"}, pathFields...), []string{"path"}},
	"truncate":    {[]string{"path", "size"}, []string{"path", "size"}},
	"utimens":     {append([]string{"time", "flags"}, pathFields...), []string{"path", "time"}},
	"mtime":       {[]string{"path", "flags"}, []string{"path"}},
	"mknod":       {append([]string{"mode"}, pathFields...), []string{"path", "mode"}},
	"chdir":       {[]string{"path"}, []string{"path"}},
	"getcwd":      {nil, nil},
	"setxattr":    {[]string{"path", "name", "data", "flags"}, []string{"path", "name"}},
	"getxattr":    {[]string{"path", "name"}, []string{"path", "name"}},
	"listxattr":   {[]string{"path"}, []string{"path"}},
	"removexattr": {[]string{"path", "name"}, []string{"path", "name"}},
	"cat":         {pathFields, []string{"path"}},
	"ls":          {pathFields, []string{"path"}},
	"samefile":    {[]string{"path", "newpath"}, []string{"path", "newpath"}},
	"signal":      {[]string{"name"}, []string{"name"}},
	"wait":        {[]string{"name"}, []string{"name"}},
}
