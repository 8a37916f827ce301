#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Instructions (and, with --cache, simulated cache misses) per lookup of
# each implementation's lookup loop, counted by callgrind: exact and
# repeatable, unlike time on a shared machine.
#
#   stress/bench/instructions.sh [--cache] [BUILD_DIR] [KEYS]
#
# BUILD_DIR: a release build (meson setup build-rel --buildtype=release),
# default build-rel; KEYS: registry size, default 1000.  --cache adds
# callgrind's cache simulation (valgrind's model of this machine's L1 and
# last-level caches): D1 misses and last-level data misses per lookup.
#
# Method: ureg-bench runs one reader thread for a fixed number of lookups
# (--ops), once with N1 and once with N2; everything else (table build,
# warm-up, threads, timer calibration) is identical, so
#   (count(N2) - count(N1)) / (N2 - N1)
# is what one turn of the loop costs: the loop itself (same for every
# implementation), the read section, the lookup and reading one field of
# the item found.  Only the reader loop (*_read_loop and what it calls) is
# counted (--toggle-collect), so that set-up, timer calibration and the
# sorting of latency samples add no noise: the figures repeat to +-0.1.
# The string and baseline rows hash the key (XXH3) on every lookup; the
# handle rows were hashed once, up front.  The first three rows are the
# floor, no lookup: "loop only" is the benchmark's loop reading one field
# of a fixed item; "loop + ureg section" adds ureg_read_lock/unlock (the
# header-inline ones of UREG_INLINE_READ); "loop + memb section" adds raw
# urcu_memb_read_lock/unlock instead (what the cds_lfht and ck_hs rows
# pay).  A lookup row minus its section row is what the lookup costs.  ROWS="NAME:IMPL:WORKLOAD ..." (a
# + in NAME prints as a space)
# measures other loops, e.g. ROWS="ureg:ureg:context-get
# cds_lfht:cds_lfht:context-get".
#
# ureg seeds its key hash per process (ureg.h, "Keys"), which moves keys
# between buckets and so the chains a lookup walks: counts then differ by
# up to a few instructions from run to run.  The seed is fixed here to
# UREG_HASH_SEED (default 0: the buckets of plain XXH3, as the baselines
# have; the seed's additions are still executed) so that counts repeat.
set -eu
export UREG_HASH_SEED="${UREG_HASH_SEED:-0}"

cache=no
if [ "${1:-}" = "--cache" ]; then
	cache=yes
	shift
fi
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

# totals of one run: "Ir [D1mr DLmr]" (reads: the lookup path writes little)
count() { # impl workload ops
	valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" \
		--toggle-collect='*_read_loop' --cache-sim=$cache ${CG_OPTS:-} \
		"$bench" --impl "$1" --workload "$2" --keys "$keys" --threads 1 \
		--seconds 0.01 --ops "$3" --sample-every 1000000 --no-progress \
		>/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
	awk '/^events:/ { for (i = 2; i <= NF; i++) col[$i] = i - 1 }
	     /^totals:/ { t = $0 }
	     END { split(t, v, " ");
		   printf "%s", v[col["Ir"] + 1];
		   if ("D1mr" in col) printf " %s %s", v[col["D1mr"] + 1], v[col["DLmr"] + 1];
		   print "" }' "$tmp/cg.out"
}

if [ $cache = yes ]; then
	printf '%-22s %12s %10s %10s\n' "lookup ($keys keys)" "instr/lookup" "D1mr" "LLdmr"
else
	printf '%-22s %12s\n' "lookup ($keys keys)" "instr/lookup"
fi
rows=${ROWS:-"loop+only:ureg:loop loop+ureg+section:ureg:section
loop+memb+section:cds_lfht:section
ureg+string:ureg:read-only ureg+handle:ureg:handle
ureg+cached+handle:ureg:cached-handle cds_lfht:cds_lfht:read-only ck_hs:ck_hs:read-only"}
for row in $rows; do
	name=$(echo "${row%%:*}" | tr + " ")
	rest=${row#*:}
	impl=${rest%%:*}
	wl=${rest#*:}
	a=$(count "$impl" "$wl" "$n1")
	b=$(count "$impl" "$wl" "$n2")
	echo "$a $b" | awk -v n="$name" -v n1="$n1" -v n2="$n2" -v c=$cache '
		{ k = NF / 2; d = n2 - n1
		  printf "%-22s %12.1f", n, ($(k + 1) - $1) / d
		  if (c == "yes") printf " %10.2f %10.2f", ($(k + 2) - $2) / d, ($(k + 3) - $3) / d
		  print "" }'
done
