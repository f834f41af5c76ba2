package impl

import (
	"fmt"
	"unsafe"

	"github.com/fsvirt/fsvirt/internal/notify"
	"golang.org/x/sys/unix"
)

// Landlock underneath the supervisor (docs/kernel.md, "Landlock underneath"): before a command's
// thread loads its filter, it restricts itself so that the kernel refuses it every change by path,
// anywhere: writing opens, truncation, making, removing, linking and renaming names. fsvirt never
// lets the kernel make such a change for a command (every one is the supervisor's, which carries no
// Landlock domain), so nothing is granted: a call the supervisor lets through by mistake fails with
// EACCES (also a link or rename across directories: Landlock answers EXDEV only where the names
// could be made and removed, which none can here; landlock_test.go) instead of reaching the shared
// tree or the store. Reads, execution and device ioctls are not handled: the kernel performs those
// for the command wherever the view leads to the host. Landlock checks an open file's rights when
// the file is opened, by the task that opens it: the descriptors the supervisor opens and injects
// keep every right.

// landlockWrites are the rights the restricted thread is denied, for Landlock ABI version abi:
// every right that changes the file system by path that this ABI knows.
func landlockWrites(abi int) uint64 {
	rights := uint64(unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM)
	if abi >= 2 { // ABI 1 refuses every link or rename across directories anyway
		rights |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 { // truncate(2) and O_TRUNC without write access; ftruncate by the opener's rights
		rights |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	return rights
}

// restrictThread restricts the calling OS thread, and every task it starts from now on, with
// landlockWrites(abi); abi 0 restricts nothing. It sets no_new_privs on the thread, which
// Landlock requires (the filter requires it too; docs/kernel.md, "Landlock underneath").
//
// Preconditions: the caller is locked to its OS thread, which has not loaded the filter yet (the
// filter would send the calls here to the supervisor).
func restrictThread(abi int) error {
	if abi <= 0 {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	attr := unix.LandlockRulesetAttr{Handled_access_fs: landlockWrites(abi)}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)),
		unsafe.Sizeof(attr.Handled_access_fs), 0) // the first field only: what every ABI accepts
	if errno != 0 {
		return fmt.Errorf("landlock_create_ruleset: %w", errno)
	}
	defer unix.Close(int(fd))
	// The raw syscall applies to the calling thread alone (no LANDLOCK_RESTRICT_SELF_TSYNC): the
	// supervisor's threads stay unrestricted (docs/kernel.md, "Landlock underneath").
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); errno != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", errno)
	}
	return nil
}

// landlockABI is the ABI version to restrict command threads with, by feature set f: 0 when the
// kernel has no Landlock or FSVIRT_DISABLE=landlock turned it off.
func landlockABI(f notify.FeatureSet) int {
	if f.Landlock {
		return f.LandlockABI
	}
	return 0
}
