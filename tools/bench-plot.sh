#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench-plot.sh - run ureg-bench --json and draw throughput against threads
# for every implementation (gnuplot, one panel per workload and registry
# size in the run).
#
#   tools/bench-plot.sh [-o OUT.png] [-j OUT.json] [-b BENCH] [--] [ureg-bench options]
#   tools/bench-plot.sh [-o OUT.png] -i IN.json   (plot a saved --json run)
#
# Defaults: -o doc/bench-read-mostly.png under the repository root; the
# ureg-bench options not given are --workload read-mostly --keys 1000
# --threads 1,2,4,...,4x cores (powers of two, plus the core count)
# --repeat 3.  BENCH defaults to $UREG_BENCH, else the newest
# build*/stress/bench/ureg-bench under the repository root.
#
# Needs gnuplot (gnuplot-nox) and python3.
set -euo pipefail

usage() {
	sed -n '4,15p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-0}"
}

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/doc/bench-read-mostly.png"
json_out=""
json_in=""
bench="${UREG_BENCH:-}"

while (($#)); do
	case "$1" in
	-o) out="$2"; shift 2 ;;
	-j) json_out="$2"; shift 2 ;;
	-i) json_in="$2"; shift 2 ;;
	-b) bench="$2"; shift 2 ;;
	-h|--help) usage 0 ;;
	--) shift; break ;;
	*) break ;;
	esac
done

for tool in gnuplot python3; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "bench-plot: $tool not found (Debian: gnuplot-nox, python3)" >&2
		exit 1
	}
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ -n "$json_in" ]]; then
	cp "$json_in" "$tmp/bench.json"
else
if [[ -z "$bench" ]]; then
	bench=$(ls -t "$root"/build*/stress/bench/ureg-bench 2>/dev/null | head -n 1 || true)
fi
if [[ -z "$bench" || ! -x "$bench" ]]; then
	echo "bench-plot: ureg-bench not found; build it (ninja -C build" \
	     "stress/bench/ureg-bench) or pass -b PATH" >&2
	exit 1
fi

# Defaults for what the caller did not choose.
args=("$@")
has() {
	local a
	for a in "${args[@]+"${args[@]}"}"; do
		[[ "$a" == "$1" || "$a" == "$1="* ]] && return 0
	done
	return 1
}
cores=$(nproc)
sweep=""
for ((t = 1; t <= 4 * cores; t *= 2)); do sweep+="${sweep:+,}$t"; done
case ",$sweep," in *",$cores,"*) ;; *) sweep+=",$cores" ;; esac
has --workload || args+=(--workload read-mostly)
has --keys || args+=(--keys 1000)
has --threads || args+=(--threads "$sweep")
has --repeat || args+=(--repeat 3)

echo "bench-plot: $bench --json ${args[*]}" >&2
"$bench" --json "${args[@]}" >"$tmp/bench.json"
[[ -n "$json_out" ]] && cp "$tmp/bench.json" "$json_out"
fi

# JSON -> one data file per (workload, keys) panel + a gnuplot script.
python3 - "$tmp" "$out" <<'EOF'
import json, sys, os, subprocess

tmp, out = sys.argv[1], sys.argv[2]
doc = json.load(open(os.path.join(tmp, "bench.json")))
m, results = doc["machine"], doc["results"]
if not results:
    sys.exit("bench-plot: the benchmark returned no results")

order = ["ureg", "cds_lfht", "ck_hs", "rwlock", "mutex"]
impls = [i for i in order if any(r["impl"] == i for r in results)]
panels = []
for r in results:
    p = (r["workload"], r["keys"])
    if p not in panels:
        panels.append(p)

term = "pngcairo noenhanced size {w},{h} font 'sans,10'"
probe = subprocess.run(["gnuplot", "-e", "set terminal pngcairo"],
                       capture_output=True)
if probe.returncode != 0:
    term = "png noenhanced size {w},{h}"

cols = 1 if len(panels) == 1 else 2
rows = (len(panels) + cols - 1) // cols
w, h = 900 * cols, 560 * rows
g = []
g.append("set terminal " + term.format(w=w, h=h))
g.append("set output '%s'" % out.replace("'", "''"))
g.append("set datafile missing '?'")
if len(panels) > 1:
    g.append("set multiplot layout %d,%d title \"%s\"" % (
        rows, cols, "ureg-bench: %s, %d cores, %s" % (
            m.get("cpu", "?"), m.get("cores", 0), m.get("date", "?"))))
styles = {"ureg": "lw 3 pt 7 lc rgb '#d62728'",
          "cds_lfht": "lw 2 pt 5 lc rgb '#1f77b4'",
          "ck_hs": "lw 2 pt 9 lc rgb '#2ca02c'",
          "rwlock": "lw 2 pt 11 lc rgb '#9467bd'",
          "mutex": "lw 2 pt 13 lc rgb '#7f7f7f'"}
for n, (wl, keys) in enumerate(panels):
    rows_p = [r for r in results if r["workload"] == wl and r["keys"] == keys]
    threads = sorted({r["threads"] for r in rows_p})
    data = os.path.join(tmp, "panel%d.dat" % n)
    with open(data, "w") as f:
        f.write("# threads " + " ".join(impls) + "\n")
        for t in threads:
            vals = []
            for i in impls:
                v = [r["ops_per_s"] for r in rows_p
                     if r["threads"] == t and r["impl"] == i]
                vals.append("%.6g" % (v[0] / 1e6) if v else "?")
            f.write("%d %s\n" % (t, " ".join(vals)))
    title = "%s, %d keys" % (wl, keys)
    if len(panels) == 1:
        title = "ureg-bench %s: %s, %d cores, %s" % (
            title, m.get("cpu", "?"), m.get("cores", 0), m.get("date", "?"))
    g.append("set title \"%s\"" % title.replace('"', "'"))
    g.append("set xlabel 'reader threads'")
    g.append("set ylabel 'operations per second (millions, all reader threads)'")
    g.append("set logscale x 2")
    g.append("set xtics (%s)" % ", ".join('"%d" %d' % (t, t) for t in threads))
    g.append("set xrange [%g:%g]" % (threads[0] / 1.2, threads[-1] * 1.2))
    g.append("set yrange [0:*]")
    g.append("set grid")
    g.append("set key top left")
    cores = m.get("cores", 0)
    if cores and threads[0] <= cores <= threads[-1]:
        g.append("set arrow from %d, graph 0 to %d, graph 1 nohead dt 2 lc rgb '#999999'" % (cores, cores))
        g.append("set label '%d cores' at %d, graph 0.04 offset 0.5,0 tc rgb '#999999'" % (cores, cores))
    plots = ["'%s' using 1:%d with linespoints %s title '%s'" % (
        data, k + 2, styles.get(i, "lw 2"), i) for k, i in enumerate(impls)]
    g.append("plot " + ", ".join(plots))
    g.append("unset arrow; unset label")
if len(panels) > 1:
    g.append("unset multiplot")
open(os.path.join(tmp, "plot.gp"), "w").write("\n".join(g) + "\n")
EOF

mkdir -p "$(dirname "$out")"
gnuplot "$tmp/plot.gp"
echo "bench-plot: wrote $out" >&2
