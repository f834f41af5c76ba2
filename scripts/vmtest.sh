#!/bin/bash
# vmtest.sh [-short|-full] [-budget SECONDS] [-v] [KERNEL...]: run the test packages on each
# kernel of the matrix and print a table of results.
#
# KERNEL is 5.10, 6.1, 6.12 (Debian kernels booted under QEMU, fetched by vm-kernels.sh) or
# host (this machine, no VM); default: 5.10 6.1 6.12 host. The packages are the patterns in
# FSVIRT_VM_PKGS (default: those whose behaviour depends on the kernel, ./impl ./internal/notify
# ./cmd/fsvirt ./model ./internal/propcheck, so that the three kernels take about ten minutes;
# ./... for all, less the harness, vmtest/...). Each is built once as a static test binary (a
# command's package also gets a static build of the command, for its TestMain's `go build`) and
# run as root with -test.v -test.short, in its package directory.
#
#   -short           run with -test.short (the default)
#   -full            run without -test.short
#   -budget SECONDS  total time for the whole matrix (default $FSVIRT_VM_BUDGET or 900); runs
#                    that would start after it are counted as failed, and a run gets at most
#                    what is left (and at most 20 minutes)
#   -v               copy each run's output to the terminal
#
# The VMs get the host's programs of the Debian packages in FSVIRT_VM_DEBS (default: coreutils
# findutils diffutils sed grep gzip tar attr dash; "" for busybox alone) and /bin/sh.
#
# In the VMs RAPID_CHECKS defaults to 5 (rapid's own default, 100, on the host): the property
# tests run 15-25 times slower under QEMU's TCG. FSVIRT_* and RAPID_* variables reach the tests.
#
# The tables count --- PASS, --- FAIL and --- SKIP lines (subtests included) and collect the
# "fsvirt-probe: NAME=on|off" lines the tests print. Logs are kept under $FSVIRT_VM_LOGS
# (default: a new directory under ${TMPDIR:-/tmp}). Exit status: 0 when every run passed.
set -euo pipefail

short=(-test.short)
budget=${FSVIRT_VM_BUDGET:-900}
verbose=0
while [ $# -gt 0 ]; do
	case $1 in
	-short) short=(-test.short) ;;
	-full) short=() ;;
	-budget) budget=${2:?-budget needs seconds}; shift ;;
	-v) verbose=1 ;;
	-h | -help | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "vmtest: unknown flag $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ $# -gt 0 ] || set -- 5.10 6.1 6.12 host
kernels=("$@")
for k in "${kernels[@]}"; do
	case $k in
	5.10 | 6.1 | 6.12 | host) ;;
	*) echo "vmtest: unknown kernel $k (want 5.10, 6.1, 6.12 or host)" >&2; exit 2 ;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
start=$SECONDS
max_run=1200
static=(-tags "osusergo,netgo" -ldflags '-linkmode external -extldflags "-static"')

die() {
	echo "vmtest: $*" >&2
	exit 1
}

