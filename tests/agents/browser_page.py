#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The agent server's page in a real browser: headless Chromium driven
through the DevTools protocol (Python standard library only).

    browser_page.py --server PATH/ureg-agent-server [--shots DIR] [--chromium BIN]

Two tabs, each in its own browser context, are two users.  Checked:
  1. each tab connects and runs what its URL asks (?run=echo&input=...),
     and a run started from the form (tab A: the fail agent);
  2. each tab shows only its own cards (its inputs, its user id), echo
     cards complete with the progress bar at 100% and the output equal to
     the input, the fail card shows the agent's error;
  3. the memory view (tab A, #memory) lists both users' contexts with a
     plot per user and the registry hierarchy (agents: echo, fail);
  4. closing tab B drops B's context from A's memory view;
  5. the server stops (A shows "reconnecting"), starts again on the same
     port, and A reconnects as a new user and runs again;
  6. the server leaked no context byte and no instance.
Screenshots: DIR/agent-page-runs.png (tab B, the runs view) and
DIR/agent-page-memory.png (tab A, the memory view), 1200x760.

Every wait polls a condition against a deadline (in the page: a promise
that re-checks every 50 ms); nothing sleeps to let a race settle.
Chromium runs headless, without sandbox or GPU, on a temporary profile,
with --remote-debugging-port=0 (the port it picked is read from the
profile's DevToolsActivePort).  Chromium and the server are killed at
the end whatever happens.  Exit: 0 pass, 1 fail, 77 skip (no chromium).
"""
import argparse
import base64
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

T0 = time.monotonic()
DEADLINE = T0 + 75  # the whole test; meson's timeout is above it


class Fail(Exception):
    pass


def log(msg):
    print(f"[{time.monotonic() - T0:5.1f}s] {msg}", flush=True)


def left(limit):
    """seconds to wait: @limit, or what is left of the whole test"""
    rest = DEADLINE - time.monotonic()
    if rest <= 0:
        raise Fail("the test ran out of time")
    return min(limit, rest)


# ------------------------------------------------------------ WebSocket

class WebSocket:
    """A client for one ws:// URL on 127.0.0.1: text frames, masked."""

    def __init__(self, url, timeout):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not m:
            raise Fail(f"bad DevTools URL {url}")
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv(timeout)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise Fail(f"DevTools refused the WebSocket: {head[:200]!r}")

    def _recv(self, timeout):
        self.sock.settimeout(max(0.01, timeout))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise Fail("DevTools did not answer in time")
        if not data:
            raise Fail("DevTools closed the connection (did chromium crash?)")
        return data

    def _need(self, n, until):
        while len(self.buf) < n:
            self.buf += self._recv(until - time.monotonic())
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data = text.encode()
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        self.sock.sendall(head + mask + body)

    def recv(self, timeout):
        """one whole text message"""
        until = time.monotonic() + timeout
        parts = []
        while True:
            b0, b1 = self._need(2, until)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._need(2, until))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._need(8, until))[0]
            payload = self._need(n, until)
            op = b0 & 0x0F
            if op == 8:
                raise Fail("DevTools closed the WebSocket")
            if op in (9, 10):  # ping / pong: chromium does not ping us
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class DevTools:
    """The browser endpoint; commands for a tab go with its sessionId."""

    def __init__(self, url):
        self.ws = WebSocket(url, left(10))
        self.next_id = 0

    def call(self, method, params=None, session=None, timeout=15):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        until = time.monotonic() + left(timeout)
        while True:
            reply = json.loads(self.ws.recv(max(0.01, until - time.monotonic())))
            if reply.get("id") != self.next_id:
                continue  # an event: none is needed
            if "error" in reply:
                raise Fail(f"{method}: {reply['error']}")
            return reply.get("result", {})


