#!/usr/bin/env python3
"""RSS of a fresh qgate per idle client: docs/deployment.md's sizing figure.

    bench/idle_rss.py [--build DIR] [--workers N] [--clients N]

Starts one mockq and a fresh qgate (nothing else has run in it), reads qgate's VmRSS, opens N
q connections that finish the handshake and stay idle, reads VmRSS again, and prints the
difference per client. compare.py's idle case measures a qgate that already served its
throughput cases, so its per-client figure understates what a fresh process grows by.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    sys.exit("idle_rss: no VmRSS")


def wait_port(port, proc):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"idle_rss: process exited early ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"idle_rss: nothing listens on {port}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--clients", type=int, default=5000)
    a = ap.parse_args()
    bport, gport = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="qgate-idle.")
    cfg = {"listeners": [{"name": "main", "listen": f"127.0.0.1:{gport}", "pool": "p"}],
           "pools": [{"name": "p", "backends": [{"name": "b1",
                                                  "address": f"127.0.0.1:{bport}"}]}],
           "limits": {"max_clients": a.clients + 100}, "workers": a.workers}
    path = os.path.join(tmp, "gw.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    m = subprocess.Popen([os.path.join(a.build, "bench/mockq"), "--port", str(bport),
                          "--name", "b1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    g = subprocess.Popen([os.path.join(a.build, "gateway/qgate"), "-c", path],
                         stderr=subprocess.DEVNULL)
    socks = []
    try:
        wait_port(bport, m)
        wait_port(gport, g)
        time.sleep(0.5)
        before = rss_kib(g.pid)
        for _ in range(a.clients):
            s = socket.create_connection(("127.0.0.1", gport))
            s.sendall(b"u:p\x06\x00")
            socks.append(s)
        for s in socks:
            if s.recv(1) != b"\x06":
                sys.exit("idle_rss: a handshake was refused")
        time.sleep(0.5)
        after = rss_kib(g.pid)
        print(f"workers={a.workers} clients={a.clients} rss_before={before} KiB "
              f"rss_after={after} KiB per_client={(after - before) * 1024 / a.clients:.0f} B")
    finally:
        for s in socks:
            s.close()
        g.terminate()
        m.terminate()
        g.wait()
        m.wait()


if __name__ == "__main__":
    main()
