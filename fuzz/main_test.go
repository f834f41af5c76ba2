package fuzz

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// exportEnv names the variable that makes TestMain print the inputs a run
// added to the corpus; scripts/fuzz.sh --kernel sets it in the VM.
const exportEnv = "FSVIRT_FUZZ_EXPORT"

// exportPrefix starts each line that carries one such input.
const exportPrefix = "fsvirt-fuzz-input: "

// corpusDir is where the fuzzing engine writes a failing input.
const corpusDir = "testdata/fuzz"

// TestMain runs the tests. With FSVIRT_FUZZ_EXPORT=1 it then prints every
// file that the run added under testdata/fuzz (the failing inputs that go
// test -fuzz wrote) as a line "fsvirt-fuzz-input: TARGET/NAME BASE64": a VM
// of the kernel matrix shares no file system with the host, only its
// output (docs/vmtest.md, "Inside the VM"), and scripts/fuzz.sh writes the
// inputs back from it. The fuzzing engine's workers, which run this binary
// too, print nothing: they write no input.
//
// TestMain also runs the programs of FuzzRacingThread and FuzzProcessTree
// when this binary is their command (raceEnv, procEnv).
func TestMain(m *testing.M) {
	if h, ok := os.LookupEnv(raceEnv); ok { // an empty input is an empty string
		os.Exit(runRacer(h, os.Getenv(raceBaseEnv)))
	}
	if h, ok := os.LookupEnv(procEnv); ok {
		os.Exit(runProc(h))
	}
	if os.Getenv(exportEnv) == "" || slices.ContainsFunc(os.Args, func(a string) bool {
		return strings.HasPrefix(a, "-test.fuzzworker")
	}) {
		os.Exit(m.Run())
	}
	before, err := corpusFiles()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuzz: listing the corpus:", err)
		os.Exit(2)
	}
	code := m.Run()
	after, err := corpusFiles()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuzz: listing the corpus:", err)
		os.Exit(2)
	}
	for _, name := range after {
		if slices.Contains(before, name) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(corpusDir, name))
		if err != nil {
			fmt.Fprintln(os.Stderr, "fuzz: exporting an input:", err)
			code = 2
			continue
		}
		fmt.Printf("%s%s %s\n", exportPrefix, name, base64.StdEncoding.EncodeToString(data))
	}
	os.Exit(code)
}

// corpusFiles lists the files under testdata/fuzz as TARGET/NAME, sorted.
func corpusFiles() ([]string, error) {
	var names []string
	err := filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(corpusDir, path)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	return names, err
}
