#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""etcd_harness.py - a real etcd (one member or a cluster) on 127.0.0.1
for the etcd tests, with free ports and a temporary data dir, always
killed at the end (normal exit, failure, or the SIGTERM of meson's timeout).

    etcd_harness.py run -- PROGRAM ARGS...
        starts one etcd, runs PROGRAM with UREG_ETCD_URL set, stops etcd,
        exits with PROGRAM's status (77, skipped, when there is no etcd)

As a module: Etcd(members=1 or 3), .start(), .kill(i), .restart(i),
.url(i), .urls(), .stop(); put/get/compact/delete over the JSON gateway.
Python standard library only.
"""
import atexit
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ETCD = shutil.which("etcd")
_live = []


def _cleanup():
    for e in list(_live):
        e.stop()


atexit.register(_cleanup)


def _on_term(signum, frame):
    raise SystemExit(128 + signum)  # runs finally: blocks and atexit


signal.signal(signal.SIGTERM, _on_term)


def free_ports(n):
    """n distinct free TCP ports (bound together, then released)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def post(url, path, body, timeout=5):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


def wait_until(what, fn, timeout=30.0, step=0.02):
    """Poll fn() until it returns a true value; fail after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (OSError, ValueError, KeyError, urllib.error.URLError) as ex:
            last = ex
        time.sleep(step)
    raise AssertionError("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))


class Etcd:
    def __init__(self, members=1):
        if not ETCD:
            raise FileNotFoundError("etcd")
        self.n = members
        self.dir = tempfile.mkdtemp(prefix="ureg-etcd-")
        ports = free_ports(2 * members)
        self.client = ports[:members]
        self.peer = ports[members:]
        self.procs = [None] * members
        self.names = ["m%d" % i for i in range(members)]
        _live.append(self)

    def url(self, i=0):
        return "http://127.0.0.1:%d" % self.client[i]

    def urls(self, first=0):
        order = list(range(first, self.n)) + list(range(first))
        return ",".join(self.url(i) for i in order)

    def _spawn(self, i, state):
        cluster = ",".join("%s=http://127.0.0.1:%d" % (self.names[j], self.peer[j])
                           for j in range(self.n))
        log = open(os.path.join(self.dir, "%s.log" % self.names[i]), "ab")
        self.procs[i] = subprocess.Popen(
            [ETCD, "--name", self.names[i],
             "--data-dir", os.path.join(self.dir, self.names[i]),
             "--listen-client-urls", self.url(i),
             "--advertise-client-urls", self.url(i),
             "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer[i],
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer[i],
             "--initial-cluster", cluster,
             "--initial-cluster-state", state,
             "--initial-cluster-token", "ureg-test",
             "--heartbeat-interval", "50", "--election-timeout", "500",
             "--log-level", "error"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def _ready(self, i):
        def ok():
            if self.procs[i].poll() is not None:
                raise AssertionError("etcd %s exited: see %s" % (self.names[i], self.dir))
            return "header" in post(self.url(i), "/v3/kv/range", {"key": b64("ready")}, 1)
        wait_until("etcd %s to answer" % self.names[i], ok, 30)

    def start(self, tries=3):
        for t in range(tries):
            for i in range(self.n):
                self._spawn(i, "new")
            try:
                for i in range(self.n):
                    self._ready(i)
                return self
            except AssertionError:
                # a free port was taken between free_ports() and etcd's
                # bind: start over on new ports with a clean data dir
                for i in range(self.n):
                    self.kill(i)
                if t == tries - 1:
                    raise
                shutil.rmtree(self.dir, ignore_errors=True)
                os.makedirs(self.dir)
                ports = free_ports(2 * self.n)
                self.client, self.peer = ports[:self.n], ports[self.n:]

    def kill(self, i=0):
        p = self.procs[i]
        if p and p.poll() is None:
            p.kill()
            p.wait()
        self.procs[i] = None

    def restart(self, i=0):
        self.kill(i)
        self._spawn(i, "existing")
        self._ready(i)

    def stop(self):
        for i in range(self.n):
            self.kill(i)
        if self in _live:
            _live.remove(self)
        shutil.rmtree(self.dir, ignore_errors=True)

    # the JSON gateway (any live member)
    def _any(self, path, body):
        err = None
        for i in range(self.n):
            if self.procs[i] is None:
                continue
            try:
                return post(self.url(i), path, body)
            except (OSError, urllib.error.URLError) as ex:
                err = ex
        raise err or OSError("no etcd member running")

    def put(self, key, value):
        r = self._any("/v3/kv/put", {"key": b64(key), "value": b64(value)})
        return int(r["header"]["revision"])

    def delete(self, key):
        r = self._any("/v3/kv/deleterange", {"key": b64(key)})
        return int(r["header"]["revision"])

    def revision(self):
        r = self._any("/v3/kv/range", {"key": b64("any")})
        return int(r["header"]["revision"])

    def compact(self, rev):
        self._any("/v3/kv/compaction", {"revision": str(rev), "physical": True})


def main():
    if len(sys.argv) < 4 or sys.argv[1] != "run" or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    if not ETCD:
        print("etcd not installed (tools/dev installs etcd-server): skipped")
        return 77
    e = Etcd(1)
    try:
        e.start()
        env = dict(os.environ, UREG_ETCD_URL=e.url(0))
        return subprocess.call(sys.argv[3:], env=env)
    finally:
        e.stop()


if __name__ == "__main__":
    sys.exit(main())
