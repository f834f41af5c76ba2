package driver

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// constants are the symbolic names a case may use in flags, mode and whence,
// spelled as in C.
var constants = map[string]int{
	"O_RDONLY": unix.O_RDONLY, "O_WRONLY": unix.O_WRONLY, "O_RDWR": unix.O_RDWR,
	"O_CREAT": unix.O_CREAT, "O_EXCL": unix.O_EXCL, "O_TRUNC": unix.O_TRUNC, "O_APPEND": unix.O_APPEND,
	"O_TMPFILE": unix.O_TMPFILE, "O_DIRECTORY": unix.O_DIRECTORY, "O_NOFOLLOW": unix.O_NOFOLLOW,
	"O_PATH": unix.O_PATH, "O_CLOEXEC": unix.O_CLOEXEC, "O_NONBLOCK": unix.O_NONBLOCK,
	"O_SYNC": unix.O_SYNC, "O_DSYNC": unix.O_DSYNC, "O_NOCTTY": unix.O_NOCTTY,

	"AT_SYMLINK_NOFOLLOW": unix.AT_SYMLINK_NOFOLLOW, "AT_SYMLINK_FOLLOW": unix.AT_SYMLINK_FOLLOW,
	"AT_EMPTY_PATH": unix.AT_EMPTY_PATH, "AT_REMOVEDIR": unix.AT_REMOVEDIR,
	"RENAME_NOREPLACE": unix.RENAME_NOREPLACE, "RENAME_EXCHANGE": unix.RENAME_EXCHANGE,
	"XATTR_CREATE": unix.XATTR_CREATE, "XATTR_REPLACE": unix.XATTR_REPLACE,

	"F_OK": unix.F_OK, "R_OK": unix.R_OK, "W_OK": unix.W_OK, "X_OK": unix.X_OK,
	"S_IFREG": unix.S_IFREG, "S_IFIFO": unix.S_IFIFO,
	"SEEK_SET": unix.SEEK_SET, "SEEK_CUR": unix.SEEK_CUR, "SEEK_END": unix.SEEK_END,
}

// parseBits reads "NAME|NAME|0644": names from constants and numbers, ORed.
func parseBits(s string) (int, error) {
	v := 0
	for _, tok := range strings.Split(s, "|") {
		tok = strings.TrimSpace(tok)
		if c, ok := constants[tok]; ok {
			v |= c
			continue
		}
		n, err := strconv.ParseInt(tok, 0, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: unknown constant %q", s, tok)
		}
		v |= int(n)
	}
	return v, nil
}

// parseMode is parseBits with plain numbers read as octal, as modes are written.
func parseMode(s string) (uint32, error) {
	v := 0
	for _, tok := range strings.Split(s, "|") {
		tok = strings.TrimSpace(tok)
		if c, ok := constants[tok]; ok {
			v |= c
			continue
		}
		n, err := strconv.ParseUint(tok, 8, 32)
		if err != nil {
			return 0, fmt.Errorf("mode %q: %q is neither a constant nor octal", s, tok)
		}
		v |= int(n)
	}
	return uint32(v), nil
}
