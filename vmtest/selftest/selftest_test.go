package selftest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// TestMain lets the harness's own test check exit statuses and the stdout/stderr split:
// FSVIRT_SELFTEST_EXIT=N makes the binary print one line to each and exit with N.
func TestMain(m *testing.M) {
	if s := os.Getenv("FSVIRT_SELFTEST_EXIT"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "FSVIRT_SELFTEST_EXIT:", err)
			os.Exit(2)
		}
		fmt.Println("selftest: stdout")
		fmt.Fprintln(os.Stderr, "selftest: stderr")
		os.Exit(n)
	}
	fmt.Println("fsvirt-probe: selftest=on")
	os.Exit(m.Run())
}

func TestKernelRelease(t *testing.T) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	want := os.Getenv("FSVIRT_VM_RELEASE")
	if want == "" {
		t.Skipf("not in a VM (FSVIRT_VM_RELEASE unset); running on %s", release)
	}
	if release != want {
		t.Fatalf("uname -r = %q, the harness booted %q", release, want)
	}
}

func TestCgo(t *testing.T) {
	if got, want := Getpid(), os.Getpid(); got != want {
		t.Fatalf("getpid through cgo = %d, want %d", got, want)
	}
	major, minor, micro := seccomp.GetLibraryVersion()
	t.Logf("libseccomp %d.%d.%d, API level %d", major, minor, micro, mustAPI(t))
}

func mustAPI(t *testing.T) uint {
	t.Helper()
	api, err := seccomp.GetAPI()
	if err != nil {
		t.Fatalf("libseccomp API level: %v", err)
	}
	return api
}

// TestUserNotifAvailable asks the kernel, with seccomp(SECCOMP_GET_ACTION_AVAIL), whether it
// has SECCOMP_RET_USER_NOTIF (Linux 5.0): every kernel of the matrix does.
func TestUserNotifAvailable(t *testing.T) {
	action := uint32(unix.SECCOMP_RET_USER_NOTIF)
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&action)))
	fmt.Printf("fsvirt-probe: selftest-user-notif=%s\n", onOff(errno == 0))
	if errno != 0 {
		t.Fatalf("seccomp(SECCOMP_GET_ACTION_AVAIL, SECCOMP_RET_USER_NOTIF): %v", errno)
	}
}

// TestFilter loads a filter built by libseccomp on a thread made for it, which dies with the
// locked goroutine, and checks that the kernel applies it.
func TestFilter(t *testing.T) {
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread and its filter exit with the goroutine
		errc <- filterGetppid()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func filterGetppid() error {
	f, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return fmt.Errorf("new filter: %w", err)
	}
	defer f.Release()
	if err := f.AddRule(seccomp.ScmpSyscall(unix.SYS_GETPPID), seccomp.ActErrno.SetReturnCode(int16(unix.EPERM))); err != nil {
		return fmt.Errorf("add rule: %w", err)
	}
	if err := f.Load(); err != nil {
		return fmt.Errorf("load filter: %w", err)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0); errno != unix.EPERM {
		return fmt.Errorf("getppid under the filter: errno %v, want EPERM", errno)
	}
	return nil
}

// TestOverlay mounts overlayfs, which the oracle's tests need as root.
func TestOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(dir+"/"+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", dir, dir, dir)
	err := unix.Mount("overlay", dir+"/merged", "overlay", 0, opts)
	fmt.Printf("fsvirt-probe: selftest-overlay=%s\n", onOff(err == nil))
	if err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	if err := unix.Unmount(dir+"/merged", 0); err != nil {
		t.Fatalf("unmount overlay: %v", err)
	}
}

// TestTestdata reads a file of the package's testdata/ relative to the working directory.
func TestTestdata(t *testing.T) {
	data, err := os.ReadFile("testdata/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "hello from testdata\n" {
		t.Fatalf("testdata/hello.txt = %q", data)
	}
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// TestBesidePackage reads a file of the module outside the package directory, as tests that
// check the README do: the harness copies the whole module.
func TestBesidePackage(t *testing.T) {
	if _, err := os.Stat("../doc.go"); err != nil {
		t.Fatal(err)
	}
}

// TestHostTools runs cp, which is the host's GNU cp when the harness was given it
// (FSVIRT_SELFTEST_GNU_CP=1), not busybox's.
func TestHostTools(t *testing.T) {
	if os.Getenv("FSVIRT_SELFTEST_GNU_CP") == "" {
		t.Skip("the harness did not hand over the host's cp")
	}
	out, err := exec.Command("cp", "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "GNU coreutils") {
		t.Fatalf("cp --version = %q, %v; want GNU coreutils", out, err)
	}
}

// TestDevFd reopens stdin through /dev/fd, which udev makes on Debian and init in the VM.
func TestDevFd(t *testing.T) {
	f, err := os.Open("/dev/fd/0")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if target, err := os.Readlink("/dev/stdin"); err != nil || !strings.HasPrefix(target, "/proc/self/fd") {
		t.Fatalf("/dev/stdin -> %q, %v", target, err)
	}
}
