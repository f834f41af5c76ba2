package model

import (
	"fmt"
	"path"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// Mapping is how the view serves an op.
type Mapping uint8

const (
	// PassThrough: the op reaches the shared tree (or fails before reaching
	// anything). A read-only open of a file the invocation has not copied up
	// is one.
	PassThrough Mapping = iota
	// Redirect: the op reaches the invocation's private layer: a file it
	// copied up or created, or an O_TMPFILE.
	Redirect
	// CopyUp: an open for writing of a shared file the invocation has not
	// copied up yet; the file is copied into the private layer, then
	// redirected. It happens at most once per file and invocation.
	CopyUp
)

func (m Mapping) String() string {
	return [...]string{"pass-through", "redirect", "copy-up"}[m]
}

// Decision is the model's account of how the view serves an op.
type Decision struct {
	Mapping Mapping
	// Stale says the op uses an fd that was opened on the shared file before
	// the invocation copied that file up. The fd still refers to the shared
	// file (KERNEL.md, trap 10), where a chroot copy or overlayfs would show
	// the invocation's private copy.
	Stale bool
}

type node struct {
	typ    fsvirt.NodeType
	mode   uint32 // permission bits
	data   []byte // fsvirt.File
	target string // fsvirt.Symlink
	nlink  uint64 // 0 for an O_TMPFILE; not kept for directories
}

// file is an open fd.
type file struct {
	node    *node
	path    string // canonical; "" for an O_TMPFILE
	private bool   // node is in the private layer
	flags   int    // as open(2) kept them
	off     int64
}

type invocation struct {
	layer   map[string]*node // private files by canonical path
	fds     []*file          // by handle; nil when free
	copyUps int
}

// Model is the view over one shared tree.
type Model struct {
	shared map[string]*node // by canonical path; "" is the root
	umask  uint32
	invs   map[fsvirt.Inv]*invocation
}

var (
	_ fsvirt.FS            = (*Model)(nil)
	_ fsvirt.CopyUpCounter = (*Model)(nil)
)

// New returns a model of the view of tree. Files are created with mode &^
// umask, as the kernel does for the invocation's thread.
func New(tree fsvirt.Tree, umask uint32) *Model {
	m := &Model{
		shared: map[string]*node{"": {typ: fsvirt.Dir, mode: 0o755}},
		umask:  umask,
		invs:   map[fsvirt.Inv]*invocation{},
	}
	for _, p := range tree.Paths() {
		n := tree[p]
		m.shared[p] = &node{typ: n.Type, mode: n.Mode, data: []byte(n.Data), target: n.Target, nlink: 1}
	}
	return m
}

// Begin implements [fsvirt.FS].
func (m *Model) Begin(inv fsvirt.Inv) error {
	if m.invs[inv] != nil {
		return fmt.Errorf("model: invocation %d is live", inv)
	}
	m.invs[inv] = &invocation{layer: map[string]*node{}}
	return nil
}

// End implements [fsvirt.FS]: the invocation's layer and open files go
// away with it, so nothing is left.
func (m *Model) End(inv fsvirt.Inv) error {
	if m.invs[inv] == nil {
		return fmt.Errorf("model: invocation %d is not live", inv)
	}
	delete(m.invs, inv)
	return nil
}

// Do implements [fsvirt.FS].
func (m *Model) Do(inv fsvirt.Inv, op fsvirt.Op) fsvirt.Outcome {
	o, _ := m.Apply(inv, op)
	return o
}

// Apply runs op in inv's view and says how the view served it.
func (m *Model) Apply(inv fsvirt.Inv, op fsvirt.Op) (fsvirt.Outcome, Decision) {
	iv := m.invs[inv]
	if iv == nil {
		panic(fmt.Sprintf("[bug] model: invocation %d is not live", inv))
	}
	if op.Kind == fsvirt.OpOpen {
		return m.open(iv, op)
	}
	return iv.fdOp(op)
}

// Defined reports whether op's outcome is part of the view's contract: its
// path does not climb above the root, and it does not seek in a directory.
func (m *Model) Defined(inv fsvirt.Inv, op fsvirt.Op) bool {
	iv := m.invs[inv]
	switch op.Kind {
	case fsvirt.OpOpen:
		p, _ := m.plan(iv, op)
		return !p.escaped
	case fsvirt.OpSeek:
		f := iv.fd(op.Fd)
		return f == nil || f.node.typ != fsvirt.Dir
	}
	return true
}

// CopyUps implements [fsvirt.CopyUpCounter].
func (m *Model) CopyUps(inv fsvirt.Inv) int { return m.invs[inv].copyUps }

// Shared implements [fsvirt.FS]. No op changes the shared tree.
func (m *Model) Shared() (fsvirt.Tree, error) {
	t := fsvirt.Tree{}
	for p, n := range m.shared {
		if p != "" {
			t[p] = fsvirt.Node{Type: n.typ, Mode: n.mode, Data: string(n.data), Target: n.target}
		}
	}
	return t, nil
}

// lookup finds the node at canonical path p in iv's view.
func (m *Model) lookup(iv *invocation, p string) *node {
	if n := iv.layer[p]; n != nil {
		return n
	}
	return m.shared[p]
}

// fd returns the open file behind h, or nil.
func (iv *invocation) fd(h fsvirt.Handle) *file {
	if h < 0 || int(h) >= len(iv.fds) {
		return nil
	}
	return iv.fds[h]
}

// install gives f the lowest free handle.
func (iv *invocation) install(f *file) fsvirt.Handle {
	h := slices.Index(iv.fds, nil)
	if h < 0 {
		h = len(iv.fds)
		iv.fds = append(iv.fds, nil)
	}
	iv.fds[h] = f
	return fsvirt.Handle(h)
}

func (n *node) stat() fsvirt.Stat {
	s := fsvirt.Stat{Mode: n.mode, Nlink: n.nlink}
	switch n.typ {
	case fsvirt.Dir:
		s.Mode, s.Nlink = s.Mode|unix.S_IFDIR, 0 // see fsvirt.Stat
	case fsvirt.File:
		s.Mode |= unix.S_IFREG
		s.Size = int64(len(n.data))
	case fsvirt.Symlink:
		s.Mode |= unix.S_IFLNK
		s.Size = int64(len(n.target))
	}
	return s
}

func parent(p string) string {
	if d := path.Dir(p); d != "." {
		return d
	}
	return ""
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
