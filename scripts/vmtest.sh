#!/bin/bash
# vmtest.sh [-short|-full] [-budget SECONDS] [-j N] [-smp N] [-v] [KERNEL...]: run the test
# packages on each kernel of the matrix and print a table of results.
#
# KERNEL is 5.10, 6.1, 6.12 (Debian kernels booted under QEMU, fetched by vm-kernels.sh), host
# (this machine, no VM) or host-fallbacks (this machine with every optional seccomp feature
# turned off through FSVIRT_DISABLE, so that each fallback runs on a new kernel too); default:
# 5.10 6.1 6.12 host-fallbacks. The packages are the patterns in FSVIRT_VM_PKGS (default: those
# whose behaviour depends on the kernel, ./impl ./internal/notify ./cmd/fsvirt ./conformance ./fuzz
# ./model ./internal/propcheck; ./... for all, less the harness, vmtest/...). Each is built once
# as a static test binary (a command's package also gets a static build of the command, for its
# TestMain's `go build`) and run as root with -test.v -test.short, in its package directory.
# Except on host, tests that do not depend on the kernel are left out (FSVIRT_VM_ALL=1 keeps
# them): cmd/fsvirt's TestScenarioHarness, conformance's reference implementations.
#
#   -short           run with -test.short (the default)
#   -full            run without -test.short
#   -budget SECONDS  total time for the whole matrix (default $FSVIRT_VM_BUDGET or 900); runs
#                    that would start after it are counted as failed, and a run gets at most
#                    what is left (and at most 20 minutes)
#   -j N             runs at once (default $FSVIRT_VM_JOBS or 2)
#   -smp N           virtual CPUs per VM (default $FSVIRT_VM_SMP or 1)
#   -v               copy each run's output to the terminal (with -j 1 only)
#
# The VMs get the host's programs of the Debian packages in FSVIRT_VM_DEBS (default: coreutils
# findutils diffutils sed grep gzip tar attr dash; "" for busybox alone) and /bin/sh.
#
# In the VMs RAPID_CHECKS defaults to 5 (rapid's own default, 100, on the host): the property
# tests run 15-25 times slower under QEMU's TCG; and FSVIRT_TEST_RUN_TIMEOUT, cmd/fsvirt's bound
# on one fsvirt run (30s), to 5m. FSVIRT_* and RAPID_* variables reach the tests.
#
# The tables count --- PASS, --- FAIL and --- SKIP lines (subtests included) and collect the
# "fsvirt-probe: NAME=on|off" lines the tests print. Logs are kept under $FSVIRT_VM_LOGS
# (default: a new directory under ${TMPDIR:-/tmp}). Exit status: 0 when every run passed.
set -euo pipefail

short=(-test.short)
budget=${FSVIRT_VM_BUDGET:-900}
jobs=${FSVIRT_VM_JOBS:-2}
smp=${FSVIRT_VM_SMP:-1}
verbose=0
while [ $# -gt 0 ]; do
	case $1 in
	-short) short=(-test.short) ;;
	-full) short=() ;;
	-budget) budget=${2:?-budget needs seconds}; shift ;;
	-j) jobs=${2:?-j needs a number}; shift ;;
	-smp) smp=${2:?-smp needs a number}; shift ;;
	-v) verbose=1 ;;
	-h | -help | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "vmtest: unknown flag $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[[ $jobs =~ ^[1-9][0-9]*$ && $smp =~ ^[1-9][0-9]*$ && $budget =~ ^[0-9]+$ ]] ||
	{ echo "vmtest: -j, -smp and -budget take positive numbers" >&2; exit 2; }
[ $verbose = 0 ] || jobs=1
[ $# -gt 0 ] || set -- 5.10 6.1 6.12 host-fallbacks
kernels=("$@")
for k in "${kernels[@]}"; do
	case $k in
	5.10 | 6.1 | 6.12 | host | host-fallbacks) ;;
	*) echo "vmtest: unknown kernel $k (want 5.10, 6.1, 6.12, host or host-fallbacks)" >&2; exit 2 ;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
start=$SECONDS
max_run=1200
static=(-tags "osusergo,netgo" -ldflags '-linkmode external -extldflags "-static"')
# What host-fallbacks turns off: every optional feature (internal/notify's names).
fallbacks=addfd-send,id-valid-w,wait-killable,sync-wakeup,pidfd-getfd

