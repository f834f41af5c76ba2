#!/usr/bin/env bash
# Runs fsvirt's fuzz targets (package ./fuzz) one after another, each for a given time, and prints
# one summary line per target.
set -euo pipefail

usage() {
	cat <<'USAGE'
usage: scripts/fuzz.sh [--kernel KERNEL] [-time DURATION] [TARGET...]

Runs each fuzz target of ./fuzz with Go's fuzzing engine for DURATION (a Go duration, default
30m), one after another, then prints a line per target:

  TARGET  kernel K  code C  time DURATION  execs N  execs/sec R  new corpus entries K  result PASS|FAIL [input]

C is the code the run tested: the last commit that changed what the fuzz test binary is built from
(go.mod, the fuzz package, the module's packages it links, less their tests), with "+changes"
when the work tree changes those files. Runs of one campaign with the same C ran the same code.

TARGET is one of the package's fuzz targets (FuzzOpenatFlags, FuzzRelativeDirfds, FuzzSymlinks,
FuzzRacingThread, FuzzProcessTree, FuzzCreds); default all. A failing input is written to
fuzz/testdata/fuzz/TARGET/ (commit it: go test replays it as a regression test); new corpus
entries stay in Go's fuzz cache. The full output of each run goes to a log in $FUZZ_LOGDIR
(default: a new temporary directory). $FUZZ_PARALLEL sets the number of fuzzing workers (default
1: each drives one engine worker, and the machine is shared). $FUZZ_MINIMIZE_TIME bounds the
minimization of each new corpus entry and failing input (default 10s; Go's own is 60s, during
which the worker reports no execs and explores nothing new: an input of these targets takes
milliseconds to a second on the host and 10 to 20 times that under QEMU's TCG).

Without --kernel the targets run on this machine (go test -fuzz). With --kernel KERNEL (5.10, 6.1
or 6.12: the kernel matrix's, docs/vmtest.md) the package is built once as a static test binary
with the fuzzing instrumentation (go test -c -fuzz), and each target runs in a VM booted on that
kernel under QEMU (vmtest's vmexec, as root, one vCPU per worker) with -test.fuzz; the kernel is
fetched by scripts/vm-kernels.sh when it is not cached. The VM shares no file system with the
host: the test binary prints the inputs it wrote (fuzz/main_test.go) and this script writes each
back as fuzz/testdata/fuzz/TARGET/kernel-K-NAME, the kernel in its name. A run that the
coordinator reports as "fuzzing process hung or terminated unexpectedly" (a worker that died,
or one that spent over 10 s on one input: "panic: deadlocked!") is a FAIL with its input, and the
log then ends with the workers' stderr, which Go's coordinator itself discards. A VM that crashed
or outlived DURATION plus $FUZZ_VM_MARGIN (default 10m: booting and the baseline coverage of the
corpus) is reported as VM FAILED or VM TIMEOUT, with the log holding the tail of the kernel
console. The fuzz cache of a VM run is discarded with the VM. In a VM, FuzzProcessTree's inputs
start at most $FUZZ_PROC_BUDGET processes each (default 5; 8 on the host): every process is the
test binary started afresh, twice (natively and in the view), and under TCG on a loaded machine
an input of 8 ran past the 10 s a worker gives one input (docs/fuzzing.md).

  --kernel KERNEL  fuzz inside a VM booted on KERNEL
  -time DURATION   how long each target runs
  -h, --help       this help

Examples:
  scripts/fuzz.sh -time 2m FuzzSymlinks                # on this machine
  scripts/fuzz.sh --kernel 5.10 -time 1m FuzzSymlinks  # on Debian's 5.10 under QEMU
  scripts/fuzz.sh --kernel 6.12                        # every target, 30 minutes each, on 6.12
USAGE
}

time=30m
kernel=
targets=()
while [ $# -gt 0 ]; do
	case "$1" in
	-kernel | --kernel)
		[ $# -ge 2 ] || { usage >&2; exit 2; }
		kernel=$2
		shift 2
		;;
	-kernel=* | --kernel=*)
		kernel=${1#*=}
		shift
		;;
	-time | --time)
		[ $# -ge 2 ] || { usage >&2; exit 2; }
		time=$2
		shift 2
		;;
	-time=* | --time=*)
		time=${1#*=}
		shift
		;;
	-h | -help | --help)
		usage
		exit 0
		;;
	-*)
		echo "fuzz.sh: unknown flag $1" >&2
		usage >&2
		exit 2
		;;
	*)
		targets+=("$1")
		shift
		;;
	esac
