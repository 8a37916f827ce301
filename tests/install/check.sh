#!/usr/bin/env bash
# tests/install/check.sh BUILD_DIR - install BUILD_DIR into a scratch
# prefix, then, with nothing but what was installed:
#  - libureg.so needs no libyaml (readelf -d), and its SONAME is set;
#  - each library's pkg-config file (ureg, ureg-config, ureg-agents) builds
#    and runs a consumer of that library;
#  - CMake's find_package(ureg CONFIG) builds and runs the same three
#    through the imported targets ureg::ureg, ureg::config, ureg::agents.
set -euo pipefail
build=$(cd "${1:?usage: check.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild >/dev/null
opt() {
	meson introspect "$build" --buildoptions |
		python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]==sys.argv[1]))' "$1"
}
prefix=$(opt prefix)
libdir=$(opt libdir)
root="$stage$prefix"
lib="$root/$libdir"

# 1. the core library stands alone
needed=$(readelf -d "$lib/libureg.so" | awk '/NEEDED/{print $NF}')
if grep -q yaml <<<"$needed"; then
	echo "libureg.so needs libyaml: $needed" >&2; exit 1
fi
readelf -d "$lib/libureg.so" | grep -q 'SONAME.*libureg.so.0' ||
	{ echo "libureg.so has no SONAME libureg.so.0" >&2; exit 1; }
readelf -d "$lib/libureg-config.so" | grep -q 'NEEDED.*libyaml' ||
	{ echo "libureg-config.so should be the one that needs libyaml" >&2; exit 1; }

# 2. pkg-config, one consumer per library
for pc in ureg ureg-config ureg-agents; do
	# the staged .pc files still name the real prefix: point them at the stage
	sed -i "s|^prefix=.*|prefix=$root|" "$lib/pkgconfig/$pc.pc"
done
export PKG_CONFIG_PATH="$lib/pkgconfig"
declare -A src=([ureg]=consumer.c [ureg-config]=consumer_config.c [ureg-agents]=consumer_agents.c)
for pc in ureg ureg-config ureg-agents; do
	# shellcheck disable=SC2046
	cc -std=c11 -Wall -Wextra -Werror "$here/${src[$pc]}" -o "$stage/pc-$pc" \
		$(pkg-config --cflags --libs "$pc")
	LD_LIBRARY_PATH="$lib" "$stage/pc-$pc"
done

# 3. CMake find_package(ureg CONFIG)
if command -v cmake >/dev/null; then
	mkdir -p "$stage/cm"
	cat >"$stage/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.13)
project(consumers C)
find_package(ureg 0.2 CONFIG REQUIRED)
add_executable(consumer "$here/consumer.c")
target_link_libraries(consumer ureg::ureg)
add_executable(consumer_config "$here/consumer_config.c")
target_link_libraries(consumer_config ureg::config)
add_executable(consumer_agents "$here/consumer_agents.c")
target_link_libraries(consumer_agents ureg::agents)
CM
	cmake -S "$stage/cm" -B "$stage/cm/build" -DCMAKE_PREFIX_PATH="$root" >/dev/null
	cmake --build "$stage/cm/build" >/dev/null
	for t in consumer consumer_config consumer_agents; do
		LD_LIBRARY_PATH="$lib" "$stage/cm/build/$t"
	done
else
	echo "cmake not found: tools/dev installs it" >&2; exit 1
fi
