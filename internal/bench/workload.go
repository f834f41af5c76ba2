package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// A Workload is one function of the research's evaluation. Run performs it on the tree at root as
// invocation seq on worker slot: files it changes are the slot's own, so that concurrent invocations
// of the non-isolating mode do not trip over each other, and files it creates carry seq. Every file
// Run changes is left as it found it or is one of the slot's, which Restore puts back: without
// isolation the next invocation must find the same tree.
type Workload struct {
	Name string
	// Run performs the workload; it returns an error when what it read back is not what it wrote.
	Run func(root string, slot, seq int) error
	// Needs lists the files, relative to root, that Run reads or changes: what the chroot mode
	// copies into each new root.
	Needs func(slot, seq int) []string
	// Restore undoes what Run changed in a shared tree (the non-isolating mode only).
	Restore func(root string, slot, seq int) error
}

// Workload names, as the command line spells them.
const (
	Hello     = "hello"
	ReadOnly  = "readonly"
	ReadWrite = "readwrite"
	Fibonacci = "fibonacci"
	Hashing   = "hashing"
	Misc      = "misc"
)

// Workloads are the research's six, in its order.
var Workloads = []*Workload{
	// Hello World: a function that touches no file at all. Its time is the pure cost of starting
	// and ending an invocation in each mode.
	{Name: Hello, Run: runHello, Needs: needNothing, Restore: restoreNothing},
	// Read Only: five reads of unchanged files, the common case of a function that loads its
	// code, configuration and data. Under fsvirt's fast policy each open is one CONTINUE.
	{Name: ReadOnly, Run: runReadOnly, Needs: needReadOnly, Restore: restoreNothing},
	// Reads and Writes: thirteen file-system operations that change files and read the changed
	// ones back, so that copy-up always happens and later opens are redirected to the copy.
	{Name: ReadWrite, Run: runReadWrite, Needs: needReadWrite, Restore: restoreNothing},
	// Fibonacci: the first 50 Fibonacci numbers, a pure computation with no file access.
	{Name: Fibonacci, Run: runFibonacci, Needs: needNothing, Restore: restoreNothing},
	// File Hashing: read a 1 MiB file and replace its content with its SHA-256, a write-heavy
	// function whose one write copies the whole file up first.
	{Name: Hashing, Run: runHashing, Needs: needHashing, Restore: restoreHashing},
	// Misc, appended by init (it refers to the five above): each invocation picks one of them at
	// random, seeded by seq so that every mode sees the same sequence; a mixed production load.
}

func init() {
	Workloads = append(Workloads, &Workload{Name: Misc, Run: runMisc, Needs: needMisc, Restore: restoreMisc})
}

// WorkloadByName returns the named workload, or nil.
func WorkloadByName(name string) *Workload {
	for _, w := range Workloads {
		if w.Name == name {
			return w
		}
	}
	return nil
}

// Fixture sizes.
const (
	readOnlyFiles = 5
	readOnlySize  = 4 << 10
	hashSize      = 1 << 20
)

// configContent and logContent are what the read-write workload rewrites its files with: the same
// bytes they hold, so that a shared tree is unchanged afterwards.
var (
	configContent = []byte("# read-write workload configuration\nkey = value\n")
	logContent    = bytes.Repeat([]byte("log line of the read-write workload\n"), 32)
)