class Tab:
    def __init__(self, dt, name, url, width=1200, height=760):
        self.dt, self.name = dt, name
        self.context = dt.call("Target.createBrowserContext")["browserContextId"]
        self.target = dt.call("Target.createTarget", {
            "url": "about:blank", "browserContextId": self.context,
            "width": width, "height": height})["targetId"]
        self.session = dt.call("Target.attachToTarget", {
            "targetId": self.target, "flatten": True})["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.enable")
        self.call("Page.navigate", {"url": url})
        self.closed = False

    def call(self, method, params=None, timeout=15):
        return self.dt.call(method, params, self.session, timeout)

    def eval(self, expr, timeout=15):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                           "awaitPromise": True}, timeout + 5)
        if "exceptionDetails" in r:
            raise Fail(f"tab {self.name}: page script failed: "
                       f"{json.dumps(r['exceptionDetails'])[:400]}")
        return r["result"].get("value")

    def wait(self, what, cond, timeout=15):
        """wait in the page until the JS expression @cond (over `s`, the
        page state) is true; returns the state that satisfied it"""
        ms = int(left(timeout) * 1000)
        r = self.eval(f"""(async () => {{
            const t0 = Date.now();
            for (;;) {{
                let s = null;
                try {{ s = ({STATE})(); }} catch (e) {{ s = null; }}
                if (s && ({cond})) return {{ ok: true, s }};
                if (Date.now() - t0 > {ms}) return {{ ok: false, s }};
                await new Promise(r => setTimeout(r, 50));
            }}
        }})()""", ms / 1000 + 5)
        if not r or not r.get("ok"):
            raise Fail(f"tab {self.name}: {what} within {ms / 1000:.0f} s; page state: "
                       f"{json.dumps(r and r.get('s'))[:1500]}")
        return r["s"]

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"}, 30)["data"]
        png = base64.b64decode(data)
        if not png.startswith(b"\x89PNG") or len(png) < 10000:
            raise Fail(f"tab {self.name}: the screenshot is not a real PNG ({len(png)} bytes)")
        with open(path, "wb") as f:
            f.write(png)
        log(f"screenshot {path} ({len(png)} bytes)")

    def close(self):
        if not self.closed:
            self.dt.call("Target.closeTarget", {"targetId": self.target})
            self.closed = True


# the page state, read from the DOM (what a person sees)
STATE = """() => {
  const q = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const text = (root, sel) => { const e = root.querySelector(sel); return e ? e.textContent : null; };
  return {
    conn: document.getElementById('conn').dataset.state,
    connText: document.getElementById('conn').textContent,
    user: document.getElementById('user').textContent,
    view: document.getElementById('view-memory').hidden ? 'runs' : 'memory',
    cards: q('.card').map(c => ({
      id: c.dataset.id, user: c.dataset.user, state: c.dataset.state,
      agent: text(c, '.agent'), input: text(c, '.input'), result: text(c, '.result'),
      pct: Number(c.querySelector('[role=progressbar]').getAttribute('aria-valuenow')),
      width: c.querySelector('[role=progressbar] > div').style.width })),
    contexts: q('#ctx tbody tr[data-user]').map(r => ({
      user: r.dataset.user, points: Number(r.dataset.points), me: r.classList.contains('me'),
      bytes: Number(r.dataset.bytes),
      plot: r.querySelectorAll('svg polyline').length })),
    registries: q('[data-registry]').map(r => {
      const path = [];  /* the types it sits under, root first */
      for (let li = r.closest('li'); li; li = li.parentElement.closest('li'))
        path.unshift(li.querySelector(':scope > .type').textContent);
      return { name: r.dataset.registry, path, keys: q('tr[data-key]', r).map(k => k.dataset.key) };
    }),
  };
}"""


# ------------------------------------------------------------ processes

