#!/bin/bash
# bench-jobs.sh: real jobs, each natively and under every isolation tool, in one run (issue 20).
#
# Usage: scripts/bench-jobs.sh [--quick] [--runs N] [--jobs LIST] [--modes LIST] [--work DIR]
#                              [--out DIR] [--fsvirt PATH]
#
# Jobs (--jobs, comma-separated, default all):
#   build   ./configure && make of a small autoconf C project (generated here: many header,
#           function and type checks, 40 source files)
#   git     git status, then git log --stat -n 50, in a repository of 3,000 files and 40 commits
#   tar     tar x of 3,000 small files
#   python  a Python program that imports 60 standard modules
#   shell   sh reading 5 files and appending to one (the research's shell workload)
#   true    /bin/true: the fixed cost of a run
# Modes (--modes, default all; one that cannot run here is reported and left out):
#   native          the job on a fresh copy of its files
#   fsvirt          fsvirt run, default tree (/), fast policy
#   fsvirt-tree     fsvirt run --tree WORK, fast policy
#   fsvirt-strict   fsvirt run, strict policy
#   fsvirt-strict-tree  fsvirt run --tree WORK --policy strict
#   overlayfs       unshare -m, a kernel overlayfs over the job's files (root)
#   fuse-overlayfs  unshare -m, fuse-overlayfs over the job's files (root, /dev/fuse)
#   proot           proot on a fresh copy (ptrace; it isolates nothing, a reference point),
#                   started in the job's directory: after a chdir under proot (or with its -w),
#                   configure failed here ("cannot find sources"; proot 5.3.0, Linux 6.18)
#   unshare         unshare -m alone (true only: the floor of a namespace tool's fixed cost)
# --quick: smaller fixtures (build with fewer checks, 600 files), 1 run per job and mode, jobs
# build,shell,true: a smoke test of a minute or two. Default: 2 runs of build, 30 of true and
# shell, 5 of the others: about 8 minutes on 2 cores.
#
# Times come from hyperfine (apt-get install hyperfine); every mode of a job is measured in the
# same hyperfine run, one after the other. The copies and mounts a run needs are made in its
# --prepare step, outside the time, except the overlay mount itself, which is part of what a
# namespace tool costs. Syscall counts come from one `fsvirt run --json` of each job.
# Results: OUT/summary.md (medians and ratios), OUT/JOB.csv (hyperfine's export).
# Needs: hyperfine, gcc, make, autoconf, git, python3, tar; proot and fuse-overlayfs for those modes.
set -euo pipefail

cmdline="$*"
quick=0 runs= jobs=all modes=all work=${TMPDIR:-/var/tmp} out=fsvirt-jobs fsvirt=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--runs) runs=$2; shift ;;
	--jobs) jobs=$2; shift ;;
	--modes) modes=$2; shift ;;
	--work) work=$2; shift ;;
	--out) out=$2; shift ;;
	--fsvirt) fsvirt=$2; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench-jobs.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
