# chains: processes started through short-lived intermediates write files relative to a working
# directory that exists only in the view: chains of timeout, xargs, nohup and setsid of depth 1
# to 5, alone and mixed, and orphans whose parent exited before they wrote.

step() { echo "== $*"; }

# chain TOOL DEPTH prints TOOL's command prefix DEPTH times over; "mixed" cycles through the four.
chain() {
	p=
	i=$2
	while [ "$i" -gt 0 ]; do
		t=$1
		if [ "$t" = mixed ]; then
			case $((i % 4)) in
			0) t=timeout ;;
			1) t=xargs ;;
			2) t=nohup ;;
			3) t=setsid ;;
			esac
		fi
		case $t in
		timeout) p="$p timeout 60" ;;
		xargs) p="$p xargs" ;; # no input: runs its command once
		nohup) p="$p nohup" ;;
		setsid) p="$p setsid -w" ;;
		esac
		i=$((i - 1))
	done
	echo "$p"
}

# waitfor FILE waits, at most 30 s, until FILE is not empty.
waitfor() {
	i=0
	while [ ! -s "$1" ] && [ $i -lt 600 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	cat "$1"
}

# where.sh prints its working directory relative to the tree's root, the same on both sides.
TOP=$(pwd)
export TOP
printf '%s\n' 'd=$(pwd)' 'echo ".${d#"$TOP"}"' > where.sh
mkdir -p work/deep
cd work/deep
pwd

for tool in timeout xargs nohup setsid mixed; do
	step "$tool, depth 1 to 5"
	for depth in 1 2 3 4 5; do
		echo "$tool $depth:$(chain $tool $depth)"
		# shellcheck disable=SC2046 # the prefix is meant to split into words
		$(chain $tool $depth) sh -c 'sh "$TOP/where.sh" > "$1" && echo "$2" >> "$1" && mkdir -p "sub-$3" && echo "$2" > "sub-$3/f"' \
			sh "$tool-$depth.txt" "$tool at depth $depth" "$tool-$depth" </dev/null
	done
	cat "$tool"-*.txt
	cat sub-"$tool"-*/f
done

step orphans: the parent exits before its child writes
setsid -f sh -c 'sleep 0.2; sh "$TOP/where.sh" > orphan-setsid.txt'
sh -c '(sleep 0.2; sh "$TOP/where.sh" > orphan-subshell.txt) &'
timeout 60 sh -c 'setsid -f sh -c "sleep 0.2; sh \"\$TOP/where.sh\" > orphan-timeout-setsid.txt"'
nohup sh -c 'xargs sh -c "(sleep 0.2; sh \"\$TOP/where.sh\" > orphan-nohup-xargs.txt) &" </dev/null'
sh -c 'cd .. && (sleep 0.2; sh "$TOP/where.sh" > deep/orphan-cd-up.txt) &'
for f in orphan-setsid orphan-subshell orphan-timeout-setsid orphan-nohup-xargs orphan-cd-up; do
	echo "$f: $(waitfor "$f.txt")"
done

step the files are in the view-only directory, and nowhere else
cd ../..
find work | sort
test -e timeout-1.txt || echo "nothing in the tree's root"
