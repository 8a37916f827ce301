#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""test_etcd_fleet.py - a fleet of three ureg-agent-server processes that
follow one configuration through a real etcd (issue 13).

    test_etcd_fleet.py --server PATH --tools DIR [--only NAME]

Each case is a function whose name reads as a sentence; they run in order
(later ones build on the fleet the first ones started).  Every wait polls
an observable state (a server's GET /stats "config", etcd's revision)
until it holds, with a deadline that fails the case; no sleep stands in
for a race.  Exit 0 all passed, 1 a case failed, 77 no etcd (skipped).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

import etcd_harness as H

DEADLINE = 30.0
PREFIX = "/ureg-fleet/"
KEY = PREFIX + "config.yaml"

CONFIG = """registries:
  - name: agents
    type: agent
    required: [planner]
    entries:
      - key: planner
        kind: factory
        scope: context
        provider: demo.object
        params: {label: planner-%(v)d, bytes: 4096}
      - key: supervisor
        kind: singleton
        provider: demo.object
        params: {label: supervisor-%(v)d}
  - name: tools
    type: tool
    entries:
      - key: calculator
        kind: singleton
        provider: demo.object
        params: {label: calculator}
"""

BAD = CONFIG.replace("provider: demo.object\n        params: {label: supervisor",
                     "provider: no.such.provider\n        params: {label: supervisor")


def config(v):
    return CONFIG % {"v": v}


