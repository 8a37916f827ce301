#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Instructions per lookup of each implementation's lookup loop, counted by
# callgrind (exact and repeatable, unlike time on a shared machine).
#
#   stress/bench/instructions.sh [BUILD_DIR] [KEYS]
#
# BUILD_DIR: a release build (meson setup build-rel --buildtype=release),
# default build-rel; KEYS: registry size, default 1000.
#
# Method: ureg-bench runs one reader thread for a fixed number of lookups
# (--ops), once with N1 and once with N2; everything else (table build,
# warm-up, threads, timer calibration) is identical, so
#   (instructions(N2) - instructions(N1)) / (N2 - N1)
# is what one turn of the loop costs: the loop itself (same for every
# implementation), the read section, the lookup and reading one field of
# the item found.  Only the reader loop (*_read_loop and what it calls) is
# counted (--toggle-collect), so that set-up, timer calibration and the
# sorting of latency samples add no noise: the figures repeat to +-0.5.  The string and baseline rows hash the key (XXH3) on
# every lookup; the handle rows were hashed once, up front.
set -eu

build=${1:-build-rel}
keys=${2:-1000}
bench="$build/stress/bench/ureg-bench"
n1=${N1:-65536}
n2=${N2:-262144}

if [ ! -x "$bench" ]; then
	echo "instructions.sh: no $bench (build it first)" >&2
	exit 1
fi
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# total instructions of one run
count() { # impl workload ops
	valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" \
		--toggle-collect='*_read_loop' \
		"$bench" --impl "$1" --workload "$2" --keys "$keys" --threads 1 \
		--seconds 0.01 --ops "$3" --sample-every 1000000 --no-progress \
		>/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
	sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/err"
}

printf '%-22s %12s\n' "lookup ($keys keys)" "instr/lookup"
for row in "ureg string:ureg:read-only" "ureg handle:ureg:handle" \
	   "ureg cached handle:ureg:cached-handle" \
	   "cds_lfht:cds_lfht:read-only" "ck_hs:ck_hs:read-only"; do
	name=${row%%:*}
	rest=${row#*:}
	impl=${rest%%:*}
	wl=${rest#*:}
	a=$(count "$impl" "$wl" "$n1")
	b=$(count "$impl" "$wl" "$n2")
	awk -v n="$name" -v a="$a" -v b="$b" -v n1="$n1" -v n2="$n2" \
		'BEGIN { printf "%-22s %12.1f\n", n, (b - a) / (n2 - n1) }'
done
