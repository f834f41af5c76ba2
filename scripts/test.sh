#!/bin/bash
# test.sh [--quick] [--vm]: run fsvirt's whole test suite, as CI does (.ci/run calls it).
#
# Installs what it needs when missing (as root, apt-get --no-install-recommends): gcc, pkg-config
# and libseccomp-dev, for the check that the compiled filter in impl/zfilter.go is up to date;
# git, make, python3 and attr, which the scenario tests run inside fsvirt (cmd/fsvirt).
# Then, from the repository root:
#   1. gofmt and go vet (also with -tags fsvirt_libseccomp);
#   2. go test ./... on this machine's kernel: unit, differential, property (rapid's default budget)
#      and CLI tests, fallback paths forced through FSVIRT_DISABLE;
#   3. TestFilterUpToDate with libseccomp;
#   4. with --vm, the -short suite inside QEMU on Debian's 5.10, 6.1 and 6.12 kernels
#      (scripts/vmtest.sh). Not in CI yet: it fails on 5.10 and 6.1 (docs/vmtest.md, "Known
#      problems") and overruns its budget; issue 6 stays open until it passes.
#
#   --quick   go test -short on the host only (steps 1-3, about a minute)
#   --vm      run step 4 (also FSVIRT_VM=1)
#
# Longer property runs: RAPID_CHECKS=5000 scripts/test.sh (internal/propcheck/doc.go).
# Exit status: non-zero when anything failed.
set -euo pipefail

short=()
vm=${FSVIRT_VM:+yes}
vm=${vm:-no}
while [ $# -gt 0 ]; do
	case $1 in
	--quick) short=(-short); vm=no ;;
	--vm) vm=yes ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "test.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

cd "$(dirname "$0")/.."
start=$SECONDS
step() { printf '\n=== %s (%ds)\n' "$*" $((SECONDS - start)); }

missing=()
for p in gcc pkg-config libseccomp-dev git make python3 attr; do
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
go test "${short[@]}" -timeout 20m ./...

step "filter up to date (libseccomp)"
go test -count=1 -tags fsvirt_libseccomp -run 'TestFilterUpToDate|TestFilterDecisions' ./impl

if [ "$vm" = yes ]; then
	step "vmtest: -short suite on Debian kernels 5.10, 6.1, 6.12"
	scripts/vmtest.sh 5.10 6.1 6.12
fi

step "all tests passed"