die() { echo "bench-jobs.sh: $*" >&2; exit 2; }
[ -z "$runs" ] || [ "$runs" -ge 1 ] 2>/dev/null || die "--runs: $runs is not a positive number"
command -v hyperfine >/dev/null || die "hyperfine is not installed (apt-get install hyperfine)"
all_jobs=build,git,tar,python,shell,true
all_modes=native,fsvirt,fsvirt-tree,fsvirt-strict,fsvirt-strict-tree,overlayfs,fuse-overlayfs,proot,unshare
[ "$jobs" = all ] && { jobs=$all_jobs; [ $quick = 1 ] && jobs=build,shell,true; }
[ "$modes" = all ] && modes=$all_modes
for j in ${jobs//,/ }; do [[ ,$all_jobs, == *,$j,* ]] || die "--jobs: unknown job $j (one of $all_jobs)"; done
for m in ${modes//,/ }; do [[ ,$all_modes, == *,$m,* ]] || die "--modes: unknown mode $m (one of $all_modes)"; done
[ -d "$work" ] || die "--work: $work is not a directory"

repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$fsvirt" ]; then
	fsvirt=$(mktemp -d)/fsvirt
	(cd "$repo" && go build -o "$fsvirt" ./cmd/fsvirt) || die "cannot build fsvirt"
fi
[ -x "$fsvirt" ] || die "--fsvirt: $fsvirt is not executable"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Which modes can run here, and why not.
declare -A why
[ "$(id -u)" = 0 ] || { why[overlayfs]="needs root"; why[fuse-overlayfs]="needs root"; why[unshare]="needs root"; }
command -v fuse-overlayfs >/dev/null && [ -c /dev/fuse ] || why[fuse-overlayfs]="fuse-overlayfs or /dev/fuse missing"
command -v proot >/dev/null || why[proot]="proot is not installed"
"$fsvirt" run -- true 2>/dev/null || { for m in fsvirt fsvirt-tree fsvirt-strict fsvirt-strict-tree; do why[$m]="fsvirt run fails here"; done; }

W=$(mktemp -d "$work/fsvirt-jobs.XXXXXX")
cleanup() { umount "$W/fix" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
F=$W/fix # the jobs' files: the shared tree of every mode
mkdir -p "$F"

nfiles=3000 nchecks=1
[ $quick = 1 ] && nfiles=600 nchecks=0

# build: a C project whose configure makes many checks, as real ones do.
make_build() {
	local d=$F/build
	mkdir -p "$d/src"
	local hdrs="stdio.h stdlib.h string.h strings.h unistd.h fcntl.h errno.h limits.h stdint.h inttypes.h
		sys/types.h sys/stat.h sys/time.h sys/wait.h sys/socket.h sys/mman.h sys/ioctl.h sys/param.h
		sys/select.h sys/resource.h netinet/in.h arpa/inet.h netdb.h poll.h pthread.h signal.h
		locale.h langinfo.h wchar.h wctype.h dirent.h dlfcn.h termios.h pwd.h grp.h utime.h"
	local funcs="memcpy memmove memset strchr strrchr strdup strndup strerror strsignal strtol
		strtoul strtoll strtoull getcwd getpagesize mmap munmap mprotect gettimeofday clock_gettime
		nanosleep select poll socket setsockopt getaddrinfo inet_ntop fork vfork waitpid pipe dup2
		fcntl ftruncate fsync fdatasync realpath readlink symlink lstat fstatat openat mkdirat
		unlinkat renameat setlocale nl_langinfo iconv_open wcwidth mbrtowc getline getdelim qsort
		bsearch atexit setenv unsetenv putenv getopt_long sigaction sigprocmask alarm"
	local types="size_t ssize_t off_t pid_t uid_t gid_t mode_t intmax_t uintmax_t ptrdiff_t"
	if [ $nchecks = 0 ]; then hdrs="stdio.h stdlib.h string.h unistd.h"; funcs="memcpy strdup getcwd"; types="size_t"; fi
	{
		echo 'AC_INIT([jobs], [1.0])'
		echo 'AC_CONFIG_SRCDIR([src/main.c])'
		echo 'AC_CONFIG_HEADERS([config.h])'
		echo 'AC_PROG_CC'
		echo 'AC_PROG_MAKE_SET'
		echo "AC_CHECK_HEADERS([$(echo $hdrs)])"
		echo "AC_CHECK_FUNCS([$(echo $funcs)])"
		echo "AC_CHECK_TYPES([$(echo $types | tr ' ' ',')])"
		echo 'AC_C_BIGENDIAN'
		echo 'AC_C_INLINE'
		echo 'AC_SYS_LARGEFILE'
		echo 'AC_CHECK_SIZEOF([long])'
		echo 'AC_CHECK_SIZEOF([void *])'
		echo 'AC_SEARCH_LIBS([clock_gettime], [rt])'
		echo 'AC_SEARCH_LIBS([pthread_create], [pthread])'
		echo 'AC_CONFIG_FILES([Makefile])'
		echo 'AC_OUTPUT'
	} >"$d/configure.ac"
	local n=40 objs= i
	[ $quick = 1 ] && n=8
	for i in $(seq 1 $n); do
		printf '#include "config.h"\n#include <stdio.h>\n#include <string.h>\nint f%d(const char *s) { return (int)strlen(s) * %d; }\n' "$i" "$i" >"$d/src/f$i.c"
		objs="$objs src/f$i.o"
	done
	{
		echo '#include "config.h"'
		echo '#include <stdio.h>'
		for i in $(seq 1 $n); do echo "int f$i(const char *);"; done
		echo 'int main(void) { int t = 0;'
		for i in $(seq 1 $n); do echo "t += f$i(\"x\");"; done
		echo 'printf("%d\n", t); return 0; }'
	} >"$d/src/main.c"
	{
		echo 'CC = @CC@'
		echo 'CFLAGS = @CFLAGS@ -I.'
		echo 'LIBS = @LIBS@'
		echo "OBJS = src/main.o$objs"
		echo 'prog: $(OBJS)'
		printf '\t$(CC) $(CFLAGS) -o $@ $(OBJS) $(LIBS)\n'
		echo '%.o: %.c config.h'
		printf '\t$(CC) $(CFLAGS) -c -o $@ $<\n'
	} >"$d/Makefile.in"
	(cd "$d" && autoconf 2>/dev/null && autoheader 2>/dev/null) || die "autoconf failed (apt-get install autoconf)"
}

# git: a repository of $nfiles files in 30 directories, 40 commits.
make_git() {
	local d=$F/git i c
	mkdir -p "$d"
	for i in $(seq 0 29); do mkdir -p "$d/dir$i"; done
	for i in $(seq 1 "$nfiles"); do echo "file $i" >"$d/dir$((i % 30))/f$i.txt"; done
	(
		cd "$d"
		git init -q
		git config user.email bench@example.com
		git config user.name bench
		git add -A
		git commit -qm initial
		for c in $(seq 1 39); do
			echo "change $c" >>"dir$((c % 30))/f$c.txt"
			git commit -qam "change $c"
		done
		git gc -q
		echo "changed" >>dir1/f1.txt # git status has something to say
	) || die "git failed"
}

# tar: an archive of $nfiles files, unpacked into an empty directory.
make_tar() {
	local d=$F/tar i
	mkdir -p "$d/src" "$d/x"
	for i in $(seq 1 "$nfiles"); do echo "file $i" >"$d/src/f$i.txt"; done
	# An archive of a directory, not of ".", as docs/benchmarks.md's figures were measured. (tar x
	# of "." failed in the view until the view kept a copied directory's inode number: tar compares
	# it before and after, "Directory renamed before its status could be extracted".)
	tar cf "$d/files.tar" -C "$d" src
	rm -rf "$d/src"
}

make_python() {
	local d=$F/python
	mkdir -p "$d"
	cat >"$d/imports.py" <<'EOF'
import abc, argparse, ast, asyncio, base64, bisect, calendar, collections, concurrent.futures
import configparser, contextlib, copy, csv, dataclasses, datetime, decimal, difflib, email.message
import enum, fnmatch, fractions, functools, glob, gzip, hashlib, heapq, hmac, html.parser
import http.client, inspect, io, ipaddress, itertools, json, logging, lzma, mimetypes
import multiprocessing, numbers, operator, pathlib, pickle, platform, pprint, queue, random, re
import shlex, shutil, socket, sqlite3, statistics, string, struct, subprocess, tarfile, tempfile
import textwrap, threading, typing, unittest, urllib.request, uuid, xml.dom.minidom, zipfile
print(len(json.dumps({"ok": True})))
EOF
}

make_shell() {
	local d=$F/shell i
	mkdir -p "$d"
	for i in 1 2 3 4 5; do head -c 4096 /dev/urandom | base64 >"$d/$i.txt"; done
}

# The job's command, run from its directory.
job_cmd() {
	case $1 in
	build) echo './configure -q >/dev/null && make -s >/dev/null 2>&1 && "$PWD"/prog >/dev/null' ;;
	git) echo 'git status --porcelain >/dev/null && git log --stat -n 50 >/dev/null' ;;
	tar) echo 'tar xf files.tar -C x' ;;
	python) echo '/usr/bin/python3 imports.py >/dev/null' ;;
	shell) echo 'sh -c "cat 1.txt 2.txt 3.txt 4.txt 5.txt >/dev/null; echo appended >> 1.txt"' ;;
	true) echo '/bin/true' ;;
	esac
}

