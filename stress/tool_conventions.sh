#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The command-line conventions of the programs in stress/ (tool_opts.h),
# checked on each program given: --help on stdout with exit 0 and the exit
# codes documented, --version naming the program and libureg's version
# with exit 0, an unknown option, a stray argument and malformed or
# out-of-range numbers refused with exit 2 and a message on stderr.
#
#   stress/tool_conventions.sh PROGRAM:OPTION,OPTION... ...
#
# Each OPTION takes a number; every bad value below must be refused.
set -u
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # what expected actual
	if [ "$2" != "$3" ]; then
		echo "FAIL: $1: exit $3, expected $2"
		fail=1
	fi
}

for spec in "$@"; do
	prog=${spec%%:*}
	opts=$(echo "${spec#*:}" | tr ',' ' ')
	name=$(basename "$prog")

	"$prog" --help >"$tmp/out" 2>"$tmp/err"; st=$?
	check "$name --help" 0 "$st"
	grep -q '^usage: ' "$tmp/out" || { echo "FAIL: $name --help: no usage on stdout"; fail=1; }
	grep -q 'Exit status' "$tmp/out" || { echo "FAIL: $name --help: exit codes not documented"; fail=1; }
	if [ -s "$tmp/err" ]; then echo "FAIL: $name --help wrote to stderr"; fail=1; fi

	"$prog" --version >"$tmp/out" 2>&1; st=$?
	check "$name --version" 0 "$st"
	grep -q "^$name (ureg) [0-9][0-9.]*\$" "$tmp/out" ||
		{ echo "FAIL: $name --version printed '$(cat "$tmp/out")'"; fail=1; }

	"$prog" --no-such-option >"$tmp/out" 2>"$tmp/err"; st=$?
	check "$name --no-such-option" 2 "$st"
	"$prog" stray-argument >"$tmp/out" 2>"$tmp/err"; st=$?
	check "$name stray-argument" 2 "$st"

	for o in $opts; do
		for bad in "" "12x" "-1" "0x" "99999999999999999999999" "1e999" " 3" "inf"; do
			"$prog" "$o" "$bad" >"$tmp/out" 2>"$tmp/err"; st=$?
			check "$name $o '$bad'" 2 "$st"
			if [ ! -s "$tmp/err" ]; then
				echo "FAIL: $name $o '$bad': no message on stderr"
				fail=1
			fi
		done
	done
done
[ $fail = 0 ] && echo "tool conventions: $# programs ok"
exit $fail
