#!/usr/bin/env python3
"""Kernel crossings per request through qgate (issue #11; docs/performance.md).

Starts one mockq and one qgate (one worker, one pool, one backend), runs bench/qbench
against qgate for each client count, and reports per request: io_uring_enter calls
(/stats gateway ring_enters), loop turns, context switches of every qgate thread
(/proc/PID/task/*/status, voluntary + nonvoluntary) and qgate's CPU (utime, stime from
/proc/PID/stat), with requests counted by qgate (/stats pools[0].requests).

  python3 scripts/crossings.py [--build build] [--seconds 5] [--clients 1,16,64]
                               [--connections 4] [--payload 32] [--json]
"""
import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"crossings: {what} exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"crossings: {what} not listening on {port}")


def stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.load(r)


def ctx_switches(pid):
    vol = nonvol = 0
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        nonvol += int(line.split()[1])
        except OSError:
            pass	# a thread that just ended
    return vol, nonvol


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])	# utime, stime (fields 14 and 15)


def sample(pid, sport):
    s = stats(sport)
    gw = s["gateway"]
    return {"enters": gw.get("ring_enters", 0), "turns": gw.get("loop_turns", 0),
            "requests": s["pools"][0]["requests"], "ctx": ctx_switches(pid),
            "cpu": cpu_ticks(pid)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--payload", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    b = os.path.abspath(args.build)
    qgate, mockq, qbench = (os.path.join(b, p) for p in
                            ("gateway/qgate", "bench/mockq", "bench/qbench"))
    hz = os.sysconf("SC_CLK_TCK")
    tmp = tempfile.mkdtemp(prefix="qgate-crossings-")
    procs = []
    rows = []
    try:
        mport, gport, sport = free_port(), free_port(), free_port()
        m = subprocess.Popen([mockq, "--port", str(mport)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        procs.append(m)
        wait_port(mport, m, "mockq")
        cfg = {"listeners": [{"name": "main", "listen": f"127.0.0.1:{gport}", "pool": "p"}],
               "pools": [{"name": "p", "backends": [
                   {"name": "m1", "address": f"127.0.0.1:{mport}",
                    "connections": args.connections, "max_inflight": args.connections}],
                   "queue": {"max": 100000, "timeout_ms": 60000}}],
               "stats": {"listen": f"127.0.0.1:{sport}"},
               "limits": {"max_clients": 5000}, "log": {"level": "warn"}}
        with open(os.path.join(tmp, "qgate.json"), "w") as f:
            json.dump(cfg, f)
        g = subprocess.Popen([qgate, "-c", os.path.join(tmp, "qgate.json")],
                             stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(tmp, "qgate.log"), "w"))
        procs.append(g)
        wait_port(gport, g, "qgate")
        time.sleep(0.5)	# backend connections up
        # idle: what the loop costs with nothing to do (wakeups per second)
        a = sample(g.pid, sport)
        time.sleep(args.seconds)
        z = sample(g.pid, sport)
        idle = {"enters_per_s": (z["enters"] - a["enters"]) / args.seconds,
                "ctx_per_s": (sum(z["ctx"]) - sum(a["ctx"])) / args.seconds}
        for n in (int(x) for x in args.clients.split(",")):
            a = sample(g.pid, sport)
            out = subprocess.run([qbench, "--port", str(gport), "--conns", str(n),
                                  "--seconds", str(args.seconds), "--payload-bytes",
                                  str(args.payload), "--json"], capture_output=True,
                                 text=True, timeout=args.seconds + 60)
            z = sample(g.pid, sport)
            if out.returncode != 0:
                sys.exit(f"crossings: qbench failed: {out.stderr.strip()}")
            q = json.loads(out.stdout)
            if q["mismatches"] or q["errors"]:
                sys.exit(f"crossings: qbench saw mismatches/errors: {out.stdout}")
            # the two /stats requests between samples count too (a few turns each)
            reqs = z["requests"] - a["requests"]
            vol = z["ctx"][0] - a["ctx"][0]
            nonvol = z["ctx"][1] - a["ctx"][1]
            ut = (z["cpu"][0] - a["cpu"][0]) / hz * 1e6
            st = (z["cpu"][1] - a["cpu"][1]) / hz * 1e6
            rows.append({"clients": n, "requests": reqs, "req_per_s": q["requests_per_sec"],
                         "enters_per_req": (z["enters"] - a["enters"]) / reqs,
                         "turns_per_req": (z["turns"] - a["turns"]) / reqs,
                         "ctx_per_req": (vol + nonvol) / reqs, "vol_per_req": vol / reqs,
                         "nonvol_per_req": nonvol / reqs,
                         "user_us_per_req": ut / reqs, "sys_us_per_req": st / reqs,
                         "p99_us": q["latency_us"]["p99"], "mismatches": q["mismatches"]})
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"idle": idle, "load": rows}, indent=1))
        return
    print(f"idle ({args.seconds:g} s, 2 /stats reads included): "
          f"{idle['enters_per_s']:.1f} enters/s, {idle['ctx_per_s']:.1f} context switches/s")
    print("| clients | req/s | enters/req | turns/req | ctx sw/req (vol+invol) "
          "| CPU µs/req user / sys | p99 µs |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['clients']} | {r['req_per_s']:.0f} | {r['enters_per_req']:.2f} | "
              f"{r['turns_per_req']:.2f} | {r['ctx_per_req']:.2f} ({r['vol_per_req']:.2f}+"
              f"{r['nonvol_per_req']:.2f}) | {r['user_us_per_req']:.1f} / "
              f"{r['sys_us_per_req']:.1f} | {r['p99_us']:.0f} |")


if __name__ == "__main__":
    main()
