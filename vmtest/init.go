package vmtest

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// Serial ports as the guest sees them: the console, then the job's stdout and stderr.
const (
	ttyOut = "/dev/ttyS1"
	ttyErr = "/dev/ttyS2"
)

// initScript returns /init: a busybox sh script that sets up a minimal root system, runs the
// job with its stdout and stderr on the serial ports, closes each with a marker (the one on
// stdout carries the exit status) and powers off. Its own messages go to the console.
func (im *image) initScript() string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s 2>/dev/null # keeps the host tools already there
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mount -t tmpfs -o mode=755 tmpfs /run
ip link set lo up
`)
	fmt.Fprintf(&b, "stty -F %s raw -echo\nstty -F %s raw -echo\n", ttyOut, ttyErr)
	if im.overlay != "" {
		fmt.Fprintf(&b, "insmod %s || echo 'vmtest: insmod overlay.ko failed' >%s\n", vmOverlay, ttyErr)
	}
	for _, kv := range im.job.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && validEnvName(k) {
			fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(v))
		}
	}
	dir, err := im.vmDir()
	if err != nil {
		dir = "/" // write refuses such a job before it writes /init
	}
	fmt.Fprintf(&b, "cd %s || echo 'vmtest: cannot enter the package directory' >%s\n", shellQuote(dir), ttyErr)
	bin := shellQuote(path.Join(vmBinDir, filepath.Base(im.job.Binary)))
	fmt.Fprintf(&b, "echo vmtest: running %s in %s\n", bin, shellQuote(dir))
	b.WriteString(bin)
	for _, a := range im.job.Args {
		b.WriteString(" " + shellQuote(a))
	}
	fmt.Fprintf(&b, " </dev/null >%s 2>%s\n", ttyOut, ttyErr)
	fmt.Fprintf(&b, "st=$?\necho vmtest: exit status $st\nprintf '%s\\n' >%s\nprintf '%s %%d\\n' $st >%s\npoweroff -f\n",
		im.marker(), ttyErr, im.marker(), ttyOut)
	return b.String()
}

// marker is the per-run line prefix that closes each output port.
func (im *image) marker() string {
	return "fsvirt-vmtest-end-" + im.nonce
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// validEnvName reports whether name can be exported by sh.
func validEnvName(name string) bool {
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for _, r := range name {
		if r != '_' && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// goShim is /usr/bin/go when the job has a Main program. The VM has no Go toolchain, and a
// test package of a command (cmd/fsvirt) builds its own binary in TestMain with
// `go build -o FILE .`; the shim answers exactly that by copying the program the host built,
// and fails loudly on anything else.
const goShim = `#!/bin/sh
fail() {
	echo "go (vmtest shim): the VM has no Go toolchain; only 'go build -o FILE .' of the package under test is emulated, not: go $args" >&2
	exit 2
}
args="$*"
[ "$1" = build ] || fail
shift
out=
while [ $# -gt 0 ]; do
	case $1 in
	-o) [ $# -ge 2 ] || fail; out=$2; shift ;;
	-o=*) out=${1#-o=} ;;
	.) ;;
	*) fail ;;
	esac
	shift
done
[ -n "$out" ] || fail
[ ! -d "$out" ] || fail
cp ` + vmMain + ` "$out" && chmod 755 "$out"
`
