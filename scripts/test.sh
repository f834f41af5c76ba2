#!/bin/bash
# test.sh [--quick] [--no-vm] [--vm]: run fsvirt's whole test suite, as CI does (.ci/run calls it).
#
# Installs what it needs when missing (as root, apt-get install -y --no-install-recommends): gcc,
# pkg-config and libseccomp-dev, for the check that the compiled filter in impl/zfilter.go is up
# to date and for the static test binaries of the VMs; git, make, python3, python3-venv and attr,
# which the scenario tests run inside fsvirt (cmd/fsvirt, as root and as nobody through
# util-linux's setpriv; they compile with gcc); vim-tiny, whose in-place write impl's
# TestProcessVimWritesInPlace runs in a view; nodejs and curl, which with python3 run
# examples/lambda's handlers behind fsvirt serve (cmd/fsvirt's TestServe*); fuse-overlayfs, a
# FUSE file system the liveness test stops under a view (impl's TestStuckLookupDelaysNoOtherCall);
# qemu-system-x86, busybox-static and xz-utils for
# the kernel matrix, whose Debian kernels scripts/vm-kernels.sh fetches (once; they are cached in
# ~/.cache/fsvirt-vmtest). Then, from the repository root:
#   1. gofmt and go vet (also with -tags fsvirt_libseccomp);
#   2. go test ./... on this machine's kernel: unit, differential, property (50 checks of each
#      rapid state machine, RAPID_CHECKS, half rapid's default: they are most of impl's time) and
#      CLI tests; impl's TestOpenDifferential forces each fallback in turn (notify.SetForTest);
#   3. impl's TestSupervisor* tests (thread mode's pool, the supervisors) under the race detector;
#      TestFilterUpToDate with libseccomp;
#   4. the kernel matrix (scripts/vmtest.sh 5.10 6.1 6.12 host-fallbacks, docs/vmtest.md): the
#      -short suite of the kernel-dependent packages inside QEMU on Debian's 5.10, 6.1 and 6.12
#      kernels, and on this machine with every optional seccomp feature turned off
#      (FSVIRT_DISABLE); about 8 minutes on two cores without KVM. It prints a table of results
#      and the feature probes each kernel had, and fails when any run failed.
#
#   --quick   go test -short on the host only (steps 1-3, about a minute); no kernel matrix
#   --no-vm   leave out step 4 (also FSVIRT_VM=0)
#   --vm      run step 4 even with --quick
#
# Longer property runs: RAPID_CHECKS=5000 scripts/test.sh (internal/propcheck/doc.go). The whole
# run is to stay under 25 minutes on two cores (CI's budget); it took about 13 (798 s at
# db1b9d6, with the machine loaded by other work).
# Exit status: non-zero when anything failed.
set -euo pipefail

short=()
vm=yes
[ "${FSVIRT_VM:-1}" != 0 ] || vm=no
force_vm=no
while [ $# -gt 0 ]; do
	case $1 in
	--quick) short=(-short); vm=no ;;
	--no-vm) vm=no ;;
	--vm) force_vm=yes ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "test.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

[ $force_vm = no ] || vm=yes

cd "$(dirname "$0")/.."
start=$SECONDS
step() { printf '\n=== %s (%ds)\n' "$*" $((SECONDS - start)); }

need=(gcc pkg-config libseccomp-dev git make python3 python3-venv attr nodejs curl fuse-overlayfs vim-tiny)
[ $vm = no ] || need+=(qemu-system-x86 busybox-static xz-utils)
missing=()
for p in "${need[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	step "installing ${missing[*]}"
	if [ "$(id -u)" != 0 ]; then
		echo "test.sh: ${missing[*]} missing; run as root or install them" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$vm" = yes ]; then
	# Fetched (or found in the cache) first, so that a network problem fails the run at once.
	step "Debian kernels for the matrix"
	scripts/vm-kernels.sh 5.10 6.1 6.12
fi

step "gofmt, go vet"
unformatted=$(gofmt -l . | grep -v '^vmtest/.*testdata/' || true)
if [ -n "$unformatted" ]; then
	echo "not gofmt'ed:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go vet -tags fsvirt_libseccomp ./impl/...

step "go test ${short[*]} ./... (kernel $(uname -r))"
RAPID_CHECKS=${RAPID_CHECKS:-50} go test "${short[@]}" -timeout 20m ./...

step "race detector: the supervisor's tests (impl's TestSupervisor*)"
# Every test of impl whose name starts with TestSupervisor drives the supervisor's goroutines
# concurrently with the test's own (thread mode's pool, several supervisors, Start, stuck calls,
# signals): those, and only those, run again under the race detector.
race=$(go test -race -list '^TestSupervisor' ./impl | grep -c '^TestSupervisor' || true)
if [ "$race" = 0 ]; then
	echo "test.sh: no test of impl is named TestSupervisor*: nothing would run under the race detector" >&2
	exit 1
fi
go test -race -count=1 -run '^TestSupervisor' ./impl

step "filter up to date (libseccomp)"
go test -count=1 -tags fsvirt_libseccomp -run 'TestFilterUpToDate|TestFilterDecisions' ./impl

if [ "$vm" = yes ]; then
	step "kernel matrix: -short suite on Debian kernels 5.10, 6.1, 6.12 (QEMU) and with every fallback forced on this one"
	scripts/vmtest.sh 5.10 6.1 6.12 host-fallbacks
fi

step "all tests passed"