die() {
	echo "vmtest: $*" >&2
	exit 1
}

debs=${FSVIRT_VM_DEBS-coreutils findutils diffutils sed grep gzip tar attr dash}

# need_debs installs what static cgo test binaries need (a C toolchain and libseccomp.a) and the
# packages of FSVIRT_VM_DEBS. vm-kernels.sh installs QEMU and busybox.
need_debs() {
	local missing=() deb
	command -v gcc >/dev/null || missing+=(gcc libc6-dev)
	[ -e /usr/lib/x86_64-linux-gnu/libseccomp.a ] || missing+=(libseccomp-dev)
	for deb in $debs; do
		dpkg-query -W -f '${Status}' "$deb" 2>/dev/null | grep -q 'ok installed' || missing+=("$deb")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	[ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: apt-get install --no-install-recommends ${missing[*]}"
	echo "vmtest: installing ${missing[*]}"
	# A fresh machine may have no package lists yet: update once and retry.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
		apt-get update -q >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
	} || die "apt-get install ${missing[*]} failed"
}

need_debs
vm_kernels=()
for k in "${kernels[@]}"; do [[ $k == host* ]] || vm_kernels+=("$k"); done
[ ${#vm_kernels[@]} -eq 0 ] || "$root/scripts/vm-kernels.sh" "${vm_kernels[@]}"
cache=${FSVIRT_VM_CACHE:-$HOME/.cache/fsvirt-vmtest}

work=$(mktemp -d "${TMPDIR:-/tmp}/fsvirt-vmtest.XXXXXX")
logs=${FSVIRT_VM_LOGS:-$work/logs}
trap 'rm -rf "$work/bin" "$work/rc"' EXIT
mkdir -p "$work/bin" "$work/rc" "$logs"
go build -o "$work/bin/vmexec" ./vmtest/cmd/vmexec

# Host programs the VMs get, by Debian package, with their libraries: the tests were written
# against Debian's userland (GNU cp -a keeps symlink times, GNU ls -d does not stat; busybox's
# differ). Busybox provides the rest.
tools=
for deb in $debs; do
	dpkg-query -W -f '${Status}' "$deb" 2>/dev/null | grep -q 'ok installed' || die "FSVIRT_VM_DEBS: $deb is not installed"
	while read -r f; do
		[ ! -d "$f" ] && { [ -f "$f" ] || [ -L "$f" ]; } && tools+=${tools:+,}$f
	done < <(dpkg -L "$deb" | grep -E '^(/usr)?/s?bin/')
done
[ -z "$tools" ] || [ ! -L /bin/sh ] || tools+=,/bin/sh

# The packages with tests, as "import-path name dir" lines.
harness=github.com/fsvirt/fsvirt/vmtest
read -r -a patterns <<<"${FSVIRT_VM_PKGS:-./impl ./internal/notify ./cmd/fsvirt ./conformance ./fuzz ./model ./internal/propcheck}"
mapfile -t pkgs < <(go list -e -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Name}} {{.Dir}}{{end}}' "${patterns[@]}" |
	grep -v -e "^$harness " -e "^$harness/" || true)
[ ${#pkgs[@]} -gt 0 ] || die "no test packages in ${patterns[*]}"

echo "vmtest: building ${#pkgs[@]} static test binaries"
build_failed=()
for i in "${!pkgs[@]}"; do
	read -r pkg name _ <<<"${pkgs[$i]}"
	if ! go test -c -o "$work/bin/$i.test" "${static[@]}" "$pkg" >"$logs/build-$i.log" 2>&1 ||
		{ [ "$name" = main ] && ! go build -o "$work/bin/$i.main" "${static[@]}" "$pkg" >>"$logs/build-$i.log" 2>&1; }; then
		build_failed+=("$pkg")
		rm -f "$work/bin/$i.test"
		echo "vmtest: build $pkg failed:" >&2
		cat "$logs/build-$i.log" >&2
	fi
done
built=$((SECONDS - start))
echo "vmtest: built in ${built}s; up to $jobs runs at once, $smp vCPUs per VM"

# selection PKG: the -test.run/-test.skip flags that leave out PKG's tests that do not depend on
# the kernel, on every kernel but host. Each takes minutes under TCG and is the same everywhere.
selection() {
	[ -z "${FSVIRT_VM_ALL:-}" ] || return 0
	case $1 in
	# The scenario harness compares copies of a tree with each other, without fsvirt.
	*/cmd/fsvirt) echo "-test.skip=^TestScenarioHarness\$" ;;
	# The suite's own checks and its reference implementations (copy, none, the kernel's
	# overlayfs) do not run fsvirt; TestFsvirt and TestFsvirtThread do.
	*/conformance) echo "-test.run=^TestFsvirt" ;;
	esac
}

