package model

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt"
)

// Mapping is how the view serves an op.
type Mapping uint8

const (
	// PassThrough: the op reaches the shared tree (or fails before reaching
	// anything). A read-only open of a file the invocation has not copied up
	// is one, and so is an op on a directory whose entries and metadata the
	// invocation has not changed.
	PassThrough Mapping = iota
	// Redirect: the op reaches the invocation's private layer: a file it
	// copied up or created, an O_TMPFILE, a directory it changed, or a
	// change of names (a whiteout, a rename) that the shared tree never
	// sees.
	Redirect
	// CopyUp: an op that writes the data or metadata of a shared file (or
	// symlink) the invocation has not copied up yet, or links it; the file
	// is copied into the private layer, then the op is redirected. It
	// happens at most once per file and invocation, and only when the op
	// succeeds.
	CopyUp
)

func (m Mapping) String() string {
	return [...]string{"pass-through", "redirect", "copy-up"}[m]
}

// Decision is the model's account of how the view serves an op.
type Decision struct {
	Mapping Mapping
	// Stale says the op uses an fd that refers to the shared tree where a
	// chroot copy or overlayfs would show the view:
	//   - a file fd opened on the shared file before the invocation copied
	//     that file up or unlinked it keeps reading the shared file
	//     (docs/kernel.md, "Descriptors opened before a copy-up");
	//   - a directory fd opened before the invocation changed that
	//     directory's entries or metadata lists the shared directory's
	//     entries, and fstat shows the shared directory, for the rest of its
	//     life, like overlayfs's readdir cache. Ops relative to it resolve in
	//     the live view.
	Stale bool
}

// node is a file. The shared tree's nodes are never changed: an invocation
// that changes a shared non-directory first copies it up, and each
// invocation has directories of its own from the start.
type node struct {
	typ      fsvirt.NodeType
	mode     uint32 // permission, setuid, setgid and sticky bits
	uid, gid uint32
	data     []byte // fsvirt.File
	target   string // fsvirt.Symlink
	xattrs   map[string]string
	nlink    uint64 // non-directories: names in the view
	shared   bool   // a node of the shared tree

	// Directories.
	entries map[string]*node
	parent  *node // ".."; nil at the root
	lower   *node // the shared directory this one shows; nil when made by mkdir
	touched bool  // the invocation changed its entries or metadata
	dead    bool  // removed
}

// file is an open fd.
type file struct {
	node  *node
	flags int // as open(2) kept them
	off   int64
	// listShared: a directory fd opened while the directory was untouched
	// lists node.lower for the rest of its life.
	listShared bool
}

type invocation struct {
	cred      fsvirt.Cred // who the ops run as
	sysctls   Sysctls
	root, cwd *node
	fds       []*file // by handle; nil when free
	copyUps   int
	gone      map[*node]bool // shared non-directories the view no longer shows
	// names counts the names a shared non-directory has in the view once the view linked it:
	// the file stays shared (nothing is copied) until it is written, and then every name gets
	// the copy.
	names     map[*node]uint64
	undefined string // why the current op is not part of the contract
}

// Model is the view over one shared tree.
type Model struct {
	tree     fsvirt.Tree
	shared   *node // the root
	umask    uint32
	uid, gid uint32 // an invocation's credentials at Begin
	sysctls  Sysctls
	invs     map[fsvirt.Inv]*invocation
}

var (
	_ fsvirt.FS            = (*Model)(nil)
	_ fsvirt.CopyUpCounter = (*Model)(nil)
	_ fsvirt.CredSetter    = (*Model)(nil)
)

// New returns a model of the view of tree. Files are created with mode &^
// umask, as the kernel does for the invocation's thread. The tree's files
// owned by 0:0 belong to root, and invocations begin as root, unless
// [Model.WithOwner] says otherwise.
func New(tree fsvirt.Tree, umask uint32) *Model {
	root := &node{typ: fsvirt.Dir, mode: 0o755, shared: true, entries: map[string]*node{}}
	byPath := map[string]*node{"": root}
	for _, p := range tree.Paths() {
		n := tree[p]
		sn := &node{typ: n.Type, mode: n.Mode, uid: n.Uid, gid: n.Gid, data: []byte(n.Data), target: n.Target, nlink: 1, shared: true}
		if n.Type == fsvirt.Dir {
			sn.entries = map[string]*node{}
		}
		dir, name := splitPath(p)
		sn.parent = byPath[dir]
		byPath[dir].entries[name] = sn
		byPath[p] = sn
	}
	return &Model{tree: tree, shared: root, umask: umask, invs: map[fsvirt.Inv]*invocation{}}
}

