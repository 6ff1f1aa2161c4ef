#!/usr/bin/env python3
"""Compare, in one run on one machine: qbench direct to a backend, through HAProxy (TCP
mode) and through qgate, for small and large messages and several client counts.

Everything is started here on 127.0.0.1 and stopped at the end: two mockq backends, one
HAProxy balancing them round-robin, one qgate pooling them. Figures are ratios measured in
the same run, so they survive a noisy machine better than absolute numbers do.

usage: bench/compare.py [--build DIR] [--seconds S] [--quick] [--out FILE.md] [--json FILE]
                        [--plot FILE.png]

--plot draws each case's latency distribution (p50 .. max, log scale) for the three targets
side by side; it needs matplotlib (pip install matplotlib).
"""
import argparse
import json
import os
import shutil
import signal
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


def wait_port(port, proc, what, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"compare: {what} exited early (status {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"compare: {what} did not listen on {port} within {timeout}s")


def run_qbench(qbench, port, conns, seconds, payload):
    out = subprocess.run([qbench, "--port", str(port), "--conns", str(conns), "--seconds",
                          str(seconds), "--payload-bytes", str(payload), "--json"],
                         capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        sys.exit(f"compare: qbench failed against port {port}: {out.stderr.strip()}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if r["mismatches"] or r["errors"]:
        sys.exit(f"compare: qbench saw mismatches/errors against port {port}: {r}")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer cases, 2 s each")
    ap.add_argument("--out", help="write the markdown table here")
    ap.add_argument("--json", help="write every qbench result here")
    ap.add_argument("--plot", help="draw the latency distributions into this PNG")
    ap.add_argument("--max-inflight", type=int,
                    help="each backend's max_inflight in qgate (default: qgate's own, 1); "
                         "4 lets every connection carry a request, as before the limit")
    args = ap.parse_args()
    mockq = os.path.join(args.build, "bench", "mockq")
    qbench = os.path.join(args.build, "bench", "qbench")
    qgate = os.path.join(args.build, "gateway", "qgate")
    haproxy = shutil.which("haproxy")
    for p in (mockq, qbench, qgate):
        if not os.access(p, os.X_OK):
            sys.exit(f"compare: {p} missing: build first (meson setup build && ninja -C build)")
    if not haproxy:
        sys.exit("compare: haproxy not found (apt-get install haproxy)")
    secs = 2 if args.quick else args.seconds
    cases = [(1, 32), (16, 32), (256, 32), (16, 100_000)] if args.quick else \
        [(1, 32), (16, 32), (64, 32), (256, 32), (1000, 32), (1, 100_000), (16, 100_000),
         (4, 4_000_000)]

    tmp = tempfile.mkdtemp(prefix="qgate-bench-")
    procs = []
    try:
        m_ports = [free_port(), free_port()]
        for i, port in enumerate(m_ports):
            p = subprocess.Popen([mockq, "--port", str(port), "--name", f"m{i + 1}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_port(port, p, f"mockq m{i + 1}")
        h_port, g_port = free_port(), free_port()
        with open(os.path.join(tmp, "haproxy.cfg"), "w") as f:
            f.write("global\n  maxconn 4000\n  nbthread 1\n"
                    "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 120s\n"
                    "  timeout server 120s\n"
                    f"frontend fe\n  bind 127.0.0.1:{h_port}\n  default_backend be\n"
                    "backend be\n  balance roundrobin\n"
                    f"  server m1 127.0.0.1:{m_ports[0]}\n  server m2 127.0.0.1:{m_ports[1]}\n")
        p = subprocess.Popen([haproxy, "-f", os.path.join(tmp, "haproxy.cfg"), "-db"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        wait_port(h_port, p, "haproxy")
        cfg = {"listeners": [{"name": "main", "listen": f"127.0.0.1:{g_port}", "pool": "p"}],
               "pools": [{"name": "p", "backends": [
                   dict({"name": f"m{i + 1}", "address": f"127.0.0.1:{port}", "connections": 4},
                        **({"max_inflight": args.max_inflight} if args.max_inflight else {}))
                   for i, port in enumerate(m_ports)],
                   "queue": {"max": 100000, "timeout_ms": 60000}}],
               "limits": {"max_clients": 5000}, "log": {"level": "warn"}}
        with open(os.path.join(tmp, "qgate.json"), "w") as f:
            json.dump(cfg, f)
        p = subprocess.Popen([qgate, "-c", os.path.join(tmp, "qgate.json")],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "qgate.log"), "w"))
        procs.append(p)
        wait_port(g_port, p, "qgate")

        results = []
        for conns, payload in cases:
            row = {"conns": conns, "payload": payload}
            for name, port in (("direct", m_ports[0]), ("haproxy", h_port), ("qgate", g_port)):
                row[name] = run_qbench(qbench, port, conns, secs, payload)
            results.append(row)
            d, h, g = row["direct"], row["haproxy"], row["qgate"]
            print(f"{conns:>5} conns {payload:>8} B: direct {d['requests_per_sec']:>9.0f}/s  "
                  f"haproxy {h['requests_per_sec']:>9.0f}/s  qgate {g['requests_per_sec']:>9.0f}/s"
                  f"  qgate/haproxy {g['requests_per_sec'] / h['requests_per_sec']:.2f}",
                  flush=True)
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

    lines = ["| clients | payload | direct req/s | HAProxy req/s | qgate req/s | qgate / direct "
             "| qgate / HAProxy | p99 µs direct / HAProxy / qgate |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        d, h, g = r["direct"], r["haproxy"], r["qgate"]
        lines.append(
            f"| {r['conns']} | {r['payload']} B | {d['requests_per_sec']:.0f} | "
            f"{h['requests_per_sec']:.0f} | {g['requests_per_sec']:.0f} | "
            f"{g['requests_per_sec'] / d['requests_per_sec']:.2f} | "
            f"{g['requests_per_sec'] / h['requests_per_sec']:.2f} | "
            f"{d['latency_us']['p99']:.0f} / {h['latency_us']['p99']:.0f} / "
            f"{g['latency_us']['p99']:.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot)


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("compare: --plot needs matplotlib (pip install matplotlib)")
    marks = ["p50", "p90", "p99", "p999", "max"]
    labels = ["50%", "90%", "99%", "99.9%", "max"]
    cols = 4
    rows = (len(results) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, r in zip(axes.flat, results):
        for name, style in (("direct", "o-"), ("haproxy", "s--"), ("qgate", "^-")):
            lat = r[name]["latency_us"]
            ax.plot(labels, [lat[m] for m in marks], style, label=name)
        ax.set_yscale("log")
        ax.set_title(f"{r['conns']} clients, {r['payload']} B", fontsize=10)
        ax.set_ylabel("latency (µs)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(results):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("qbench latency percentiles: direct vs HAProxy vs qgate (same run)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