# run KERNEL I: runs test binary I on KERNEL, with its combined output on stdout.
run() {
	local k=$1 i=$2 dir=${pkgs[$2]##* } left=$((budget - (SECONDS - start))) main= sel
	[ $left -gt 30 ] || { echo "vmtest: too little left of the ${budget}s budget (see -budget), not run" >&2; return 123; }
	[ $left -lt $max_run ] || left=$max_run
	# -test.timeout fires before the VM is killed, so a hung test shows its goroutines.
	local args=(-test.v "-test.timeout=$((left > 60 ? left - 30 : left))s" "${short[@]}")
	if [ "$k" != host ]; then
		sel=$(selection "${pkgs[$i]%% *}")
		[ -z "$sel" ] || args+=("$sel")
	fi
	case $k in
	host)
		(cd "$dir" && timeout -k 10 "$left" "$work/bin/$i.test" "${args[@]}") ;;
	host-fallbacks)
		(cd "$dir" && FSVIRT_DISABLE=$fallbacks${FSVIRT_DISABLE:+,$FSVIRT_DISABLE} \
			timeout -k 10 "$left" "$work/bin/$i.test" "${args[@]}") ;;
	*)
		[ ! -e "$work/bin/$i.main" ] || main=$work/bin/$i.main
		(cd "$dir" && RAPID_CHECKS=${RAPID_CHECKS:-5} FSVIRT_TEST_RUN_TIMEOUT=${FSVIRT_TEST_RUN_TIMEOUT:-5m} "$work/bin/vmexec" -kernel "$k" -smp "$smp" \
			-timeout "${left}s" -main "$main" -tools "$tools" "$work/bin/$i.test" "${args[@]}") ;;
	esac
}

# count FILE: prints "pass fail skip" for a -test.v log.
count() {
	awk '/^ *--- PASS/ { p++ } /^ *--- FAIL/ { f++ } /^ *--- SKIP/ { s++ } END { print p+0, f+0, s+0 }' "$1"
}

# probes FILES...: prints the probes seen on, then those only seen off.
probes() {
	grep -s -h -o -E 'fsvirt-probe: [A-Za-z0-9_.-]+=(on|off)\b' "$@" | sed 's/^fsvirt-probe: //' | sort -u | sort -s -t= -k1,1 |
		awk -F= '$2 == "on" { on[$1] = 1; o = o (o ? "," : "") $1 } $2 == "off" { off[++n] = $1 }
		END {
			for (i = 1; i <= n; i++) if (!(off[i] in on)) x = x (x ? "," : "") off[i]
			print (o ? o : "-") " " (x ? x : "-")
		}'
}

# table: aligns the |-separated lines of stdin into columns.
table() {
	awk -F'|' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } if (NF > nf) nf = NF }
	END { for (r = 1; r <= NR; r++) { line = ""; for (i = 1; i <= nf; i++) line = line sprintf("%-*s  ", w[i], cell[r, i]); sub(/ +$/, "", line); print line } }'
}

