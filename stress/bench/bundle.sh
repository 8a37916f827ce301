#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bundle.sh BUILD_DIR - copy ureg-bench and every shared library it needs
# beyond glibc into BUILD_DIR/bench-bundle/, with run.sh to start it there.
# For running the benchmark on a bare machine of the same architecture and
# distribution (e.g. a lent many-core machine without the -dev packages):
#
#   stress/bench/bundle.sh build
#   <copy build/bench-bundle over>  build/bench-bundle/run.sh --json ... > sweep.json
set -euo pipefail
build=${1:?usage: bundle.sh BUILD_DIR}
bin="$build/stress/bench/ureg-bench"
[[ -x "$bin" ]] || { echo "bundle: $bin not built" >&2; exit 1; }
out="$build/bench-bundle"
rm -rf "$out"
mkdir -p "$out/lib"
cp "$bin" "$out/"
ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
	case "$(basename "$lib")" in
	libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
	*) cp -L "$lib" "$out/lib/" ;;
	esac
done
cat >"$out/run.sh" <<'RUN'
#!/bin/sh
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/ureg-bench" "$@"
RUN
chmod +x "$out/run.sh"
du -sh "$out" | awk '{print "bundle: " $2 " (" $1 ")"}' >&2
