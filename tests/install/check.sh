#!/usr/bin/env bash
# tests/install/check.sh BUILD_DIR - install BUILD_DIR into a scratch
# prefix, then build and run consumer.c with nothing but `pkg-config ureg`
# (and, when cmake is present, find it from a CMake project the same way).
set -euo pipefail
build=$(cd "${1:?usage: check.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild >/dev/null
prefix=$(meson introspect "$build" --buildoptions |
	python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
libdir=$(meson introspect "$build" --buildoptions |
	python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="libdir"))')
root="$stage$prefix"
# the staged ureg.pc still names the real prefix: point it at the stage
sed -i "s|^prefix=.*|prefix=$root|" "$root/$libdir/pkgconfig/ureg.pc"
export PKG_CONFIG_PATH="$root/$libdir/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$here/consumer.c" -o "$stage/consumer" \
	$(pkg-config --cflags --libs ureg)
LD_LIBRARY_PATH="$root/$libdir" "$stage/consumer"
if command -v cmake >/dev/null; then
	mkdir -p "$stage/cm"
	cat >"$stage/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.13)
project(consumer C)
find_package(PkgConfig REQUIRED)
pkg_check_modules(UREG REQUIRED IMPORTED_TARGET ureg)
add_executable(consumer "$here/consumer.c")
target_link_libraries(consumer PkgConfig::UREG)
CM
	cmake -S "$stage/cm" -B "$stage/cm/build" >/dev/null
	cmake --build "$stage/cm/build" >/dev/null
	LD_LIBRARY_PATH="$root/$libdir" "$stage/cm/build/consumer"
fi