declare -A cell=() secs=() cpu=() pass=() fail=() skip=() bad=() ran=()
status=0
[ ${#build_failed[@]} -eq 0 ] || status=1
for k in "${kernels[@]}"; do
	mkdir -p "$logs/$k"
	secs[$k]=0 cpu[$k]=0 pass[$k]=0 fail[$k]=0 skip[$k]=0 bad[$k]=0 ran[$k]=0
done

# finish KERNEL I SECONDS: reads the outcome of run KERNEL I and prints its line.
finish() {
	local k=$1 i=$2 t=$3 log=$logs/$1/$2.log rc p f s verdict pkg=${pkgs[$2]%% *} user=0 sys=0 c
	rc=$(cat "$work/rc/$k-$i")
	read -r _ user sys <"$work/rc/$k-$i.time" || true
	c=$((${user:-0} + ${sys:-0}))
	read -r p f s < <(count "$log")
	pass[$k]=$((pass[$k] + p)) fail[$k]=$((fail[$k] + f)) skip[$k]=$((skip[$k] + s))
	ran[$k]=$((ran[$k] + 1)) secs[$k]=$((secs[$k] + t)) cpu[$k]=$((cpu[$k] + c))
	case $rc in
	0) verdict=ok ;;
	125) verdict="VM FAILED" ;;
	123) verdict="NOT RUN (budget)" ;;
	124) verdict=TIMEOUT ;;
	*) verdict="FAIL (exit $rc)" ;;
	esac
	[ "$rc" -eq 0 ] || { bad[$k]=$((bad[$k] + 1)); status=1; }
	[ "$f" -eq 0 ] || status=1
	cell[$i,$k]="$p/$f/$s $verdict"
	printf 'vmtest: %-14s %-30s %-14s %3d pass %3d fail %3d skip %4ds (CPU %4ds)  %s\n' \
		"$k" "${pkg#github.com/fsvirt/}" "$verdict" "$p" "$f" "$s" "$t" "$c" "$log"
}

# The runs, package by package (the slow engine packages first), each on every kernel; up to
# $jobs at once.
queue=()
for i in "${!pkgs[@]}"; do
	for k in "${kernels[@]}"; do
		if [ -e "$work/bin/$i.test" ]; then queue+=("$k $i"); else cell[$i,$k]="build failed"; fi
	done
done
declare -A running=() # pid -> "kernel index start"
for item in "${queue[@]}"; do
	while [ ${#running[@]} -ge "$jobs" ]; do
		wait -n -p done_pid "${!running[@]}" || true
		read -r k i t0 <<<"${running[$done_pid]}"
		unset "running[$done_pid]"
		finish "$k" "$i" $((SECONDS - t0))
	done
	read -r k i <<<"$item"
	# time reports the run's wall, user and system seconds, QEMU's included.
	{
		rc=0 TIMEFORMAT='%0R %0U %0S'
		if [ $verbose = 1 ]; then
			{ time { run "$k" "$i" 2>&1 | tee "$logs/$k/$i.log" || rc=$?; }; } 2>"$work/rc/$k-$i.time"
		else
			{ time { run "$k" "$i" >"$logs/$k/$i.log" 2>&1 || rc=$?; }; } 2>"$work/rc/$k-$i.time"
		fi
		echo $rc >"$work/rc/$k-$i"
	} &
	running[$!]="$k $i $SECONDS"
done
while [ ${#running[@]} -gt 0 ]; do
	wait -n -p done_pid "${!running[@]}" || true
	read -r k i t0 <<<"${running[$done_pid]}"
	unset "running[$done_pid]"
	finish "$k" "$i" $((SECONDS - t0))
done

echo
{
	header="package (pass/fail/skip)"
	for k in "${kernels[@]}"; do header+="|$k"; done
	echo "$header"
	for i in "${!pkgs[@]}"; do
		line=${pkgs[$i]%% *}
		line=${line#github.com/fsvirt/}
		for k in "${kernels[@]}"; do line+="|${cell[$i,$k]}"; done
		echo "$line"
	done
} | table
echo
{
	echo "kernel|release|Debian package|pass|fail|skip|runs ok|run time|CPU|probes on|probes off"
	for k in "${kernels[@]}"; do
		case $k in
		host*) release=$(uname -r) debian=- ;;
		*) release=$(cat "$cache/$k/release") debian=$(cat "$cache/$k/version") ;;
		esac
		read -r on off < <(probes /dev/null "$logs/$k"/*.log)
		echo "$k|$release|$debian|${pass[$k]}|${fail[$k]}|${skip[$k]}|$((ran[$k] - bad[$k]))/${ran[$k]}|${secs[$k]}s|${cpu[$k]}s|$on|$off"
	done
} | table
echo
echo "vmtest: ${#pkgs[@]} packages, ${#build_failed[@]} failed to build; build ${built}s, runs $((SECONDS - start - built))s" \
	"($jobs at once), $((SECONDS - start))s in all; logs in $logs"
exit $status
