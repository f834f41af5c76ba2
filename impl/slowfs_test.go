package impl

import (
	"strings"
	"testing"
)

// TestReadMountinfo: mount points are unescaped, and the type is the field after "-", however many
// optional fields come before it; slowType knows FUSE's subtypes.
func TestReadMountinfo(t *testing.T) {
	const table = `22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw
41 22 0:40 / /tmp/a\040b rw,relatime shared:20 master:3 - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0
42 22 0:41 / /net rw - nfs4 server:/x rw
short line
`
	var got []string
	if err := readMountinfo(strings.NewReader(table), func(point, fstype string) {
		got = append(got, point+"="+fstype)
	}); err != nil {
		t.Fatal(err)
	}
	if want := "/proc=proc /tmp/a b=fuse.fuse-overlayfs /net=nfs4"; strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}
	for fstype, slow := range map[string]bool{"proc": false, "fuse.fuse-overlayfs": true, "fuse": true, "fuseblk": true, "nfs4": true, "ext4": false, "fusectl": false} {
		if slowType(fstype) != slow {
			t.Errorf("slowType(%q) = %v", fstype, !slow)
		}
	}
}