# need_debs installs what static cgo test binaries need: a C toolchain and libseccomp.a.
# vm-kernels.sh installs QEMU and busybox.
need_debs() {
	local missing=()
	command -v gcc >/dev/null || missing+=(gcc libc6-dev)
	[ -e /usr/lib/x86_64-linux-gnu/libseccomp.a ] || missing+=(libseccomp-dev)
	[ ${#missing[@]} -gt 0 ] || return 0
	[ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: apt-get install --no-install-recommends ${missing[*]}"
	echo "vmtest: installing ${missing[*]}"
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

need_debs
vm_kernels=()
for k in "${kernels[@]}"; do [ "$k" = host ] || vm_kernels+=("$k"); done
[ ${#vm_kernels[@]} -eq 0 ] || "$root/scripts/vm-kernels.sh" "${vm_kernels[@]}"
cache=${FSVIRT_VM_CACHE:-$HOME/.cache/fsvirt-vmtest}

work=$(mktemp -d "${TMPDIR:-/tmp}/fsvirt-vmtest.XXXXXX")
logs=${FSVIRT_VM_LOGS:-$work/logs}
trap 'rm -rf "$work/bin"' EXIT
mkdir -p "$work/bin" "$logs"
go build -o "$work/bin/vmexec" ./vmtest/cmd/vmexec

# Host programs the VMs get, by Debian package, with their libraries: the tests were written
# against Debian's userland (GNU cp -a keeps symlink times, GNU ls -d does not stat; busybox's
# differ). Busybox provides the rest.
tools=
for deb in ${FSVIRT_VM_DEBS-coreutils findutils diffutils sed grep gzip tar attr dash}; do
	dpkg-query -W -f '${Status}' "$deb" 2>/dev/null | grep -q 'ok installed' || die "FSVIRT_VM_DEBS: $deb is not installed"
	while read -r f; do
		[ ! -d "$f" ] && { [ -f "$f" ] || [ -L "$f" ]; } && tools+=${tools:+,}$f
	done < <(dpkg -L "$deb" | grep -E '^(/usr)?/s?bin/')
done
[ -z "$tools" ] || [ ! -L /bin/sh ] || tools+=,/bin/sh

# The packages with tests, as "import-path name dir" lines.
harness=github.com/fsvirt/fsvirt/vmtest
read -r -a patterns <<<"${FSVIRT_VM_PKGS:-./impl ./internal/notify ./cmd/fsvirt ./model ./internal/propcheck}"
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
echo "vmtest: built in $((SECONDS - start))s"

# run KERNEL I: runs test binary I on KERNEL, with its combined output on stdout.
run() {
	local k=$1 i=$2 dir=${pkgs[$2]##* } left=$((budget - (SECONDS - start))) main=
	[ $left -gt 30 ] || { echo "vmtest: too little left of the ${budget}s budget (see -budget), not run" >&2; return 123; }
	[ $left -lt $max_run ] || left=$max_run
	# -test.timeout fires before the VM is killed, so a hung test shows its goroutines.
	local args=(-test.v "-test.timeout=$((left > 60 ? left - 30 : left))s" "${short[@]}")
	if [ "$k" = host ]; then
		(cd "$dir" && timeout -k 10 "$left" "$work/bin/$i.test" "${args[@]}")
	else
		[ ! -e "$work/bin/$i.main" ] || main=$work/bin/$i.main
		(cd "$dir" && RAPID_CHECKS=${RAPID_CHECKS:-5} "$work/bin/vmexec" -kernel "$k" -timeout "${left}s" \
			-main "$main" -tools "$tools" "$work/bin/$i.test" "${args[@]}")
	fi
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

declare -A cell
rows=()
status=0
[ ${#build_failed[@]} -eq 0 ] || status=1
for k in "${kernels[@]}"; do
	if [ "$k" = host ]; then
		release=$(uname -r) debian=-
	else
		release=$(cat "$cache/$k/release") debian=$(cat "$cache/$k/version")
	fi
	mkdir -p "$logs/$k"
	pass=0 fail=0 skip=0 bad=0 ran=0 kstart=$SECONDS
	for i in "${!pkgs[@]}"; do
		[ -e "$work/bin/$i.test" ] || { cell[$i,$k]="build failed"; continue; }
		pkg=${pkgs[$i]%% *} log=$logs/$k/$i.log rc=0 t0=$SECONDS
		if [ $verbose = 1 ]; then
			run "$k" "$i" 2>&1 | tee "$log" || rc=$?
		else
			run "$k" "$i" >"$log" 2>&1 || rc=$?
		fi
		read -r p f s < <(count "$log")
		pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s)) ran=$((ran + 1))
		case $rc in
		0) verdict=ok ;;
		125) verdict="VM FAILED" ;;
		123) verdict="NOT RUN (budget)" ;;
		124) verdict=TIMEOUT ;;
		*) verdict="FAIL (exit $rc)" ;;
		esac
		[ $rc -eq 0 ] || { bad=$((bad + 1)); status=1; }
		[ "$f" -eq 0 ] || status=1
		cell[$i,$k]="$p/$f/$s $verdict"
		printf 'vmtest: %-5s %-30s %-14s %3d pass %3d fail %3d skip %4ds  %s\n' \
			"$k" "${pkg#github.com/fsvirt/}" "$verdict" "$p" "$f" "$s" $((SECONDS - t0)) "$log"
	done
	read -r on off < <(probes /dev/null "$logs/$k"/*.log)
	rows+=("$k|$release|$debian|$pass|$fail|$skip|$((ran - bad))/$ran|$((SECONDS - kstart))s|$on|$off")
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
	echo "kernel|release|Debian package|pass|fail|skip|runs ok|time|probes on|probes off"
	printf '%s\n' "${rows[@]}"
} | table
echo
echo "vmtest: ${#pkgs[@]} packages, ${#build_failed[@]} failed to build, $((SECONDS - start))s in all; logs in $logs"
exit $status
