package impl

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestReadProcFile: readProcFile reads a file whole, past its first buffer too, and says why not.
func TestReadProcFile(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16,000 bytes: four buffers' worth
	for _, want := range [][]byte{nil, []byte("short\n"), big} {
		f := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(f, want, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readProcFile(f)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("read %d bytes (%v), want %d", len(got), err, len(want))
		}
	}
	if _, err := readProcFile("/proc/0/status"); err == nil {
		t.Error("no error for a missing file")
	}
	c, err := tracee{tid: os.Getpid()}.status()
	if err != nil || c.tgid != os.Getpid() || c.fsuid != os.Geteuid() {
		t.Errorf("own status: %+v, %v", c, err)
	}
}
