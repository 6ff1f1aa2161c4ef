#!/usr/bin/env python3
"""Interleaved A/B of two qgate "limits" settings on one build, against direct, for one answer
size: one mockq, two qgates in front of it (A and B), and qbench runs of --seconds each in the
order A, B, direct, then direct, B, A, ... for --pairs rounds, so that load from elsewhere on
the machine falls on all three alike. Prints, per target, the median requests/s (and every
run's) and qgate's median CPU µs per request, user and system (/proc/PID/stat). Any
mismatched, missing or error answer aborts (exit 1).

usage: bench/ab_limits.py [--build DIR] [--pairs N] [--seconds S] [--conns C]
                          [--answer-bytes N] [--a JSON] [--b JSON]
e.g. the large-answer path of issue #11:
  bench/ab_limits.py --a '{"zero_copy_bytes":0}' --b '{"zero_copy_bytes":65536}'
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    for _ in range(200):    # 10 s
        if proc.poll() is not None:
            sys.exit(f"ab_limits: {what} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"ab_limits: {what} did not listen on {port}")


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--answer-bytes", type=int, default=1 << 20)
    ap.add_argument("--a", type=json.loads, default={"zero_copy_bytes": 0})
    ap.add_argument("--b", type=json.loads, default={})
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="qgate-ab-")
    procs = []
    mp = free_port()
    mq = subprocess.Popen([os.path.join(args.build, "bench", "mockq"), "--port", str(mp),
                           "--name", "m1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(mq)
    wait_port(mp, mq, "mockq")
    targets = {"direct": (mp, None)}
    try:
        for name, limits in (("A", args.a), ("B", args.b)):
            gp = free_port()
            cfg = {"listeners": [{"name": "main", "listen": f"127.0.0.1:{gp}", "pool": "p"}],
                   "pools": [{"name": "p", "backends": [{"name": "m1",
                                                         "address": f"127.0.0.1:{mp}"}]}],
                   "log": {"level": "warn"}, "limits": limits}
            path = os.path.join(tmp, f"{name}.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            g = subprocess.Popen([os.path.join(args.build, "gateway", "qgate"), "-c", path],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(g)
            wait_port(gp, g, f"qgate {name}")
            targets[name] = (gp, g.pid)
        res = {t: [] for t in ("A", "B", "direct")}
        for i in range(args.pairs):
            for t in (("A", "B", "direct") if i % 2 == 0 else ("direct", "B", "A")):
                port, pid = targets[t]
                c0 = cpu(pid) if pid else (0, 0)
                out = subprocess.run([os.path.join(args.build, "bench", "qbench"), "--port",
                                      str(port), "--conns", str(args.conns), "--seconds",
                                      str(args.seconds), "--json", "--answer-bytes",
                                      str(args.answer_bytes)], capture_output=True, text=True,
                                     timeout=args.seconds + 90)
                if out.returncode:
                    sys.exit(f"ab_limits: qbench failed on {t}: {out.stderr.strip()}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if r["mismatches"] or r["errors"] or r["unexpected"] or r["unanswered"]:
                    sys.exit(f"ab_limits: qbench saw mismatches/errors on {t}: {r}")
                c1 = cpu(pid) if pid else (0, 0)
                n = max(r["requests"], 1)
                res[t].append((r["requests_per_sec"], (c1[0] - c0[0]) / n * 1e6,
                               (c1[1] - c0[1]) / n * 1e6))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
    d = statistics.median(x[0] for x in res["direct"])
    for t, label in (("A", json.dumps(args.a)), ("B", json.dumps(args.b)), ("direct", "")):
        rs = res[t]
        rps = statistics.median(x[0] for x in rs)
        line = (f"{t} {label}: req/s median {rps:.0f} ({rps / d:.2f}x direct; runs "
                f"{[round(x[0]) for x in rs]})")
        if t != "direct":
            line += (f", qgate CPU us/req user {statistics.median(x[1] for x in rs):.1f} "
                     f"sys {statistics.median(x[2] for x in rs):.1f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
