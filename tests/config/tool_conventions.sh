#!/bin/sh
# SPDX-License-Identifier: MIT
# tool_conventions.sh TOOL... - the command-line conventions every ureg
# tool keeps (README "Tools"), checked on each TOOL given:
#   --help     usage on stdout, nothing on stderr, exit 0
#   --version  "NAME (ureg) X.Y.Z" on stdout, exit 0
#   an unknown option: exit 2 and a message on stderr
#   a bad number (not a number, out of range, trailing junk): exit 2 and
#   a message naming the option
# Exit 0 when every tool passes; each failure is printed.
set -u
fail=0
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

bad() { echo "FAIL: $*"; fail=1; }

# the numeric option each tool has
number_opt() {
	case "$(basename "$1")" in
	ureg-check) echo --max-errors ;;
	ureg-inspect) echo --contexts ;;
	ureg-demo) echo --users ;;
	*) echo "" ;;
	esac
}

for tool in "$@"; do
	name=$(basename "$tool")
	"$tool" --help >"$out" 2>"$err"; rc=$?
	[ $rc -eq 0 ] || bad "$name --help: exit $rc"
	[ -s "$out" ] || bad "$name --help: nothing on stdout"
	[ -s "$err" ] && bad "$name --help: wrote to stderr: $(cat "$err")"
	grep -q "^Usage: $name" "$out" || bad "$name --help: no 'Usage: $name' line"
	grep -q "Exit status" "$out" || bad "$name --help: exit codes not documented"

	"$tool" --version >"$out" 2>"$err"; rc=$?
	[ $rc -eq 0 ] || bad "$name --version: exit $rc"
	grep -Eq "^$name \(ureg\) [0-9]+\.[0-9]+\.[0-9]+$" "$out" ||
		bad "$name --version: printed '$(cat "$out")'"

	"$tool" --no-such-option >"$out" 2>"$err"; rc=$?
	[ $rc -eq 2 ] || bad "$name --no-such-option: exit $rc, not 2"
	[ -s "$err" ] || bad "$name --no-such-option: no message on stderr"

	opt=$(number_opt "$tool")
	[ -n "$opt" ] || { bad "$name: no numeric option known to this test"; continue; }
	for v in abc 12x -5 99999999999999999999 ""; do
		"$tool" "$opt=$v" x >"$out" 2>"$err"; rc=$?
		[ $rc -eq 2 ] || bad "$name $opt=$v: exit $rc, not 2"
		grep -q -- "$opt" "$err" || bad "$name $opt=$v: message does not name $opt: $(cat "$err")"
	done
done
[ $fail -eq 0 ] && echo "tool conventions: $# tools ok"
exit $fail