done
cd "$(dirname "$0")/.."
if [ ${#targets[@]} -eq 0 ]; then
	mapfile -t targets < <(sed -nE 's/^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\).*/\1/p' fuzz/*_test.go | sort)
fi
case $kernel in
"" | 5.10 | 6.1 | 6.12) ;;
*) echo "fuzz.sh: unknown kernel $kernel (want 5.10, 6.1 or 6.12)" >&2; exit 2 ;;
esac
parallel=${FUZZ_PARALLEL:-1}
minimize=${FUZZ_MINIMIZE_TIME:-10s}
logdir=${FUZZ_LOGDIR:-$(mktemp -d -t fsvirt-fuzz-XXXXXX)}
mkdir -p "$logdir"
echo "logs in $logdir"
# The code under test, for the summary: the last commit that changed what the fuzz test binary is
# built from (go.mod, the fuzz package whole, the module's packages it links less their tests),
# "+changes" when the work tree changes that. Runs with one code ran the same program, whatever
# else the commits between them changed. The inputs this script writes back are untracked files,
# which change nothing here.
code_paths() {
	local dir
	echo go.mod
	echo go.sum
	echo fuzz
	go list -deps -test -f '{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}' ./fuzz | sort -u |
		while read -r dir; do
			dir=${dir#"$PWD"}
			dir=${dir#/}
			[ "$dir" = fuzz ] && continue
			echo ":(glob)${dir:+$dir/}*.go"
			echo ":(exclude,glob)${dir:+$dir/}*_test.go"
		done
}
code=unknown
if mapfile -t paths < <(code_paths) && [ ${#paths[@]} -gt 3 ] &&
	c=$(git log -1 --format=%h --abbrev=7 -- "${paths[@]}" 2>/dev/null) && [ -n "$c" ]; then
	code=$c
	if ! git diff --quiet HEAD -- "${paths[@]}"; then
		code=$code+changes
	fi
fi
echo "code $code (the last commit that changed the fuzz test binary's sources)"

if [ -n "$kernel" ]; then
	scripts/vm-kernels.sh "$kernel"
	bin=$logdir/bin
	mkdir -p "$bin"
	go build -o "$bin/vmexec" ./vmtest/cmd/vmexec
	echo "building the fuzz test binary (static, with the fuzzing instrumentation)"
	# -fuzz at build time adds the coverage instrumentation that guides the fuzzing engine;
	# -test.fuzz at run time picks the target.
	go test -c -fuzz=. -o "$bin/fuzz.test" -tags osusergo,netgo \
		-ldflags '-linkmode external -extldflags "-static"' ./fuzz
fi

# fuzz TARGET: runs TARGET for $time, here or in the VM, with its output on stdout.
fuzz() {
	if [ -z "$kernel" ]; then
		rm -f "$logdir/$1.worker.log"
		GOTRACEBACK=all FSVIRT_FUZZ_WORKER_LOG=$logdir/$1.worker.log \
			go test ./fuzz -run '^$' -fuzz "^$1\$" -fuzztime "$time" -fuzzminimizetime "$minimize" -timeout 0 -parallel "$parallel"
		return
	fi
	local margin
	margin=$(seconds "${FUZZ_VM_MARGIN:-10m}")
	(cd fuzz && GOTRACEBACK=all FSVIRT_FUZZ_PROC_BUDGET=${FUZZ_PROC_BUDGET:-5} FSVIRT_FUZZ_EXPORT=1 FSVIRT_FUZZ_WORKER_LOG=/tmp/fsvirt-fuzz-worker.log "$bin/vmexec" -kernel "$kernel" -smp "$parallel" -main '' \
		-timeout "$(($(seconds "$time") + margin))s" "$bin/fuzz.test" -test.run='^$' -test.fuzz="^$1\$" \
		-test.fuzztime="$time" -test.fuzzminimizetime="$minimize" -test.timeout=0 -test.parallel="$parallel" -test.fuzzcachedir=/tmp/fsvirt-fuzzcache)
}

# import_inputs TARGET LOG: writes the inputs that LOG carries back (fuzz/main_test.go) as
# fuzz/testdata/fuzz/TARGET/kernel-$kernel-NAME and prints their paths.
import_inputs() {
	local name data dest
	# Not anchored: a line of the other stream may have been cut into by this one.
	{ grep -aoE 'fsvirt-fuzz-input: [A-Za-z0-9_]+/[A-Za-z0-9_.-]+ [A-Za-z0-9+/=]+' "$2" || true; } | sort -u |
		while read -r _ name data; do
			dest=fuzz/testdata/fuzz/${name%%/*}/kernel-$kernel-${name#*/}
			mkdir -p "${dest%/*}"
			base64 -d <<<"$data" >"$dest"
			echo "$dest"
		done
}

# seconds turns a Go duration (1h2m3.5s, 30m, 45s) into whole seconds.
seconds() {
	awk -v d="$1" 'BEGIN {
		s = 0
		while (match(d, /^[0-9.]+(h|ms|m|s)/)) {
			n = substr(d, 1, RLENGTH); d = substr(d, RLENGTH + 1)
			v = n + 0; u = n; sub(/^[0-9.]+/, "", u)
			s += (u == "h") ? v * 3600 : (u == "m") ? v * 60 : (u == "s") ? v : v / 1000
		}
		printf "%d\n", s
	}'
}

