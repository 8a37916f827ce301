#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tools/fleet.py - the fleet demo of `tools/dev fleet` (issue 13).

    tools/fleet.py [--build build] [--publishes 20] [--servers 3]

Starts one etcd on 127.0.0.1 (free ports, a temp data dir), three
ureg-agent-server processes that follow <prefix>config.yaml through it
(--etcd URL --prefix P), then publishes a changed configuration N times
with ureg-publish (check, then compare-and-swap).  For every publish and
server it takes the time from the moment ureg-publish sent the write
("sent at", CLOCK_REALTIME) to the moment that server finished applying
the revision (GET /stats -> config.applied_at_ns, CLOCK_REALTIME of the
same machine): etcd's commit, the watch event, validation and the
all-or-nothing reload.  Prints each server's median and max, and the
fleet's (the slowest server of each publish), then how long
ureg_config_etcd_stop takes while a watch waits for a change
(tests/etcd/etcd_stop_time.c).  etcd and the servers are stopped at the
end, also on failure.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "etcd"))
import etcd_harness as H  # noqa: E402

PREFIX = "/ureg-fleet-demo/"

CONFIG = """registries:
  - name: agents
    type: agent
    required: [planner]
    entries:
      - key: planner
        kind: factory
        scope: context
        provider: demo.object
        params: {label: planner-v%(v)d, bytes: 4096}
      - key: researcher
        kind: factory
        scope: transient
        provider: demo.object
        params: {label: researcher, bytes: 1024}
      - key: supervisor
        kind: singleton
        provider: demo.object
        params: {label: supervisor-v%(v)d}
  - name: tools
    type: tool
    entries:
      - key: calculator
        kind: singleton
        provider: demo.object
        params: {label: calculator}
"""


def stats(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/stats" % port, timeout=5) as r:
        return json.loads(r.read())["config"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--publishes", type=int, default=20)
    ap.add_argument("--servers", type=int, default=3)
    a = ap.parse_args()
    server_exe = os.path.join(a.build, "tools", "agent-server", "ureg-agent-server")
    publish_exe = os.path.join(a.build, "tools", "config", "ureg-publish")
    if not H.ETCD:
        print("fleet: no etcd (tools/dev installs etcd-server)", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="ureg-fleet-")
    etcd = H.Etcd(1)
    procs = []
    try:
        etcd.start()
        path = os.path.join(work, "config.yaml")

        def publish(v):
            with open(path, "w") as f:
                f.write(CONFIG % {"v": v})
            r = subprocess.run([publish_exe, "--demo", "--quiet", path, "--etcd", etcd.url(),
                                "--prefix", PREFIX], capture_output=True, text=True, timeout=60)
            m = re.search(r"published revision (\d+) over \d+ \(sent at (\d+)\.(\d+)\)", r.stdout)
            if r.returncode or not m:
                raise SystemExit("ureg-publish failed:\n" + r.stdout + r.stderr)
            return int(m.group(1)), int(m.group(2)) * 10**9 + int(m.group(3))

        rev, _ = publish(0)
        ports = []
        for i in range(a.servers):
            err = open(os.path.join(work, "server%d.err" % i), "wb")
            p = subprocess.Popen([server_exe, "--port", "0", "--etcd", etcd.url(),
                                  "--prefix", PREFIX], stdout=subprocess.PIPE, stderr=err)
            procs.append(p)
            ports.append(int(re.search(r":(\d+)/", p.stdout.readline().decode()).group(1)))
        for port in ports:
            H.wait_until("server :%d at revision %d" % (port, rev),
                         lambda: stats(port)["revision"] == rev, 30)
        print("etcd %s, %d servers on ports %s, prefix %s" %
              (etcd.url(), a.servers, ", ".join(map(str, ports)), PREFIX))
        lat = [[] for _ in ports]
        for v in range(1, a.publishes + 1):
            rev, sent = publish(v)
            for i, port in enumerate(ports):
                st = H.wait_until("server :%d at revision %d" % (port, rev),
                                  lambda: (lambda s: s if s["revision"] == rev else None)(stats(port)),
                                  30, step=0.002)
                lat[i].append((st["applied_at_ns"] - sent) / 1e6)
            print("publish %2d: revision %d applied by all %d servers after %s ms" %
                  (v, rev, len(ports), " / ".join("%.1f" % lat[i][-1] for i in range(len(ports)))))
        print()
        print("time from ureg-publish's write to the server's applied reload, %d publishes:"
              % a.publishes)
        for i, port in enumerate(ports):
            print("  server%d (:%d)  median %6.1f ms   max %6.1f ms" %
                  (i, port, statistics.median(lat[i]), max(lat[i])))
        fleet = [max(lat[i][k] for i in range(len(ports))) for k in range(a.publishes)]
        print("  fleet (slowest server of each publish)  median %6.1f ms   max %6.1f ms" %
              (statistics.median(fleet), max(fleet)))
        for port in ports:
            st = stats(port)
            assert st["rejected"] == 0 and st["applied"] == a.publishes + 1, st
        # how promptly a source stops while its watch waits for a change
        stop_exe = os.path.join(a.build, "tests", "etcd", "etcd_stop_time")
        if os.path.exists(stop_exe):
            etcd.put("/ureg-stop-time/config.yaml", "registries: []\n")
            subprocess.run([stop_exe, etcd.url(), "5"], check=True)
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        etcd.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
