//go:build fsvirt_libseccomp

package impl

import (
	"bytes"
	"testing"
)

// TestFilterUpToDate: the program in zfilter.go is exactly what libseccomp compiles from the table.
func TestFilterUpToDate(t *testing.T) {
	raw, err := CompileFilterBPF()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, filterBPF) {
		t.Fatalf("zfilter.go (%d instructions) is not what libseccomp compiles from the table (%d): run go generate ./impl",
			len(filterBPF)/8, len(raw)/8)
	}
}
