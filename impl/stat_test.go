package impl

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// ident is what stat, statx and a stat of a descriptor (newfstatat with AT_EMPTY_PATH, glibc's
// fstat; statx) say of a file's or directory's identity: four fields "major:minor/inode".
func ident(path string) string {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return "stat: " + errStr(err)
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_INO, &stx); err != nil {
		return "statx: " + errStr(err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "open: " + errStr(err)
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if err := unix.Fstatat(fd, "", &fst, unix.AT_EMPTY_PATH); err != nil {
		return "fstatat: " + errStr(err)
	}
	var fstx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_INO, &fstx); err != nil {
		return "fstatx: " + errStr(err)
	}
	return fmt.Sprintf("%d:%d/%d %d:%d/%d %d:%d/%d %d:%d/%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino,
		stx.Dev_major, stx.Dev_minor, stx.Ino, unix.Major(fst.Dev), unix.Minor(fst.Dev), fst.Ino,
		fstx.Dev_major, fstx.Dev_minor, fstx.Ino)
}

// TestDirectoryKeepsIdentity: a shared directory keeps its device and inode number when the view
// copies it (a file made in it, its mode changed, the directory renamed), by name and by
// descriptor alike, as the kernel's directory keeps its own; a directory the view makes has one
// of its own.
func TestDirectoryKeepsIdentity(t *testing.T) {
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(pol.String(), func(t *testing.T) {
			shared := t.TempDir()
			treetest.Build(t, shared, "dir d", "dir d/sub", "file d/sub/f x", "dir e")
			p, err := NewPool(Config{Workers: 1, Trees: []string{shared}, Store: t.TempDir(), Policy: pol})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var log []string
			err = p.Invoke(context.Background(), func(*Invocation) error {
				d, sub := ident(shared+"/d"), ident(shared+"/d/sub")
				log = append(log, "d "+d, "sub "+sub)
				if err := os.WriteFile(shared+"/d/new", nil, 0o644); err != nil {
					return err
				}
				if err := os.WriteFile(shared+"/d/sub/f", []byte("changed"), 0o644); err != nil {
					return err
				}
				if err := os.Chmod(shared+"/e", 0o700); err != nil {
					return err
				}
				log = append(log, "d after a create "+ident(shared+"/d"), "sub after a write "+ident(shared+"/d/sub"))
				if err := os.Rename(shared+"/d", shared+"/r"); err != nil {
					return err
				}
				log = append(log, "d renamed "+ident(shared+"/r"), "sub renamed "+ident(shared+"/r/sub"))
				if err := os.Mkdir(shared+"/m", 0o755); err != nil {
					return err
				}
				log = append(log, "made "+ident(shared+"/m"), "e "+ident(shared+"/e"))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			d, sub, e := ident(shared+"/d"), ident(shared+"/d/sub"), ident(shared+"/e")
			want := []string{"d " + d, "sub " + sub, "d after a create " + d, "sub after a write " + sub,
				"d renamed " + d, "sub renamed " + sub}
			if got := log[:len(want)]; strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("identities in the view:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			made := log[len(want)]
			if f := strings.Fields(made); len(f) != 5 || f[1] != f[2] || f[1] != f[3] || f[1] != f[4] ||
				f[1] == strings.Fields(d)[0] || f[1] == strings.Fields(e)[0] {
				t.Errorf("a directory the view made: %s (d %s, e %s)", made, d, e)
			}
			if log[len(want)+1] != "e "+e {
				t.Errorf("%s, want e %s", log[len(want)+1], e)
			}
		})
	}
}

// TestFileKeepsIdentity: a shared file keeps its device and inode number when the view copies it
// up (written, truncated by O_TRUNC, its mode changed) and renames it, by name and by
// descriptor alike, also through the descriptor the write was made on, as the kernel's file
// keeps its own; a file the view makes has one of its own.
func TestFileKeepsIdentity(t *testing.T) {
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(pol.String(), func(t *testing.T) {
			shared := t.TempDir()
			treetest.Build(t, shared, "file f x", "file g x", "file h x")
			f, g, h := ident(shared+"/f"), ident(shared+"/g"), ident(shared+"/h")
			p, err := NewPool(Config{Workers: 1, Trees: []string{shared}, Store: t.TempDir(), Policy: pol})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var got []string
			err = p.Invoke(context.Background(), func(*Invocation) error {
				fd, err := unix.Open(shared+"/f", unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				unix.Write(fd, []byte("y"))
				var fst unix.Stat_t
				if err := unix.Fstatat(fd, "", &fst, unix.AT_EMPTY_PATH); err != nil {
					return err
				}
				got = append(got, "f written "+ident(shared+"/f"),
					fmt.Sprintf("f's descriptor %d:%d/%d", unix.Major(fst.Dev), unix.Minor(fst.Dev), fst.Ino))
				if err := os.Rename(shared+"/f", shared+"/f2"); err != nil {
					return err
				}
				got = append(got, "f renamed "+ident(shared+"/f2"))
				if err := os.WriteFile(shared+"/g", []byte("new"), 0o644); err != nil { // O_TRUNC
					return err
				}
				if err := os.Chmod(shared+"/h", 0o600); err != nil {
					return err
				}
				got = append(got, "g truncated "+ident(shared+"/g"), "h chmod "+ident(shared+"/h"))
				if err := os.WriteFile(shared+"/n", nil, 0o644); err != nil {
					return err
				}
				got = append(got, "made "+ident(shared+"/n"))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"f written " + f, "f's descriptor " + strings.Fields(f)[0], "f renamed " + f,
				"g truncated " + g, "h chmod " + h}
			if strings.Join(got[:len(want)], "\n") != strings.Join(want, "\n") {
				t.Errorf("identities in the view:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			made := strings.Fields(got[len(want)])
			if len(made) != 5 || made[1] != made[2] || made[1] != made[3] || made[1] != made[4] ||
				made[1] == strings.Fields(f)[0] || made[1] == strings.Fields(g)[0] {
				t.Errorf("a file the view made: %s", got[len(want)])
			}
		})
	}
}

// TestProcessVimWritesInPlace: vim writing a shared file in place (backupcopy=yes, which it
// chooses where a rename could not keep the file's owner, mode or links) checks that the file it
// opened for writing is the one it read, by inode; in the view it refused ("rc 1", file unchanged)
// until a copy kept the shared file's identity.
func TestProcessVimWritesInPlace(t *testing.T) {
	vim := "vim.tiny" // scripts/test.sh installs vim-tiny
	if !hasProgram(vim) {
		if vim = "vim"; !hasProgram(vim) {
			t.Skip("no vim.tiny nor vim (scripts/test.sh installs vim-tiny)")
		}
	}
	shared := t.TempDir()
	treetest.Build(t, shared, "file f x\n")
	before := treetest.Snap(t, shared)
	script := "cd " + shared + ` && ` + vim + ` -Nu NONE -es -c "set backupcopy=yes" -c "s/x/y/" -c wq f; echo "rc $?"; cat f`
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		out, res := runPolicyCmd(t, shared, pol, nil, "/bin/sh", "-c", script)
		if want := "rc 0\ny\n"; res.ExitStatus != 0 || out != want {
			t.Errorf("%v: exit %d, stdout %q, want %q", pol, res.ExitStatus, out, want)
		}
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}

// TestProcessDirectoryIdentityPrograms: programs that check a directory's identity while they
// change it work in the view as they do natively. tar x of an archive that holds "./" checks,
// before it sets the times of the directory it extracted into, that it is still the directory it
// found (and failed with "Directory renamed before its status could be extracted"); fts (du,
// chmod -R, rm -r) compares a directory's stat by name with the stat of the descriptor it opens
// on its way back up a deep tree (and failed with "fts_read failed").
func TestProcessDirectoryIdentityPrograms(t *testing.T) {
	for _, prog := range []string{"tar", "du", "chmod", "rm"} {
		if !hasProgram(prog) {
			t.Skip(prog + " not installed")
		}
	}
	shared := t.TempDir()
	spec := []string{"dir src", "file src/a a", "dir src/sub", "file src/sub/b b", "dir dst", "file dst/old old", "dir deep"}
	deep := "deep"
	for i := range 12 {
		deep += fmt.Sprintf("/d%d", i)
		spec = append(spec, "dir "+deep, "file "+deep+"/f x")
	}
	treetest.Build(t, shared, spec...)
	before := treetest.Snap(t, shared)
	script := `set -e
cd ` + shared + `
tar cf src.tar -C src .
tar xf src.tar -C dst
ls dst
find deep -type d -exec touch {}/new \;
du -s deep > /dev/null
chmod -R go-w deep
rm -r deep
ls
`
	for _, pol := range []Policy{PolicyFast, PolicyStrict} {
		out, res := runPolicyCmd(t, shared, pol, nil, "/bin/sh", "-c", script)
		if want := "a\nold\nsub\ndst\nsrc\nsrc.tar\n"; res.ExitStatus != 0 || out != want {
			t.Errorf("%v: exit %d, stdout %q, want %q", pol, res.ExitStatus, out, want)
		}
	}
	if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
		t.Errorf("the shared tree changed: %q", d)
	}
}
