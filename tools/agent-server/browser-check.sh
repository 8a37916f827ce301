#!/bin/sh
# SPDX-License-Identifier: MIT
#
# browser-check.sh - check the agent server's page in headless Chromium.
#
#   tools/agent-server/browser-check.sh [BUILD_DIR] [SCREENSHOT]
#
# Needs chromium (Debian: apt-get install chromium; CHROMIUM=... to use
# another binary) and a build of ureg-agent-server in BUILD_DIR (default
# "build").  Not run by tools/dev test: chromium is too big for CI.
#
# Starts the server on a free port, loads /?run=echo&input=NONCE and checks
# that the page connected and shows the echo run's five events in order
# (started, progress x3, completed, each carrying NONCE); loads
# /?run=fail&input=NONCE and checks started then error; saves a screenshot
# of the echo page (default doc/agent-page.png); stops the server and
# checks that it leaked no context byte and no instance.  Prints PASS or
# FAIL with the reason and the time taken; exit status 0 only on PASS.
set -u

BUILD=${1:-build}
SHOT=${2:-doc/agent-page.png}
CHROMIUM=${CHROMIUM:-chromium}
SERVER=$BUILD/tools/agent-server/ureg-agent-server
start=$(date +%s.%N)
tmp=$(mktemp -d)
server_pid=

finish() {
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap finish EXIT

fail() {
	echo "browser-check: FAIL: $*"
	exit 1
}

command -v "$CHROMIUM" >/dev/null 2>&1 || fail "no $CHROMIUM (apt-get install chromium)"
[ -x "$SERVER" ] || fail "no $SERVER (build first: meson setup $BUILD && ninja -C $BUILD)"

"$SERVER" --port 0 >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!
port=
i=0
while [ $i -lt 100 ]; do # at most 10 s for the listening line
	port=$(sed -n 's#^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)/$#\1#p' "$tmp/server.out")
	[ -n "$port" ] && break
	kill -0 "$server_pid" 2>/dev/null || fail "server exited: $(cat "$tmp/server.err")"
	sleep 0.1
	i=$((i + 1))
done
[ -n "$port" ] || fail "server did not print its port within 10 s"

# chromium, headless, no network but loopback, a fresh profile each time
browse() { # URL ARGS...
	url=$1
	shift
	timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
		--no-first-run --disable-background-networking --disable-component-update \
		--disable-sync --user-data-dir="$(mktemp -d "$tmp/profile.XXXXXX")" \
		--window-size=900,560 --virtual-time-budget=5000 "$@" "$url" 2>>"$tmp/chromium.err"
}

# the classes of the log lines, in order, and the lines themselves
log_of() { # DOM-FILE
	sed -n 's#.*<div id="log">\(.*\)</div>.*#\1#p' "$1" | sed 's#</div>#&\n#g'
}

nonce=bc$$x$(date +%s%N | tail -c 9)
base="http://127.0.0.1:$port/"

browse "${base}?run=echo&input=$nonce" --dump-dom >"$tmp/echo.html" ||
	fail "chromium failed on the echo page: $(tail -3 "$tmp/chromium.err")"
grep -q '<b id="status">connected</b>' "$tmp/echo.html" || fail "echo page never connected"
classes=$(log_of "$tmp/echo.html" | sed -n 's#^<div class="\([a-z]*\)">.*#\1#p' | tr '\n' ' ')
[ "$classes" = "started progress progress progress completed " ] ||
	fail "echo page shows events [$classes], wanted started, progress x3, completed"
[ "$(log_of "$tmp/echo.html" | grep -c "\"input\":\"$nonce\"")" -eq 5 ] ||
	fail "echo events do not all carry this page's input $nonce"
grep -q "completed {\"input\":\"$nonce\",\"output\":\"$nonce\"}" "$tmp/echo.html" ||
	fail "no completed event with output $nonce"
grep -q '<b id="count">5</b>' "$tmp/echo.html" || fail "event counter is not 5"

browse "${base}?run=fail&input=$nonce" --dump-dom >"$tmp/fail.html" ||
	fail "chromium failed on the fail page"
classes=$(log_of "$tmp/fail.html" | sed -n 's#^<div class="\([a-z]*\)">.*#\1#p' | tr '\n' ' ')
[ "$classes" = "started error " ] || fail "fail page shows events [$classes], wanted started, error"
grep -q 'this agent always fails' "$tmp/fail.html" || fail "fail page shows no error text"

mkdir -p "$(dirname "$SHOT")"
browse "${base}?run=echo&input=hello%20from%20headless%20chromium" \
	--screenshot="$tmp/shot.png" >/dev/null || fail "chromium could not take the screenshot"
[ -s "$tmp/shot.png" ] || fail "empty screenshot"
cp "$tmp/shot.png" "$SHOT"

kill "$server_pid"
wait "$server_pid"
server_pid=
stats=$(tail -1 "$tmp/server.err")
case $stats in
*" 3 sessions,"*" 0 leaked context bytes, 0 leaked instances") ;;
*) fail "server stats after the three pages: $stats" ;;
esac

end=$(date +%s.%N)
printf 'browser-check: PASS (echo: 5 events in order, fail: started+error, screenshot %s, %s) in %.1f s\n' \
	"$SHOT" "${stats#ureg-agent-server: }" "$(awk "BEGIN{print $end - $start}")"