class Server:
    def __init__(self, exe, endpoints, workdir, name):
        self.name = name
        self.err = open(os.path.join(workdir, name + ".err"), "wb")
        self.proc = subprocess.Popen([exe, "--port", "0", "--etcd", endpoints,
                                      "--prefix", PREFIX],
                                     stdout=subprocess.PIPE, stderr=self.err)
        line = self.proc.stdout.readline().decode()
        m = re.search(r":(\d+)/", line)
        if not m:
            raise AssertionError("%s did not start: %r" % (name, line))
        self.port = int(m.group(1))

    def config(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/stats" % self.port, timeout=5) as r:
            return json.loads(r.read())["config"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return self.proc.returncode


class Fleet:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="ureg-fleet-")
        self.etcd = None
        self.servers = []

    def tool(self, name, *argv, expect=0):
        # the demo types and providers (tools/config/demo.c) the servers use
        r = subprocess.run([os.path.join(self.args.tools, name), "--demo"] + list(argv),
                           capture_output=True, text=True, timeout=60)
        if r.returncode != expect:
            raise AssertionError("%s %s: exit %d (expected %d)\n%s%s" % (
                name, " ".join(argv), r.returncode, expect, r.stdout, r.stderr))
        return r

    def publish(self, text, *extra, expect=0):
        path = os.path.join(self.dir, "publish.yaml")
        with open(path, "w") as f:
            f.write(text)
        r = self.tool("ureg-publish", "--quiet", path, "--etcd", self.etcd.urls(),
                      "--prefix", PREFIX, *extra, expect=expect)
        m = re.search(r"published revision (\d+)", r.stdout)
        return int(m.group(1)) if m else r

    def wait_all(self, what, pred, servers=None):
        for s in servers or self.servers:
            H.wait_until("%s on %s" % (what, s.name), lambda: pred(s.config()), DEADLINE)

    def start_servers(self, n=3):
        # each server lists a different member first (a cluster spreads)
        for i in range(n):
            self.servers.append(Server(self.args.server, self.etcd.urls(i % self.etcd.n),
                                       self.dir, "server%d" % i))

    def stop_servers(self):
        """Stops every server (SIGTERM); asserts each exited 0, which in the
        sanitizer build also means LeakSanitizer found nothing."""
        codes = {s.name: s.stop() for s in self.servers}
        self.servers = []
        bad = {n: c for n, c in codes.items() if c != 0}
        assert not bad, "servers exited with %r (see their stderr below)" % bad


# ---------------------------------------------------------------- cases

def servers_start_up_from_the_document_in_etcd(f):
    f.etcd = H.Etcd(1).start()
    f.rev = f.publish(config(1))
    f.start_servers(3)
    f.wait_all("revision %d" % f.rev, lambda c: c["revision"] == f.rev and c["applied"] == 1)
    for s in f.servers:
        c = s.config()
        assert c["generation"] == f.rev, c
        assert c["rejected"] == 0, c


def a_valid_put_is_applied_by_all_three_servers(f):
    f.rev = f.publish(config(2))
    f.wait_all("revision %d" % f.rev, lambda c: c["revision"] == f.rev)
    r = f.tool("ureg-inspect", "--no-instances", "--etcd", f.etcd.url(), "--prefix", PREFIX)
    assert "supervisor" in r.stdout and "gen %d" % f.rev in r.stdout, r.stdout


def an_invalid_put_is_rejected_by_all_three_which_keep_the_old_generation(f):
    good = f.rev
    r = f.publish(BAD, expect=1)  # ureg-publish refuses it ...
    assert "unknown provider 'no.such.provider'" in r.stdout, r.stdout
    assert H.post(f.etcd.url(), "/v3/kv/range", {"key": H.b64(KEY)})["kvs"][0]["mod_revision"] \
        == str(good), "nothing was written"
    bad = f.etcd.put(KEY, BAD)  # ... so put it behind its back
    f.wait_all("rejection of %d" % bad, lambda c: c["rejected_revision"] == bad)
    for s in f.servers:
        c = s.config()
        assert c["revision"] == good and c["generation"] == good, c
        assert c["rejected"] == 1, c
        assert "config.yaml@%d:" % bad in c["last_error"] and "no.such.provider" in c["last_error"], c
    with open(os.path.join(f.dir, "server0.err")) as e:
        assert "revision %d rejected" % bad in e.read()
    # ureg-check sees the bad document in etcd
    r = f.tool("ureg-check", "--etcd", f.etcd.url(), "--prefix", PREFIX, expect=1)
    assert "config.yaml@%d:" % bad in r.stdout, r.stdout
    f.rev = f.publish(config(3))
    f.wait_all("revision %d" % f.rev, lambda c: c["revision"] == f.rev)


def a_deleted_key_is_rejected_and_the_last_document_still_served(f):
    gone = f.etcd.delete(KEY)
    f.wait_all("rejection of the delete", lambda c: c["rejected_revision"] == gone)
    for s in f.servers:
        assert s.config()["revision"] == f.rev
    f.rev = f.publish(config(4), "--revision", "0")
    f.wait_all("revision %d" % f.rev, lambda c: c["revision"] == f.rev)


def a_second_operator_who_checked_an_older_revision_cannot_overwrite(f):
    r = f.tool("ureg-check", "--etcd", f.etcd.url(), "--prefix", PREFIX)
    checked = int(re.search(r"@(\d+): ok", r.stdout).group(1))
    assert checked == f.rev, r.stdout
    plan_file = os.path.join(f.dir, "plan.yaml")
    with open(plan_file, "w") as fh:
        fh.write(config(5))
    r = f.tool("ureg-check", "--etcd", f.etcd.url(), "--prefix", PREFIX, "--plan", plan_file)
    assert "~ agents/planner" in r.stdout and "~ agents/supervisor" in r.stdout, r.stdout
    # operator B publishes first
    f.rev = f.publish(config(5), "--revision", str(checked))
    # operator A, who checked `checked`, is refused
    r = f.publish(config(6), "--revision", str(checked), expect=3)
    assert "changed since revision %d" % checked in r.stderr, r.stderr
    f.wait_all("revision %d" % f.rev, lambda c: c["revision"] == f.rev)


def servers_catch_up_after_etcd_is_killed_and_restarted(f):
    f.etcd.kill(0)
    f.wait_all("the watch to drop", lambda c: not c["connected"])
    f.etcd.restart(0)
    f.rev = f.publish(config(7))
    f.wait_all("revision %d" % f.rev, lambda c: c["revision"] == f.rev and c["connected"])
    for s in f.servers:
        assert s.config()["reconnects"] >= 1


def a_compacted_revision_is_read_again(f):
    before = {s.name: s.config()["compactions"] for s in f.servers}
    for s in f.servers:  # frozen: they cannot see what follows
        s.proc.send_signal(signal.SIGSTOP)
    f.etcd.kill(0)  # their watches break while they are frozen
    f.etcd.restart(0)
    f.publish(config(8))
    f.rev = f.publish(config(9))
    f.etcd.compact(f.rev)
    for s in f.servers:
        s.proc.send_signal(signal.SIGCONT)
    f.wait_all("revision %d" % f.rev, lambda c: c["revision"] == f.rev)
    for s in f.servers:
        assert s.config()["compactions"] > before[s.name], s.config()
    f.stop_servers()
    f.etcd.stop()


def updates_continue_when_one_member_of_a_3_member_cluster_is_killed(f):
    f.etcd = H.Etcd(3).start()
    f.rev = f.publish(config(10))
    f.start_servers(3)  # server i talks to member i first
    f.wait_all("revision %d" % f.rev, lambda c: c["revision"] == f.rev)
    f.etcd.kill(0)
    # the survivors keep a quorum: ureg-publish and the servers move on
    f.rev = f.publish(config(11))
    f.wait_all("revision %d" % f.rev, lambda c: c["revision"] == f.rev and c["connected"])
    f.rev = f.publish(config(12))
    f.wait_all("revision %d" % f.rev, lambda c: c["revision"] == f.rev)
    assert f.servers[0].config()["reconnects"] >= 1, "server0's member was killed"
    f.stop_servers()
    f.etcd.stop()


CASES = [servers_start_up_from_the_document_in_etcd,
         a_valid_put_is_applied_by_all_three_servers,
         an_invalid_put_is_rejected_by_all_three_which_keep_the_old_generation,
         a_deleted_key_is_rejected_and_the_last_document_still_served,
         a_second_operator_who_checked_an_older_revision_cannot_overwrite,
         servers_catch_up_after_etcd_is_killed_and_restarted,
         a_compacted_revision_is_read_again,
         updates_continue_when_one_member_of_a_3_member_cluster_is_killed]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--tools", required=True)
    args = ap.parse_args()
    if not H.ETCD:
        print("etcd not installed (tools/dev installs etcd-server): skipped")
        return 77
    f = Fleet(args)
    failed = 0
    try:
        for case in CASES:
            t0 = time.monotonic()
            try:
                case(f)
                print("ok   %-75s %.1f s" % (case.__name__, time.monotonic() - t0), flush=True)
            except Exception:
                failed += 1
                print("FAIL %s" % case.__name__, flush=True)
                traceback.print_exc()
                break  # later cases build on this one
    finally:
        try:
            f.stop_servers()
        except AssertionError:
            failed = failed or 1
            traceback.print_exc()
        if f.etcd:
            f.etcd.stop()
        if failed:
            for name in sorted(os.listdir(f.dir)):
                if name.endswith(".err"):
                    with open(os.path.join(f.dir, name)) as e:
                        print("---- %s\n%s" % (name, e.read()[-3000:]))
        subprocess.run(["rm", "-rf", f.dir])
    print("%d passed, %d failed" % (len(CASES) - failed if not failed else CASES.index(case), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