// WithOwner makes uid and gid the owner of the shared tree's files that the
// tree gives to 0:0 (the builder, see [fsvirt.Tree]), and the credentials
// invocations begin with: the process's.
func (m *Model) WithOwner(uid, gid uint32) *Model {
	m.uid, m.gid = uid, gid
	var own func(n *node)
	own = func(n *node) {
		if n.uid == 0 {
			n.uid = uid
		}
		if n.gid == 0 {
			n.gid = gid
		}
		for _, e := range n.entries {
			own(e)
		}
	}
	own(m.shared)
	return m
}

// WithSysctls makes the model, its live invocations included, follow s.
func (m *Model) WithSysctls(s Sysctls) *Model {
	m.sysctls = s
	for _, iv := range m.invs {
		iv.sysctls = s
	}
	return m
}

// SetCred implements [fsvirt.CredSetter].
func (m *Model) SetCred(inv fsvirt.Inv, c fsvirt.Cred) error {
	iv := m.invs[inv]
	if iv == nil {
		return fmt.Errorf("model: invocation %d is not live", inv)
	}
	iv.cred = fsvirt.Cred{Uid: c.Uid, Gid: c.Gid, Groups: slices.Clone(c.Groups)}
	return nil
}

// Begin implements [fsvirt.FS].
func (m *Model) Begin(inv fsvirt.Inv) error {
	if m.invs[inv] != nil {
		return fmt.Errorf("model: invocation %d is live", inv)
	}
	root := viewDir(m.shared, nil)
	m.invs[inv] = &invocation{cred: fsvirt.Cred{Uid: m.uid, Gid: m.gid}, sysctls: m.sysctls, root: root, cwd: root, gone: map[*node]bool{}}
	return nil
}

// viewDir makes an invocation's directory showing the shared directory d.
func viewDir(d, parent *node) *node {
	v := &node{typ: fsvirt.Dir, mode: d.mode, uid: d.uid, gid: d.gid, entries: map[string]*node{}, parent: parent, lower: d}
	for name, n := range d.entries {
		if n.typ == fsvirt.Dir {
			n = viewDir(n, v)
		}
		v.entries[name] = n
	}
	return v
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
	iv.undefined = ""
	o, dec := m.apply(iv, op)
	if o.Errno != 0 {
		dec.Mapping = PassThrough
	}
	return o, dec
}

func (m *Model) apply(iv *invocation, op fsvirt.Op) (fsvirt.Outcome, Decision) {
	switch op.Kind {
	case fsvirt.OpOpen:
		return m.open(iv, op)
	case fsvirt.OpRead, fsvirt.OpWrite, fsvirt.OpPwrite, fsvirt.OpSeek, fsvirt.OpTruncate, fsvirt.OpStat,
		fsvirt.OpClose, fsvirt.OpGetdents, fsvirt.OpFchdir:
		return m.fdOp(iv, op)
	case fsvirt.OpMkdir, fsvirt.OpMknod, fsvirt.OpSymlink, fsvirt.OpLink:
		return m.create(iv, op)
	case fsvirt.OpUnlink:
		return m.unlink(iv, op)
	case fsvirt.OpRename:
		return m.rename(iv, op)
	}
	return m.pathOp(iv, op)
}

// Defined reports whether op's outcome is part of the view's contract: no
// path it resolves climbs above the root (the engine, which runs without a
// chroot, would leave the tree), it does not seek in a directory (the result
// is file-system specific), it does not open a FIFO (which blocks) but with
// O_PATH, and it does not make an O_TMPFILE in a removed directory (EPERM
// on ext4, ENOTDIR on overlayfs when the directory came from the lower
// layer).
func (m *Model) Defined(inv fsvirt.Inv, op fsvirt.Op) bool {
	c := m.clone()
	c.Apply(inv, op)
	return c.invs[inv].undefined == ""
}

// clone copies m deeply but for the shared nodes, which no op changes.
func (m *Model) clone() *Model {
	c := *m
	c.invs = map[fsvirt.Inv]*invocation{}
	seen := map[*node]*node{}
	var cp func(n *node) *node
	cp = func(n *node) *node {
		if n == nil || n.shared {
			return n
		}
		if d := seen[n]; d != nil {
			return d
		}
		d := *n
		seen[n] = &d
		d.data, d.xattrs = slices.Clone(n.data), cloneMap(n.xattrs)
		if n.entries != nil {
			d.entries = map[string]*node{}
			for name, e := range n.entries {
				d.entries[name] = cp(e)
			}
		}
		d.parent = cp(n.parent)
		return &d
	}
	for inv, iv := range m.invs {
		civ := &invocation{cred: iv.cred, sysctls: iv.sysctls, root: cp(iv.root), cwd: cp(iv.cwd), copyUps: iv.copyUps, gone: cloneMap(iv.gone), names: cloneMap(iv.names)}
		for _, f := range iv.fds {
			var cf *file
			if f != nil {
				cf = &file{node: cp(f.node), flags: f.flags, off: f.off, listShared: f.listShared}
			}
			civ.fds = append(civ.fds, cf)
		}
		c.invs[inv] = civ
	}
	return &c
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return nil
	}
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// CopyUps implements [fsvirt.CopyUpCounter].
func (m *Model) CopyUps(inv fsvirt.Inv) int { return m.invs[inv].copyUps }