def spawn_server(path, port, tmp, n):
    """the server on @port (0: any); its process and port"""
    err = open(os.path.join(tmp, f"server{n}.err"), "w+")
    p = subprocess.Popen([path, "--port", str(port)], stdout=subprocess.PIPE,
                         stderr=err, text=True, start_new_session=True)
    p.err = err
    until = time.monotonic() + left(15)
    while time.monotonic() < until:
        r, _, _ = select.select([p.stdout], [], [], max(0.01, until - time.monotonic()))
        if r:
            line = p.stdout.readline()
            m = re.match(r"listening on http://127\.0\.0\.1:(\d+)/", line)
            if m:
                return p, int(m.group(1))
            if not line:
                break
    p.kill()
    p.wait()
    err.seek(0)
    raise Fail(f"the server did not start: {err.read()[-500:]}")


def stop_server(p):
    """SIGINT and wait; the server's last stats line"""
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=left(15))
    except subprocess.TimeoutExpired:
        raise Fail("the server did not stop within 15 s of SIGINT")
    p.err.seek(0)
    err = p.err.read()
    if rc != 0:
        raise Fail(f"the server exited with {rc}: {err[-800:]}")
    m = re.search(r"(\d+) sessions, (\d+) runs, \d+ events sent, (\d+) leaked context bytes, "
                  r"(\d+) leaked instances", err)
    if not m:
        raise Fail(f"no stats line from the server: {err[-800:]}")
    return tuple(int(x) for x in m.groups())


def find_chromium(arg):
    for name in ([arg] if arg else []) + [os.environ.get("CHROMIUM", ""), "chromium",
                                         "chromium-browser", "google-chrome"]:
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def start_chromium(binary, tmp):
    profile = os.path.join(tmp, "profile")
    os.mkdir(profile)
    env = dict(os.environ, HOME=tmp, XDG_CONFIG_HOME=os.path.join(tmp, "config"),
               XDG_CACHE_HOME=os.path.join(tmp, "cache"))
    out = open(os.path.join(tmp, "chromium.log"), "w+")
    p = subprocess.Popen([
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1", "--no-first-run", "--no-default-browser-check",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
        "--disable-features=Translate,MediaRouter,OptimizationHints", "--mute-audio",
        "--hide-scrollbars", "--password-store=basic", "--use-mock-keychain",
        "--window-size=1200,760", "about:blank"],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True)
    p.out = out
    # the port chromium picked, in the profile once its endpoint listens
    active = os.path.join(profile, "DevToolsActivePort")
    until = time.monotonic() + left(30)
    while time.monotonic() < until:
        if p.poll() is not None:
            out.seek(0)
            raise Fail(f"chromium exited with {p.returncode} at start: {out.read()[-1500:]}")
        try:
            with open(active) as f:
                lines = f.read().split("\n")
            if len(lines) >= 2 and lines[0].isdigit() and lines[1].startswith("/devtools/"):
                return p, f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        except FileNotFoundError:
            pass
        time.sleep(0.05)  # polling a file chromium writes: no event to wait on
    out.seek(0)
    raise Fail(f"chromium's DevTools endpoint did not come up in 30 s: {out.read()[-1500:]}")


def kill_group(p, name):
    if p is None or p.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            log(f"{name} ignored {sig.name}")


# ------------------------------------------------------------ the test

def check_cards(s, mine, other, want):
    """@s: a tab's state; its cards all carry @mine in their input and
    belong to its user; none carries @other; @want: {input: (state, text)}"""
    user = s["user"]
    if not re.fullmatch(r"u\d+", user or ""):
        raise Fail(f"the page shows no user id: {user!r}")
    inputs = sorted(c["input"] for c in s["cards"])
    if inputs != sorted(want):
        raise Fail(f"user {user}: cards {inputs}, wanted {sorted(want)}")
    for c in s["cards"]:
        if other in c["input"] or mine not in c["input"]:
            raise Fail(f"user {user} shows a card of the other user: {c}")
        if c["user"] != user:
            raise Fail(f"user {user} shows a card of user {c['user']}: {c}")
        state, text = want[c["input"]]
        if c["state"] != state or c["result"] != text:
            raise Fail(f"user {user}: card {c} is not {state} with {text!r}")
        if state == "completed" and (c["pct"] != 100 or c["width"] != "100%"):
            raise Fail(f"user {user}: completed card without a full bar: {c}")