// BuildFixture creates the tree every workload runs on under root, with per-slot files for up to
// slots concurrent invocations.
func BuildFixture(root string, slots int) error {
	for _, d := range []string{"ro", "rw", "hash"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	for i := 0; i < readOnlyFiles; i++ {
		data := bytes.Repeat([]byte{byte('a' + i)}, readOnlySize)
		if err := os.WriteFile(filepath.Join(root, readOnlyPath(i)), data, 0o644); err != nil {
			return err
		}
	}
	for s := 0; s < slots; s++ {
		if err := os.WriteFile(filepath.Join(root, configPath(s)), configContent, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, logPath(s)), logContent, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, hashPath(s)), hashInput(s), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func readOnlyPath(i int) string  { return "ro/file" + strconv.Itoa(i) }
func configPath(slot int) string { return "rw/config-" + strconv.Itoa(slot) + ".txt" }
func logPath(slot int) string    { return "rw/log-" + strconv.Itoa(slot) + ".txt" }
func hashPath(slot int) string   { return "hash/input-" + strconv.Itoa(slot) + ".bin" }

// hashInput is the content of a slot's file-hashing input: 1 MiB of seeded pseudo-random bytes.
func hashInput(slot int) []byte {
	b := make([]byte, hashSize)
	r := rand.New(rand.NewPCG(uint64(slot), 0x6673766972740a))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func needNothing(int, int) []string         { return nil }
func restoreNothing(string, int, int) error { return nil }
func needReadOnly(int, int) []string {
	return []string{readOnlyPath(0), readOnlyPath(1), readOnlyPath(2), readOnlyPath(3), readOnlyPath(4)}
}
func needReadWrite(slot, _ int) []string { return []string{configPath(slot), logPath(slot)} }
func needHashing(slot, _ int) []string   { return []string{hashPath(slot)} }
func restoreHashing(root string, slot, _ int) error {
	return os.WriteFile(filepath.Join(root, hashPath(slot)), hashInput(slot), 0o644)
}

func runHello(string, int, int) error {
	_, err := fmt.Fprintln(io.Discard, "Hello, World!")
	return err
}

// fibSink keeps the compiler from dropping the Fibonacci loop.
var fibSink uint64

func runFibonacci(string, int, int) error {
	var fib [50]uint64
	fib[1] = 1
	for i := 2; i < len(fib); i++ {
		fib[i] = fib[i-1] + fib[i-2]
	}
	fibSink += fib[49]
	return nil
}

func runReadOnly(root string, _, _ int) error {
	for i := 0; i < readOnlyFiles; i++ {
		b, err := os.ReadFile(filepath.Join(root, readOnlyPath(i)))
		if err != nil {
			return err
		}
		if len(b) != readOnlySize {
			return fmt.Errorf("%s: read %d bytes, want %d", readOnlyPath(i), len(b), readOnlySize)
		}
	}
	return nil
}

// runReadWrite performs thirteen operations, numbered below. It leaves the tree as it found it.
func runReadWrite(root string, slot, seq int) error {
	config := filepath.Join(root, configPath(slot))
	logf := filepath.Join(root, logPath(slot))
	newf := filepath.Join(root, "rw", "new-"+strconv.Itoa(seq)+".txt")
	dir := filepath.Join(root, "rw", "dir-"+strconv.Itoa(seq))
	moved := filepath.Join(dir, "new.txt")
	same := func(name string, got, want []byte) error {
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s: read back %d bytes that differ from the %d written", name, len(got), len(want))
		}
		return nil
	}
	// 1. Read the configuration.
	if _, err := os.ReadFile(config); err != nil {
		return err
	}
	// 2. Rewrite it (O_TRUNC): a copy-up without data.
	if err := os.WriteFile(config, configContent, 0o644); err != nil {
		return err
	}
	// 3. Read the modified file back: an open redirected to the copy.
	b, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	if err := same(config, b, configContent); err != nil {
		return err
	}
	// 4. Overwrite the head of the log in place: a copy-up with data.
	f, err := os.OpenFile(logf, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(logContent[:64], 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// 5. Read it back.
	if b, err = os.ReadFile(logf); err != nil {
		return err
	}
	if err := same(logf, b, logContent); err != nil {
		return err
	}
	// 6. Create a new file.
	if err := os.WriteFile(newf, []byte("new file\n"), 0o644); err != nil {
		return err
	}
	// 7. Read it back.
	if b, err = os.ReadFile(newf); err != nil {
		return err
	}
	if err := same(newf, b, []byte("new file\n")); err != nil {
		return err
	}
	// 8. Make a directory.
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	// 9. Move the new file into it.
	if err := os.Rename(newf, moved); err != nil {
		return err
	}
	// 10. Stat it there.
	st, err := os.Stat(moved)
	if err != nil {
		return err
	}
	if st.Size() != int64(len("new file\n")) {
		return fmt.Errorf("%s: size %d after rename", moved, st.Size())
	}
	// 11. Change the configuration's mode (to the one it has).
	if err := os.Chmod(config, 0o644); err != nil {
		return err
	}
	// 12. Remove the moved file.
	if err := os.Remove(moved); err != nil {
		return err
	}
	// 13. Remove the directory.
	return os.Remove(dir)
}

func runHashing(root string, slot, _ int) error {
	p := filepath.Join(root, hashPath(slot))
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if len(b) != hashSize {
		return fmt.Errorf("%s: read %d bytes, want the %d-byte input", p, len(b), hashSize)
	}
	sum := sha256.Sum256(b)
	digest := []byte(hex.EncodeToString(sum[:]) + "\n")
	if err := os.WriteFile(p, digest, 0o644); err != nil {
		return err
	}
	if b, err = os.ReadFile(p); err != nil {
		return err
	}
	if !bytes.Equal(b, digest) {
		return fmt.Errorf("%s: read back %q, want the digest", p, b)
	}
	return nil
}

// miscPick is the workload invocation seq of Misc runs: the same for every mode.
func miscPick(seq int) *Workload {
	r := rand.New(rand.NewPCG(uint64(seq), 0x6d697363))
	return Workloads[r.IntN(5)]
}

func runMisc(root string, slot, seq int) error { return miscPick(seq).Run(root, slot, seq) }
func needMisc(slot, seq int) []string          { return miscPick(seq).Needs(slot, seq) }
func restoreMisc(root string, slot, seq int) error {
	return miscPick(seq).Restore(root, slot, seq)
}