// Shared implements [fsvirt.FS]. No op changes the shared tree.
func (m *Model) Shared() (fsvirt.Tree, error) {
	return cloneMap(m.tree), nil
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

// private makes the node that dir's entry name refers to writable, copying
// a shared non-directory up, and says how the op that writes it is served.
// A directory is marked touched: the invocation's listing of it no longer
// follows the shared one.
func (iv *invocation) private(dir *node, name string, n *node) (*node, Mapping) {
	switch {
	case n.typ == fsvirt.Dir:
		n.touched = true
		return n, Redirect
	case !n.shared:
		return n, Redirect
	}
	c := &node{typ: n.typ, mode: n.mode, uid: n.uid, gid: n.gid, data: slices.Clone(n.data), target: n.target, xattrs: cloneMap(n.xattrs), nlink: 1}
	if dir == nil || dir.entries[name] != n {
		panic(fmt.Sprintf("[bug] model: copy-up of %q, not in its directory", name))
	}
	dir.entries[name] = c
	if k := iv.names[n]; k > 0 { // every other name of the shared file gets the copy too
		c.nlink = k
		iv.replace(iv.root, n, c)
		delete(iv.names, n)
	}
	iv.gone[n] = true
	iv.copyUps++
	return c, CopyUp
}

// replace makes every entry under dir that is n be c.
func (iv *invocation) replace(dir, n, c *node) {
	for name, e := range dir.entries {
		switch {
		case e == n:
			dir.entries[name] = c
		case e.typ == fsvirt.Dir:
			iv.replace(e, n, c)
		}
	}
}

// mapping is how an op that only reads n is served.
func mapping(n *node) Mapping {
	if n.shared || n.typ == fsvirt.Dir && !n.touched && n.lower != nil {
		return PassThrough
	}
	return Redirect
}

func (m *Model) stat(n *node) fsvirt.Stat {
	s := fsvirt.Stat{Mode: n.mode, Nlink: n.nlink, Uid: n.uid, Gid: n.gid}
	switch n.typ {
	case fsvirt.Dir:
		s.Mode |= unix.S_IFDIR
		s.Nlink = 0
		if !n.dead {
			s.Nlink = 2
			for _, e := range n.entries {
				if e.typ == fsvirt.Dir {
					s.Nlink++
				}
			}
		}
	case fsvirt.File:
		s.Mode |= unix.S_IFREG
		s.Size = int64(len(n.data))
	case fsvirt.Symlink:
		s.Mode |= unix.S_IFLNK
		s.Size = int64(len(n.target))
	case fsvirt.Fifo:
		s.Mode |= unix.S_IFIFO
	}
	return s
}

var direntTypes = map[fsvirt.NodeType]uint8{
	fsvirt.Dir: unix.DT_DIR, fsvirt.File: unix.DT_REG, fsvirt.Symlink: unix.DT_LNK, fsvirt.Fifo: unix.DT_FIFO,
}

// list is getdents of directory d, sorted.
func list(d *node) []fsvirt.Dirent {
	ents := []fsvirt.Dirent{{Name: ".", Type: unix.DT_DIR}, {Name: "..", Type: unix.DT_DIR}}
	for name, n := range d.entries {
		ents = append(ents, fsvirt.Dirent{Name: name, Type: direntTypes[n.typ]})
	}
	slices.SortFunc(ents, func(a, b fsvirt.Dirent) int { return strings.Compare(a.Name, b.Name) })
	return ents
}

// pathOf is the path of directory d in the view, for getcwd.
func pathOf(d *node) string {
	p := ""
	for ; d.parent != nil; d = d.parent {
		for name, e := range d.parent.entries {
			if e == d {
				p = "/" + name + p
			}
		}
	}
	if p == "" {
		return "/"
	}
	return p
}

func splitPath(p string) (dir, name string) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i], p[i+1:]
		}
	}
	return "", p
}

// Paths lists the paths of inv's view, relative to its root and sorted;
// directories end in '/'. Test generators draw from it.
func (m *Model) Paths(inv fsvirt.Inv) []string {
	var paths []string
	var walk func(d *node, prefix string)
	walk = func(d *node, prefix string) {
		for name, n := range d.entries {
			p := prefix + name
			if n.typ == fsvirt.Dir {
				p += "/"
				walk(n, p)
			}
			paths = append(paths, p)
		}
	}
	walk(m.invs[inv].root, "")
	slices.Sort(paths)
	return paths
}
