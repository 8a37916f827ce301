#!/bin/sh
# SPDX-License-Identifier: MIT
#
# ratio-plot.sh - draw ureg's throughput over one baseline's, cell by cell,
# from a saved `ureg-bench --json` run: one bar per (workload, keys,
# threads), the median ratio with the run-by-run [min-max] as an error bar,
# and the issue's floor as a line.
#
#   stress/bench/ratio-plot.sh IN.json OUT.png [BASELINE] [FLOOR]
#
# BASELINE: cds_lfht (default) or any --impl name in the run; FLOOR: the
# horizontal line to draw (default 1.0).  Needs gnuplot and python3.
set -eu

if [ $# -lt 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
	sed -n '4,12p' "$0" | sed 's/^# \{0,1\}//'
	[ $# -ge 2 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]
	exit $?
fi
in=$1
out=$2
base=${3:-cds_lfht}
floor=${4:-1.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$in" "$base" >"$tmp/data" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
base = sys.argv[2]
for r in doc["results"]:
    if r.get("impl") != base or "ureg_ratio" not in r:
        continue
    label = "%s %s/%dt" % (r["workload"], "{:,}".format(r["keys"]), r["threads"])
    print('"%s" %.4f %.4f %.4f' % (label, r["ureg_ratio"],
          r.get("ureg_ratio_min", r["ureg_ratio"]),
          r.get("ureg_ratio_max", r["ureg_ratio"])))
EOF
[ -s "$tmp/data" ] || { echo "ratio-plot.sh: no ureg/$base ratios in $in" >&2; exit 1; }
n=$(wc -l <"$tmp/data")
machine=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["machine"]; print("%s, %s cores, %s" % (m.get("cpu","?"), m.get("cores","?"), m.get("date","?")))' "$in")

gnuplot <<EOF
set terminal pngcairo size $((640 + 28 * n)),600 font "sans,9"
set output "$out"
set title "ureg / $base throughput per cell (median, bar: min-max of the runs)\n$machine" noenhanced
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.6 border -1
set xtics rotate by -60 noenhanced
set ylabel "ureg ops/s over $base ops/s (log scale)"
set logscale y 2
set yrange [0.125:32]
set rmargin 8
set grid ytics
set key off
plot "$tmp/data" using 2:3:4:xtic(1) lc rgb "#3465a4", \
     $floor with lines lc rgb "#cc0000" lw 2 dt 2
EOF
echo "ratio-plot.sh: wrote $out ($n cells)"