def run(args, tmp):
    chromium = find_chromium(args.chromium)
    if not chromium:
        print("SKIP: no chromium (tools/dev installs Debian's chromium)")
        return 77
    procs = {}
    try:
        server, port = spawn_server(args.server, 0, tmp, 1)
        procs["server"] = server
        log(f"server on port {port}")
        browser, url = start_chromium(chromium, tmp)
        procs["chromium"] = browser
        log(f"chromium up ({url})")
        dt = DevTools(url)
        procs["devtools"] = dt
        version = dt.call("Browser.getVersion")["product"]
        log(f"browser {version}")

        nonce = f"{os.getpid()}x{int(time.time() * 1000) % 100000}"
        a_in, a_fail, b_in, b_in2 = (f"alpha-{nonce}", f"alpha-fail-{nonce}",
                                     f"beta-{nonce}", f"beta-two-{nonce}")
        base = f"http://127.0.0.1:{port}/"
        a = Tab(dt, "A", f"{base}?run=echo&input={a_in}")
        b = Tab(dt, "B", f"{base}?run=echo&input={b_in}&run=fail&input={b_in2}")

        # 1-2: the URL's runs, one from the form, cards per user
        sa = a.wait("the URL's echo run completes",
                    "s.conn === 'connected' && s.cards.length === 1 && "
                    "s.cards[0].state === 'completed'")
        a.eval(f"""document.getElementById('agent').value = 'fail';
                   document.getElementById('input').value = '{a_fail}';
                   document.getElementById('run').click(); true""")
        sa = a.wait("the form's fail run shows its error",
                    "s.cards.length === 2 && s.cards.every(c => c.state === 'completed' || "
                    "c.state === 'error') && s.cards.some(c => c.state === 'error')")
        sb = b.wait("the URL's echo and fail runs finish",
                    "s.conn === 'connected' && s.cards.length === 2 && "
                    "s.cards.every(c => c.state === 'completed' || c.state === 'error')")
        check_cards(sa, "alpha", "beta", {a_in: ("completed", a_in),
                                          a_fail: ("error", "this agent always fails")})
        check_cards(sb, "beta", "alpha", {b_in: ("completed", b_in),
                                          b_in2: ("error", "this agent always fails")})
        if sa["user"] == sb["user"]:
            raise Fail(f"both tabs are user {sa['user']}")
        ua, ub = sa["user"], sb["user"]
        log(f"cards: A={ua} 2, B={ub} 2 (echo 100%, fail error in each)")

        # 3: the memory view lists both users, plots, the hierarchy
        a.eval("location.hash = '#memory'; true")
        sa = a.wait("the memory view shows both users with 3 reports each",
                    f"s.view === 'memory' && ['{ua}', '{ub}'].every(u => s.contexts.some("
                    "c => c.user === u && c.points >= 3 && c.plot === 1))", 20)
        me = [c for c in sa["contexts"] if c["me"]]
        if [c["user"] for c in me] != [ua]:
            raise Fail(f"tab A marks {me} as itself, wanted {ua}")
        regs = {r["name"]: r["keys"] for r in sa["registries"]}
        paths = {r["name"]: r["path"] for r in sa["registries"]}
        if regs.get("agents") != ["echo", "fail"]:
            raise Fail(f"the hierarchy lacks the agents registry with echo and fail: {regs}")
        if not {ua, ub} <= set(regs.get("sessions", [])):
            raise Fail(f"the sessions registry does not list both users: {regs}")
        if len(paths["agents"]) < 2 or paths["agents"][-1] != "agent":
            raise Fail(f"registry agents is not under its type chain (base -> agent) in the "
                       f"tree: {paths}")
        log(f"memory view: {[c['user'] for c in sa['contexts']]}, registries {paths}")
        # live: B runs echo with a 3,000-byte input (the agent keeps it in
        # B's context), A's view shows B's bytes grow within a report or two
        before = [c["bytes"] for c in sa["contexts"] if c["user"] == ub][0]
        big = "b" * 2990 + "-" + nonce[:9]
        b.eval(f"""document.getElementById('agent').value = 'echo';
                   document.getElementById('input').value = '{big}';
                   document.getElementById('run').click(); true""")
        b.wait("the big echo run completes", "s.cards.length === 3 && "
               "s.cards.filter(c => c.state === 'completed' && c.pct === 100).length === 2")
        sa = a.wait(f"A's memory view shows {ub}'s context grow by the 3,000-byte input",
                    f"s.contexts.some(c => c.user === '{ub}' && c.bytes >= {before} + 3000) && "
                    f"s.contexts.every(c => c.points >= 5)", 15)
        after = [c["bytes"] for c in sa["contexts"] if c["user"] == ub][0]
        log(f"live: {ub} {before} -> {after} bytes in A's view")
        b.screenshot(os.path.join(args.shots, "agent-page-runs.png"))
        a.screenshot(os.path.join(args.shots, "agent-page-memory.png"))

        # 4: B leaves, its context goes from A's view
        b.close()
        a.wait(f"user {ub} leaves the memory view after its tab closed",
               f"s.contexts.some(c => c.user === '{ua}') && "
               f"!s.contexts.some(c => c.user === '{ub}')", 10)
        log(f"tab B closed: {ub} gone from A's memory view")

        # 5: the server restarts; A shows it and comes back as a new user
        sessions, runs, leaked, instances = stop_server(server)
        procs.pop("server")
        a.wait("the page shows the lost connection", "s.conn === 'reconnecting'", 10)
        until = time.monotonic() + left(10)
        while True:  # the same port; another process may hold it briefly
            try:
                server, _ = spawn_server(args.server, port, tmp, 2)
                break
            except Fail:
                if time.monotonic() > until:
                    raise
        procs["server"] = server
        sa = a.wait("the page reconnects as a new user and watches again",
                    f"s.conn === 'connected' && /^u\\d+$/.test(s.user) && "
                    f"s.contexts.some(c => c.me)", 20)
        log(f"reconnected as {sa['user']} ({sa['connText']})")
        a.eval(f"""location.hash = '#runs';
                   document.getElementById('agent').value = 'echo';
                   document.getElementById('input').value = 'again-{nonce}';
                   document.getElementById('run').click(); true""")
        a.wait("a run after the reconnect completes",
               f"s.cards.some(c => c.input === 'again-{nonce}' && c.state === 'completed' "
               "&& c.pct === 100)")

        # 6: nothing leaked, in either server
        if sessions < 2 or runs < 4 or leaked or instances:
            raise Fail(f"first server: {sessions} sessions, {runs} runs, {leaked} leaked "
                       f"bytes, {instances} leaked instances")
        sessions2, runs2, leaked2, instances2 = stop_server(server)
        procs.pop("server")
        if runs2 < 1 or leaked2 or instances2:
            raise Fail(f"second server: {runs2} runs, {leaked2} leaked bytes, "
                       f"{instances2} leaked instances")
        log(f"servers stopped: {sessions}+{sessions2} sessions, {runs}+{runs2} runs, "
            "0 leaked bytes, 0 leaked instances")
        print(f"PASS in {time.monotonic() - T0:.1f} s")
        return 0
    finally:
        if "devtools" in procs:
            procs["devtools"].ws.close()
        kill_group(procs.get("chromium"), "chromium")
        kill_group(procs.get("server"), "the server")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True, help="the ureg-agent-server executable")
    ap.add_argument("--shots", default=".", help="directory for the screenshots")
    ap.add_argument("--chromium", help="browser binary (default: $CHROMIUM, chromium)")
    args = ap.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="ureg-browser-")
    rc = 1
    try:
        rc = run(args, tmp)
    except Fail as e:
        print(f"FAIL: {e}")
        for name in ("server1.err", "server2.err", "chromium.log"):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    tail = f.read()[-1200:]
                print(f"--- {name} (tail)\n{tail}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