summary=()
status=0
for target in "${targets[@]}"; do
	log="$logdir/$target.log"
	echo "== $target for $time on ${kernel:-this machine}, code $code (log: $log)"
	result=PASS
	rc=0
	fuzz "$target" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
	case $kernel,$rc in
	*,0) ;;
	?*,124) result="VM TIMEOUT (after $time + ${FUZZ_VM_MARGIN:-10m}; see the log)" ;;
	?*,125) result="VM FAILED (the kernel console's tail is in the log)" ;;
	*) result=FAIL ;;
	esac
	# The last progress line: "fuzz: elapsed: 30m0s, execs: 123456 (68/sec), new interesting: 12 (total: 60)".
	last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -n 1 || true)
	elapsed=$(sed -nE 's/^fuzz: elapsed: ([^,]+),.*/\1/p' <<<"$last")
	execs=$(sed -nE 's/.*execs: ([0-9]+) .*/\1/p' <<<"$last")
	new=$(sed -nE 's/.*new interesting: ([0-9]+) .*/\1/p' <<<"$last")
	secs=$(seconds "${elapsed:-0s}")
	rate=0
	if [ "${secs:-0}" -gt 0 ] && [ -n "$execs" ]; then
		rate=$(awk -v n="$execs" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
	fi
	if [ -n "$kernel" ]; then
		input=$(import_inputs "$target" "$log" | tr '\n' ' ')
	else
		input=$(sed -nE 's/.*Failing input written to (.*)$/\1/p' "$log" | tail -n 1)
	fi
	if grep -q 'fuzzing process hung or terminated unexpectedly' "$log"; then
		result="$result (fuzzing process hung or terminated unexpectedly)"
	fi
	# Go 1.26's fuzzing coordinator can fail a run whose time is up while a worker is still inside
	# an input, with a bare "context deadline exceeded" and no failing input (golang/go#75804).
	# Such a run found nothing: it is reported as such, not failed.
	if [ "$result" = FAIL ] && [ -z "$input" ] && ! grep -qE '^\s+(--- FAIL|panic:|[a-z_]+\.go:[0-9]+:)' "$log" &&
		grep -qE '^\s+context deadline exceeded$' "$log"; then
		result="PASS (stopped by golang/go#75804: \"context deadline exceeded\" at the end, no failing input)"
	fi
	if [ "${result%% (stopped by*}" != PASS ]; then
		status=1
	fi
	summary+=("$(printf '%-20s kernel %-5s code %-7s time %-8s execs %-9s execs/sec %-6s new corpus entries %-5s result %s %s' \
		"$target" "${kernel:-host}" "$code" "${elapsed:-?}" "${execs:-?}" "$rate" "${new:-?}" "$result" "$input")")
done

echo
printf '%s\n' "${summary[@]}"
exit $status
