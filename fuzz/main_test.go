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

	"golang.org/x/sys/unix"
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
	worker := slices.ContainsFunc(os.Args, func(a string) bool { return strings.HasPrefix(a, "-test.fuzzworker") })
	workerLog := os.Getenv(workerLogEnv)
	if worker && workerLog != "" {
		// The coordinator gives its workers no output: keep their stderr, where a panic or a
		// fatal error goes, for the coordinator to show when a worker dies.
		if f, err := os.OpenFile(workerLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
			unix.Dup2(int(f.Fd()), 2)
			f.Close()
		}
	}
	if os.Getenv(exportEnv) == "" || worker {
		code := m.Run()
		if !worker && code != 0 {
			showWorkerLog(workerLog)
		}
		os.Exit(code)
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
		// On stderr, as the workers' log below: two streams merged on the way out of a VM can
		// interleave in the middle of a line.
		fmt.Fprintf(os.Stderr, "%s%s %s\n", exportPrefix, name, base64.StdEncoding.EncodeToString(data))
	}
	if code != 0 {
		showWorkerLog(workerLog)
	}
	os.Exit(code)
}

// workerLogEnv names a file where the fuzzing engine's workers write their
// stderr (scripts/fuzz.sh sets it); a failed run prints its end.
const workerLogEnv = "FSVIRT_FUZZ_WORKER_LOG"

// showWorkerLog prints the end of the workers' stderr, if any.
func showWorkerLog(name string) {
	if name == "" {
		return
	}
	data, err := os.ReadFile(name)
	if err != nil || len(data) == 0 {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	fmt.Fprintf(os.Stderr, "fuzz: the fuzzing workers' stderr (%s), last 1000 lines:\n%s\n", name,
		strings.Join(lines[max(0, len(lines)-1000):], "\n"))
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
