#!/usr/bin/env bash
# stress/loop.sh - run the context-memory reproductions many times in a row.
#
#   stress/loop.sh [-n RUNS] [-b BUILD_DIR] [-s SECONDS] [-f FORKS] [arenas|fork|all]
#
# arenas: `ureg-stress --mode arenas --seconds S` (4 threads cycling DEDICATED
#         contexts with 16 B-4 MiB blocks beside SHARED-context and malloc
#         traffic; the ureg of 2026-11-26 crashed in mallocx in 10 of 10 runs)
# fork:   `ureg-stress --mode fork --forks F` (F forks beside 4 threads busy on
#         every lock; children hung in 5 of 300 forks before fork.c's fix)
#
# Each run is classified: a hang (the run passed its time limit, or a forked
# child deadlocked and was killed by its alarm), a crash (killed by a signal,
# or a forked child crashed), a failure (any other non-zero exit: a broken
# invariant) or a pass.  Prints one line per mode:
#     N runs, N crashes, N hangs, N failures    (arenas, ...)
# and exits non-zero if any run did not pass.  Defaults: 200 runs, build/,
# 5 s, 1000 forks.  Logs of the runs that did not pass go to $TMPDIR.
set -uo pipefail

runs=200 build=build seconds=5 forks=1000
while getopts "n:b:s:f:h" o; do
	case $o in
	n) runs=$OPTARG ;;
	b) build=$OPTARG ;;
	s) seconds=$OPTARG ;;
	f) forks=$OPTARG ;;
	*) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
what=${1:-all}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/$build/stress/stress/ureg-stress
[ -x "$bin" ] || { echo "loop.sh: $bin not built (tools/dev build)" >&2; exit 2; }
logdir=$(mktemp -d "${TMPDIR:-/tmp}/ureg-loop.XXXXXX")

loop() { # mode, limit_s, args...
	local mode=$1 limit=$2; shift 2
	local crashes=0 hangs=0 failures=0 i rc log
	for ((i = 1; i <= runs; i++)); do
		log=$logdir/$mode-$i.log
		timeout -s KILL "$limit" "$bin" --mode "$mode" --seed "$i" "$@" >"$log" 2>&1
		rc=$?
		case $rc in
		0) rm -f "$log"; continue ;;
		137) hangs=$((hangs + 1)) ;;      # killed by timeout: a hang
		3) hangs=$((hangs + 1)) ;;        # a forked child deadlocked
		4) crashes=$((crashes + 1)) ;;    # a forked child crashed
		*) if [ "$rc" -gt 128 ]; then crashes=$((crashes + 1)); else failures=$((failures + 1)); fi ;;
		esac
		echo "loop.sh: $mode run $i: exit $rc (log $log)" >&2
	done
	echo "$runs runs, $crashes crashes, $hangs hangs, $failures failures    ($mode)"
	[ $((crashes + hangs + failures)) -eq 0 ]
}

status=0
case $what in
arenas) loop arenas $((seconds * 4 + 30)) --seconds "$seconds" || status=1 ;;
fork) loop fork $((forks / 10 + 60)) --forks "$forks" || status=1 ;;
all)
	loop arenas $((seconds * 4 + 30)) --seconds "$seconds" || status=1
	loop fork $((forks / 10 + 60)) --forks "$forks" || status=1
	;;
*) echo "loop.sh: unknown mode $what" >&2; exit 2 ;;
esac
rmdir "$logdir" 2>/dev/null
exit $status
