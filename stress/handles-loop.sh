#!/usr/bin/env bash
# stress/handles-loop.sh - the reproduction of the cached-handle race that
# commit 7535603 fixed, run many times in a row.
#
#   stress/handles-loop.sh [-n RUNS] [-b BUILD_DIR] [-s SECONDS] [-t READERS] [-k KEYS] [-a] [-i]
#
# Each run is `ureg-stress-handles --replace-only --keys K --threads T
# --seconds S`: one writer per registry replaces the K - 8 non-batch keys
# as fast as it can while T readers look them up by string, then through a
# shared cached handle, in one read section.  Before the fix a handle could
# remember the entry a single-key change was replacing, stamped with the
# stripe's value from before the change, and return it after the section
# had seen the new one ("version older than published").  On the tree of
# 7535603^ (release build, this 2-core VM) the defaults fail nearly every
# run; after the fix no run may fail.
#
# -a: all writers instead (replace, unregister, re-register, batch
# commits, resizes; no --replace-only), which also checks that a section
# reads one batch generation through its cached handles.  -i: the
# ureg-stress-handles-inline binary (the header-inline read section and
# cached hit of UREG_INLINE_READ).
#
# Prints `N runs, N failures` and exits non-zero if any run failed (a
# violation, a crash, or the run passing its time limit).  Defaults: 200
# runs, build/, 1 s, 2 readers, 9 keys.  Logs of failed runs go to $TMPDIR.
set -uo pipefail

runs=200 build=build seconds=1 threads=2 keys=9 mode=(--replace-only) name=ureg-stress-handles
while getopts "n:b:s:t:k:aih" o; do
	case $o in
	n) runs=$OPTARG ;;
	b) build=$OPTARG ;;
	s) seconds=$OPTARG ;;
	t) threads=$OPTARG ;;
	k) keys=$OPTARG ;;
	a) mode=() ;;
	i) name=ureg-stress-handles-inline ;;
	*) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/$build/stress/stress/$name
[ -x "$bin" ] || { echo "handles-loop.sh: $bin not built" >&2; exit 2; }
logdir=$(mktemp -d "${TMPDIR:-/tmp}/ureg-handles-loop.XXXXXX")
limit=$(awk -v s="$seconds" 'BEGIN { printf "%d", s * 4 + 30 }')

failures=0
for ((i = 1; i <= runs; i++)); do
	log=$logdir/run-$i.log
	timeout -s KILL "$limit" "$bin" "${mode[@]}" --keys "$keys" \
		--threads "$threads" --seconds "$seconds" >"$log" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		rm -f "$log"
		continue
	fi
	failures=$((failures + 1))
	echo "handles-loop.sh: run $i: exit $rc, $(tail -n 1 "$log" | sed 's/.*s: //') (log $log)" >&2
done
echo "$runs runs, $failures failures"
rmdir "$logdir" 2>/dev/null
[ $failures -eq 0 ]
