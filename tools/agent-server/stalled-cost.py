#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What non-reading clients cost ureg-agent-server, with nothing else running.

Starts the server (a fresh one per run, extra flags passed through), opens
--clients WebSocket connections that send 60 KB echo runs as fast as their
sockets take them and never read, and after --seconds prints the server's
CPU time (/proc/PID/stat), the runs it did (GET /stats), its RSS, and the
kernel's TCP memory (/proc/net/sockstat "mem", the clients' side included).
Figures are median [min-max] of --repeat runs.

  tools/agent-server/stalled-cost.py --server build/tools/agent-server/ureg-agent-server \\
      [--clients 50] [--seconds 3] [--repeat 3] [-- --sock-buf none]

Standard library only.  Exit status 0, or 1 when the server did not start.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

INPUT = 60000


def server_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_mem_mb():
    for line in open("/proc/net/sockstat"):
        if line.startswith("TCP:"):
            f = line.split()
            return int(f[f.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    return 0.0


def ws_open(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ureg-agents\r\n\r\n")
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = s.recv(1)
        if not chunk:
            raise RuntimeError("handshake refused")
        reply += chunk
    if not reply.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(reply.decode(errors="replace"))
    s.setblocking(False)
    return s


def one_run(args, extra):
    srv = subprocess.Popen([args.server, "--port", "0"] + extra,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = srv.stdout.readline()
    if "listening on" not in line:
        srv.kill()
        sys.exit(f"stalled-cost: the server did not start: {line!r}")
    port = int(line.rsplit(":", 1)[1].strip("/\n"))
    req = json.dumps({"run": "echo", "input": "s" * INPUT}, separators=(",", ":")).encode()
    n = len(req)
    frame = bytes([0x81, 0x80 | 126, n >> 8, n & 255, 0, 0, 0, 0]) + req  # zero mask
    socks = [[ws_open(port), 0] for _ in range(args.clients)]
    cpu0 = server_cpu(srv.pid)
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        sent = False
        for c in socks:
            try:
                w = c[0].send(frame[c[1]:])
                c[1] = (c[1] + w) % len(frame)
                sent = True
            except BlockingIOError:
                pass
        if not sent:
            time.sleep(0.02)
    st = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats"))
    out = {"cpu_s": server_cpu(srv.pid) - cpu0, "runs": st["runs"],
           "rss_mb": st["rss_bytes"] / 1e6, "tcp_mem_mb": tcp_mem_mb()}
    for c in socks:
        c[0].close()
    srv.send_signal(2)
    srv.wait()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    runs = [one_run(args, extra) for _ in range(args.repeat)]
    print(f"{args.clients} non-reading clients, {args.seconds:g} s, server flags "
          f"{' '.join(extra) or '(defaults)'}, median [min-max] of {args.repeat}:")
    for key, fmt in (("cpu_s", "%.2f"), ("runs", "%d"), ("rss_mb", "%.1f"),
                     ("tcp_mem_mb", "%.1f")):
        v = [r[key] for r in runs]
        print(f"  {key}: {fmt % statistics.median(v)} [{fmt % min(v)}-{fmt % max(v)}]")


if __name__ == "__main__":
    main()
