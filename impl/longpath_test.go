package impl

import (
	"os/exec"
	"testing"

	"github.com/fsvirt/fsvirt/internal/treetest"
)

// longPathScript works, by path, on files whose full paths are longer than PATH_MAX (4,096 bytes),
// as the kernel allows: each path it passes is relative, from its working directory, and shorter.
// The supervisor's own paths to them, on the host and in the private layer, are longer still.
const longPathScript = `c=$(printf '%0200d' 0)
p=$c; i=1; while [ $i -lt 20 ]; do p=$p/$c; i=$((i + 1)); done
echo ${#p}
mkdir -p $p/d && echo made
echo data > $p/f && cat $p/f
chmod 600 $p/f && stat -c %a $p/f
mv $p/f $p/g && ln $p/g $p/h && ln -s g $p/s && cat $p/s && stat -c %h $p/g
mkfifo $p/fifo && stat -c %F $p/fifo
ls $p
touch -d 2001-01-01 $p/g && stat -c %y $p/g | cut -c1-10
rm $p/g $p/h $p/s $p/fifo && rmdir $p/d && ls $p && echo removed
`

// TestProcessLongPaths: calls on files whose full paths are longer than PATH_MAX, by relative
// paths that are not, give what they give on a copy (pjdfstest's .../03.t cases).
func TestProcessLongPaths(t *testing.T) {
	copyDir := t.TempDir()
	want, err := exec.Command("/bin/sh", "-c", "cd "+copyDir+" && "+longPathScript).CombinedOutput()
	if err != nil {
		t.Fatalf("on a copy: %v: %s", err, want)
	}
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		t.Run(policy.String(), func(t *testing.T) {
			shared := t.TempDir()
			treetest.Build(t, shared, "file f shared\n")
			before := treetest.Snap(t, shared)
			out, res := runPolicyCmd(t, shared, policy, nil, "/bin/sh", "-c", "cd "+shared+" && "+longPathScript+" 2>&1")
			if out != string(want) || res.ExitStatus != 0 {
				t.Errorf("stdout %q, status %d; on a copy %q", out, res.ExitStatus, want)
			}
			if d := before.Diff(treetest.Snap(t, shared), treetest.Exact); d != nil {
				t.Errorf("the shared tree changed: %q", d)
			}
		})
	}
}
