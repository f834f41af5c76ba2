package impl

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// execMemfd is the command of TestProcessExecMemfd: it copies /bin/echo into a memfd, stats and
// checks it, and a pipe, through their /proc/self/fd/N links, and executes the memfd through its
// link, as fexecve does, printing what it found and what the program prints, or the error.
func execMemfd() int {
	fd, err := unix.MemfdCreate("prog", 0) // inherited by the child: no MFD_CLOEXEC
	var b []byte
	if err == nil {
		if b, err = os.ReadFile("/bin/echo"); err == nil {
			_, err = unix.Write(fd, b)
		}
	}
	if err != nil {
		fmt.Println("memfd:", err)
		return 1
	}
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		fmt.Println("pipe:", err)
		return 1
	}
	for _, f := range []int{fd, pipe[0]} {
		link := fmt.Sprintf("/proc/self/fd/%d", f)
		var st, fst unix.Stat_t
		err := unix.Stat(link, &st)
		if err == nil {
			err = unix.Fstat(f, &fst)
		}
		if err == nil && (st.Ino != fst.Ino || st.Mode != fst.Mode || st.Size != fst.Size) {
			err = fmt.Errorf("stat says %#o %d bytes, fstat %#o %d bytes", st.Mode, st.Size, fst.Mode, fst.Size)
		}
		if err == nil {
			err = unix.Access(link, unix.R_OK)
		}
		if err != nil {
			fmt.Println(link+":", err)
			return 1
		}
	}
	cmd := exec.Command(fmt.Sprintf("/proc/self/fd/%d", fd), "memfd exec ok")
	cmd.Stdout = os.Stdout
	if err := cmd.Run(); err != nil {
		fmt.Println("exec:", err)
		return 1
	}
	return 0
}

// TestProcessExecMemfd: a program in a memfd executed through its /proc/self/fd link (fexecve)
// runs, as natively; the view answered ELOOP (it took the magic link for a symlink).
func TestProcessExecMemfd(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, policy := range []Policy{PolicyFast, PolicyStrict} {
		shared := t.TempDir()
		out, res := runPolicyCmd(t, shared, policy, []string{"FSVIRT_TEST_MEMFD_EXEC=1"}, exe)
		if res.ExitStatus != 0 || out != "memfd exec ok\n" {
			t.Errorf("%v: exit %d, output %q", policy, res.ExitStatus, out)
		}
	}
}