q() { printf '%q' "$1"; }

# mode_cmd MODE JOB prints the command hyperfine times and the one it runs before each run.
mode_cmd() {
	local m=$1 j=$2 c
	c=$(job_cmd "$j")
	local sh="cd $(q "$F/$j") && $c"
	local copy="rm -rf $(q "$W/copy") && cp -a $(q "$F") $(q "$W/copy")"
	local csh="cd $(q "$W/copy/$j") && $c"
	local ovl="rm -rf $(q "$W/up") $(q "$W/wk") && mkdir $(q "$W/up") $(q "$W/wk")"
	local opts="lowerdir=$F,upperdir=$W/up,workdir=$W/wk"
	if [ "$j" = true ]; then
		case $m in
		native) echo "/bin/true|" ;;
		unshare) echo "unshare -m /bin/true|" ;;
		fsvirt) echo "$fsvirt run -- /bin/true|" ;;
		fsvirt-tree) echo "$fsvirt run --tree $F -- /bin/true|" ;;
		fsvirt-strict) echo "$fsvirt run --policy strict -- /bin/true|" ;;
		fsvirt-strict-tree) echo "$fsvirt run --tree $F --policy strict -- /bin/true|" ;;
		overlayfs) echo "unshare -m sh -c $(q "mount -t overlay overlay -o $opts $F && /bin/true")|$ovl" ;;
		fuse-overlayfs) echo "unshare -m sh -c $(q "fuse-overlayfs -o $opts $F && /bin/true; umount $F")|$ovl" ;;
		proot) echo "proot /bin/true|" ;;
		esac
		return
	fi
	case $m in
	native) echo "sh -c $(q "$csh")|$copy" ;;
	fsvirt) echo "$fsvirt run -- sh -c $(q "$sh")|" ;;
	fsvirt-tree) echo "$fsvirt run --tree $F -- sh -c $(q "$sh")|" ;;
	fsvirt-strict) echo "$fsvirt run --policy strict -- sh -c $(q "$sh")|" ;;
	fsvirt-strict-tree) echo "$fsvirt run --tree $F --policy strict -- sh -c $(q "$sh")|" ;;
	overlayfs) echo "unshare -m sh -c $(q "mount -t overlay overlay -o $opts $F && $sh")|$ovl" ;;
	fuse-overlayfs) echo "unshare -m sh -c $(q "fuse-overlayfs -o $opts $F && ($sh); s=\$?; umount $F; exit \$s")|$ovl" ;;
	proot) echo "sh -c $(q "cd $(q "$W/copy/$j") && exec proot sh -c $(q "$c")")|$copy" ;;
	unshare) ;; # true only
	esac
}

