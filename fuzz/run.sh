#!/usr/bin/env bash
# fuzz/run.sh [SECONDS] - build the config-loader fuzzer with clang
# (libFuzzer + ASan + UBSan, the library sources instrumented too) in
# build-fuzz/ and run it for SECONDS (default 10) on a copy of the corpus.
# Exit 0 when nothing was found.  Needs clang + libclang-rt-14-dev.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
secs=${1:-10}
cc=$(command -v clang || command -v clang-14 || true)
[ -n "$cc" ] || { echo "fuzz/run.sh: clang not found" >&2; exit 77; }
mkdir -p build-fuzz
# libureg's sources as lib/meson.build lists them, plus the config layer's
core=$(awk '/^ureg_sources = files\(/{f=1;next} f&&/^\)/{exit} f' lib/meson.build | tr -d " ',")
srcs=()
config=$(awk '/^ureg_config_sources = files\(/{f=1;next} f&&/^\)/{exit} f' lib/meson.build | tr -d " ',")
for s in $core $config; do srcs+=("lib/$s"); done
flags=(-g -O1 -std=c11 -D_GNU_SOURCE -DUREG_BUILDING -Iinclude -Ilib
       -fsanitize=address,undefined -fno-sanitize-recover=undefined
       # liburcu's cds_lfht_for_each_entry takes container_of(NULL) at the
       # end of every walk (offset 0): clang flags it, it is harmless
       -fno-sanitize=pointer-overflow)
# shellcheck disable=SC2046
"$cc" "${flags[@]}" -fsanitize=fuzzer "${srcs[@]}" fuzz/fuzz_config.c \
	$(pkg-config --cflags --libs liburcu-memb liburcu-cds jemalloc libxxhash yaml-0.1) \
	-lpthread -ldl -o build-fuzz/fuzz_config
rm -rf build-fuzz/corpus && cp -r fuzz/corpus build-fuzz/corpus
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
	build-fuzz/fuzz_config -max_total_time="$secs" -max_len=4096 -timeout=10 \
	-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build-fuzz/ \
	-dict=fuzz/yaml.dict build-fuzz/corpus
