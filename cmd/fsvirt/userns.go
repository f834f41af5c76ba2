package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fsvirt/fsvirt/impl"
)

// Limits (--max-bytes, --max-files) make each private layer a tmpfs of its own, and mounting one
// needs CAP_SYS_ADMIN. A user without it gets the same limits from an fsvirt run again in a user
// namespace of its own, which maps the user's uid and gid to themselves, with a mount namespace
// of its own, where it holds CAP_SYS_ADMIN (as an ambient capability, so that it survives the
// exec) over the mounts it makes: the layers' tmpfs are mounted there, seen by nothing outside.
// Mount events do not propagate out of it (the kernel makes the mounts it copies from the host's
// namespace slaves of them, mount_namespaces(7)). What changes for the command: files of other
// users (and groups) show the overflow IDs (65534, nobody and nogroup) in stat, as in any user
// namespace that does not map them; access to them is decided by their real owners as before.
// fsvirt-init clears the ambient set, so the command holds no capability, and the filter denies
// the mount family anyway.

// usernsEnv marks an fsvirt that reexecInUserNamespace started: it does not start another.
const usernsEnv = "FSVIRT_IN_USERNS"

// wantsUserNamespace reports whether limits must be enforced from a user namespace of fsvirt's
// own: they are set, fsvirt is not root, and it is not in one already.
func wantsUserNamespace(l impl.Limits) bool {
	return (l.Bytes > 0 || l.Files > 0) && os.Geteuid() != 0 && os.Getenv(usernsEnv) == ""
}

// reexecInUserNamespace runs this program again with args (os.Args[1:]) in a user and mount
// namespace of its own (see above), with this process's descriptors 0 to maxFD, relays SIGINT,
// SIGTERM, SIGHUP and SIGQUIT to it, and returns its exit status as an exitError (nil for 0).
func reexecInUserNamespace(args []string, maxFD int) error {
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	for fd := 3; fd <= maxFD; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("fd %d", fd)))
		} else {
			files = append(files, nil)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	if len(files) > 3 {
		cmd.ExtraFiles = files[3:]
	}
	cmd.Env = append(os.Environ(), usernsEnv+"=1")
	uid, gid := os.Geteuid(), os.Getegid()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
		GidMappingsEnableSetgroups: false,
		AmbientCaps:                []uintptr{unix.CAP_SYS_ADMIN},
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("limits without root need a user namespace of fsvirt's own, to mount the "+
			"layers' tmpfs in (user namespaces may be disabled here: user.max_user_namespaces, "+
			"kernel.apparmor_restrict_unprivileged_userns); run as root instead: %w", err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return exitError{128 + int(ws.Signal())}
		}
		return exitError{ee.ExitCode()}
	}
	return err
}
