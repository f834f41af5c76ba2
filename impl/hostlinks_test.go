package impl

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// hostLinksScript changes a shared file with three names on the host (f1, hl, sub/hl2) through
// each of them in turn, with a descriptor opened on one of them before, and prints what every
// name shows: content, link count, inode sameness.
const hostLinksScript = `cd "$1"
exec 3< hl
echo b >> f1; cat <&3; cat hl; stat -c '%h %n' f1 hl sub/hl2; cat sub/hl2
echo c >> sub/hl2; cat f1 | tr '\n' ' '; echo; stat -c '%h %n' f1 hl sub/hl2
ln f1 mine; stat -c '%h' f1
rm f1; cat hl | tr '\n' ' '; echo; stat -c '%h %n' hl sub/hl2 mine
mv hl h3; echo d >> h3; cat sub/hl2 | tr '\n' ' '; echo
[ "$(stat -c %i h3)" = "$(stat -c %i sub/hl2)" ] && echo same-inode
mkdir d2; mv sub d2/; truncate -s 2 d2/sub/hl2; cat mine; wc -c < h3
`

// TestProcessHostHardLinks: a shared file with several names on the host, written through one,
// shows the change through all of them, as natively, also through a descriptor opened on another
// name before; link counts and inode numbers agree too, as root and as nobody, both policies
// (hostlinks.go). The shared tree does not change.
func TestProcessHostHardLinks(t *testing.T) {
	shLikeKernel(t, "fsvirt-hostlinks-", hostLinksScript, func(dir string) {
		treetest.Build(t, dir, "file f1 a\n", "dir sub")
		for _, n := range []string{"hl", "sub/hl2"} {
			if err := os.Link(filepath.Join(dir, "f1"), filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(filepath.Join(dir, "f1"), 0o666); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{".", "sub"} {
			if err := os.Chmod(filepath.Join(dir, d), 0o777); err != nil {
				t.Fatal(err)
			}
		}
	})
}
