#!/bin/sh
# SPDX-License-Identifier: MIT
#
# ratio-table.sh - a Markdown table from a saved `ureg-bench --json` run:
# one row per (workload, keys, threads), ureg's ns per operation, and for
# every other implementation in the run ureg's ops/s over its ops/s as
# "median [min-max]" (min-max: run r of ureg over run r of the other).
#
#   stress/bench/ratio-table.sh IN.json
#
# Needs python3.
set -eu

if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
	sed -n '4,11p' "$0" | sed 's/^# \{0,1\}//'
	[ $# -eq 1 ]
	exit $?
fi

exec python3 - "$1" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
rows, impls, order = {}, [], []
for r in doc["results"]:
    cell = (r["workload"], r["keys"], r["threads"])
    if cell not in rows:
        rows[cell] = {}
        order.append(cell)
    rows[cell][r["impl"]] = r
    if r["impl"] != "ureg" and r["impl"] not in impls:
        impls.append(r["impl"])
m = doc["machine"]
print("%s, %s cores, %s; %s s per run, median of %s runs" %
      (m.get("cpu"), m.get("cores"), m.get("date"), m.get("seconds_per_cell"),
       m.get("repeat")))
print()
print("| workload | keys | threads | ureg ns/op | " +
      " | ".join("ureg / %s" % i for i in impls) + " |")
print("|---|---:|---:|---:|" + "---:|" * len(impls))
for cell in order:
    u = rows[cell].get("ureg")
    if not u:
        continue
    out = []
    for i in impls:
        x = rows[cell].get(i)
        if not x or "ureg_ratio" not in x:
            out.append("-")
            continue
        out.append("%.2f [%.2f-%.2f]" % (x["ureg_ratio"],
                   x.get("ureg_ratio_min", x["ureg_ratio"]),
                   x.get("ureg_ratio_max", x["ureg_ratio"])))
    print("| %s | %s | %d | %.1f | %s |" % (cell[0], "{:,}".format(cell[1]),
          cell[2], u["ns_per_op"], " | ".join(out)))
EOF
