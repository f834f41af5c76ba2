package impl

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestIoctlFilter checks the filter's decisions on ioctl commands: file-system commands that can
// change a file notify, their read-only siblings pass, and every other command passes untouched.
func TestIoctlFilter(t *testing.T) {
	vm := filterVM(t)
	for _, c := range []struct {
		name string
		cmd  uint32
		want uint32
	}{
		{"FS_IOC_SETFLAGS-notifies", fsIocSetflags, unix.SECCOMP_RET_USER_NOTIF},
		{"FS_IOC32_SETFLAGS-notifies", fsIoc32Setflags, unix.SECCOMP_RET_USER_NOTIF},
		{"FS_IOC_FSSETXATTR-notifies", fsIocFssetxattr, unix.SECCOMP_RET_USER_NOTIF},
		{"FS_IOC_SETVERSION-notifies", 0x40087602, unix.SECCOMP_RET_USER_NOTIF},
		{"FS_IOC_ENABLE_VERITY-notifies", 0x40806685, unix.SECCOMP_RET_USER_NOTIF},
		{"FIFREEZE-notifies", 0xc0045877, unix.SECCOMP_RET_USER_NOTIF},
		{"FITRIM-notifies", 0xc0185879, unix.SECCOMP_RET_USER_NOTIF},
		{"FIDEDUPERANGE-notifies", 0xc0189436, unix.SECCOMP_RET_USER_NOTIF},
		{"FAT_IOCTL_SET_ATTRIBUTES-notifies", 0x40047211, unix.SECCOMP_RET_USER_NOTIF},
		{"FS_IOC_GETFLAGS-passes", 0x80086601, unix.SECCOMP_RET_ALLOW},
		{"FS_IOC_FSGETXATTR-passes", 0x801c581f, unix.SECCOMP_RET_ALLOW},
		{"FICLONE-passes", 0x40049409, unix.SECCOMP_RET_ALLOW},
		{"TCGETS-passes", unix.TCGETS, unix.SECCOMP_RET_ALLOW},
		{"TIOCGWINSZ-passes", unix.TIOCGWINSZ, unix.SECCOMP_RET_ALLOW},
		{"FIONREAD-passes", 0x541b, unix.SECCOMP_RET_ALLOW},
		{"FIOCLEX-passes", 0x5451, unix.SECCOMP_RET_ALLOW},
		{"SIOCGIFFLAGS-passes", unix.SIOCGIFFLAGS, unix.SECCOMP_RET_ALLOW},
		{"BLKGETSIZE64-passes", unix.BLKGETSIZE64, unix.SECCOMP_RET_ALLOW},
	} {
		if got := runFilterArg(t, vm, unix.SYS_IOCTL, auditArchX8664, c.cmd); got != c.want {
			t.Errorf("%s (%#x): filter returns %#x, want %#x", c.name, c.cmd, got, c.want)
		}
	}
	// The prefix decides ioctl alone: other syscalls with the same argument go on to the table.
	if got := runFilterArg(t, vm, unix.SYS_READ, auditArchX8664, fsIocSetflags); got != unix.SECCOMP_RET_ALLOW {
		t.Errorf("read with an ioctl-like argument: filter returns %#x, want ALLOW", got)
	}
	if got := runFilterArg(t, vm, unix.SYS_IOCTL, auditArchI386, fsIocSetflags); got != retErrno(errnoBadArch) {
		t.Errorf("i386 ioctl: filter returns %#x, want ENOSYS", got)
	}
}