echo "fixtures in $W ($nfiles files per tree job)..." >&2
for j in ${jobs//,/ }; do
	case $j in build) make_build ;; git) make_git ;; tar) make_tar ;; python) make_python ;; shell) make_shell ;; esac
done

summary=$out/summary.md
{
	echo "# bench-jobs.sh"
	echo
	echo "Command: \`scripts/bench-jobs.sh $cmdline\`; $(date -u '+%Y-%m-%d %H:%M UTC'); kernel $(uname -r); $(nproc) CPUs;"
	echo "fsvirt $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo '?'); load at start: $(cut -d' ' -f1-3 /proc/loadavg)."
	for m in ${modes//,/ }; do [ -n "${why[$m]:-}" ] && echo "- mode $m not run: ${why[$m]}"; done
	echo
	echo "Median wall time of each job (ms), and its ratio to native; every mode of a job in one hyperfine run."
	echo
} >"$summary"
declare -A med cpu
for j in ${jobs//,/ }; do
	r=$runs
	if [ -z "$r" ]; then
		case $j in build) r=2 ;; true | shell) r=30 ;; *) r=5 ;; esac
		[ $quick = 1 ] && case $j in true | shell) r=10 ;; *) r=1 ;; esac
	fi
	warm=1
	[ "$j" = build ] && warm=0 # its first run warms nothing a second would not
	args=() names=()
	for m in ${modes//,/ }; do
		[ -n "${why[$m]:-}" ] && continue
		mc=$(mode_cmd "$m" "$j")
		[ -z "$mc" ] && continue
		prep=${mc#*|}
		# -N: hyperfine splits commands into words itself, without a shell; the prepare step needs one.
		args+=(-n "$m" --prepare "${prep:+sh -c $(q "$prep")}" "${mc%%|*}")
		[ -z "$prep" ] && args[${#args[@]}-2]=true
		names+=("$m")
	done
	echo "== $j: ${names[*]} ($r runs each)" >&2
	# A failing run fails the whole measurement: a job must do the same work in every mode.
	hyperfine -N -w "$warm" -r "$r" --style basic --export-csv "$out/$j.csv" "${args[@]}" >"$out/$j.txt" 2>&1 ||
		{ cat "$out/$j.txt" >&2; die "$j failed in one of the modes (above)"; }
	while IFS=, read -r cmd mean sd median user system rest; do
		[ "$cmd" = command ] && continue
		med[$j,$cmd]=$median
		cpu[$j,$cmd]=$(awk -v u="$user" -v s="$system" 'BEGIN{print u+s}')
	done <"$out/$j.csv"
	if [[ " ${names[*]} " == *" fsvirt "* ]]; then
		calls=$(cd "$F/${j/#true/}" && "$fsvirt" run --json -- sh -c "$(job_cmd "$j")" 2>&1 >/dev/null | tail -1 |
			sed -n 's/.*"calls":{\([^}]*\)}.*/\1/p' | tr -d '"' | tr , '\n' | sort -t: -k2 -rn | tr '\n' ' ')
		total=$(echo "$calls" | tr ' ' '\n' | awk -F: '{s+=$2} END{print s+0}')
		echo "$j|$total|$calls" >>"$W/calls"
	fi
done

# Modes are the hyperfine names, in the order given; the table has one column per mode.
header="| job |" sep="|---|"
for m in ${modes//,/ }; do [ -n "${why[$m]:-}" ] && continue; header="$header $m |"; sep="$sep---|"; done
# table NAME: one row per job of NAME[job,mode] in ms, with its ratio to native.
table() {
	local -n t=$1
	echo "$header"
	echo "$sep"
	for j in ${jobs//,/ }; do
		row="| $j |"
		base=${t[$j,native]:-}
		for m in ${modes//,/ }; do
			[ -n "${why[$m]:-}" ] && continue
			v=${t[$j,$m]:-}
			if [ -z "$v" ]; then row="$row |"; continue; fi
			if [ -n "$base" ]; then
				row="$row $(awk -v v="$v" -v b="$base" 'BEGIN{printf "%.1f (%.2fx)", v*1000, v/b}') |"
			else
				row="$row $(awk -v v="$v" 'BEGIN{printf "%.1f", v*1000}') |"
			fi
		done
		echo "$row"
	done
}
{
	table med
	echo
	echo "CPU time (user + system, mean, ms) of each job and everything it started, fsvirt's supervisor"
	echo "included, and its ratio to native: less sensitive than wall time to other load on the machine."
	echo
	table cpu
	echo
	if [ -f "$W/calls" ]; then
		echo "Calls fsvirt intercepted per job (one \`fsvirt run --json\`, default tree), and fsvirt's added time per call"
		echo "((fsvirt - native) / calls, from the medians above):"
		echo
		echo "| job | calls | per call (µs) | by syscall |"
		echo "|---|---|---|---|"
		while IFS='|' read -r j total calls; do
			per=$(awk -v a="${med[$j,fsvirt]:-0}" -v b="${med[$j,native]:-0}" -v n="$total" \
				'BEGIN{if (n > 0 && b > 0) printf "%.1f", (a-b)*1e6/n; else printf "-"}')
			echo "| $j | $total | $per | $calls|"
		done <"$W/calls"
		echo
	fi
	echo "Ratios the issue sets targets for:"
	echo
	r() { awk -v a="${med[$1]:-}" -v b="${med[$2]:-}" 'BEGIN{if (a != "" && b != "") printf "%.2fx", a/b; else printf "n/a"}'; }
	echo "- build: fsvirt / native $(r build,fsvirt build,native) (target ≤ 1.35x); proot / fsvirt $(r build,proot build,fsvirt) (target ≥ 2x)"
	echo "- true: fsvirt / unshare -m $(r true,fsvirt true,unshare) (target ≤ 1.5x)"
	echo "- shell: fsvirt / overlayfs $(r shell,fsvirt shell,overlayfs) (target ≤ 0.8x)"
	echo "- load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >>"$summary"
cat "$summary"
