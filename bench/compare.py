#!/usr/bin/env python3
"""Compare, in one run on one machine, qbench's clients straight to mockq backends (direct),
through the floor (bench/floor: a bare io_uring byte forwarder, the physical limit), through
HAProxy (TCP mode, one thread) and through qgate (default settings), case by case (issue #11).

Cases (--cases, comma-separated; default all):
  small   32 B echo, 1/16/64/256 clients, one backend
  large   1 MiB answers to small requests (.mock.bytes), 4 clients, one backend
  mixed   3 backends; 8 light clients (32 B echo) and 2 heavy ones (.mock.sleep[5], which
          blocks the whole mockq like a busy q) at the same time; the light clients' figures.
          HAProxy balances leastconn; direct puts the 10 clients on the backends round robin.
  bound   3 backends, every query .mock.sleep[1], 64 clients; direct is ONE client on one
          backend (the rate one q connection gives)
  idle    N clients open and handshake a connection and hold it (--idle N, default 9000:
          HAProxy and the floor need 2 descriptors per client under ulimit -n 20000); the
          proxies' resident memory while they hold them

Per run and proxy: requests/s, proxy CPU µs per request split user/system (utime/stime
deltas of /proc/PID/stat over the run, all threads, divided by the requests answered),
p50/p99 latency, peak RSS (VmHWM, reset before each run through /proc/PID/clear_refs when
allowed), context switches per request (voluntary + involuntary, all threads) and, when
qgate's /stats `gateway` object has a counter of ring enters (any key holding "enter"),
io_uring_enter calls per request. Every figure is the median of --reps repetitions.
Any mismatched, missing or error answer aborts the whole run (exit 1).

usage: bench/compare.py [--build DIR] [--seconds S] [--reps N] [--quick] [--cases LIST]
                        [--idle N] [--out FILE.md] [--json FILE] [--plot PREFIX]
                        [--max-inflight N] [--floor-mode copy|zc|splice]
                        [--qgate-limits JSON] [--backend-unix]

--floor-mode: how the floor moves answers (bench/floor --mode; default copy: recv and send
from the same provided buffer; zc: zero-copy send from it; splice: through a pipe).
--qgate-limits: a JSON object merged into qgate's "limits" (e.g. '{"zero_copy_bytes":0}' to
measure the copying path against the default on the same build).
--backend-unix: mockq also listens on q's abstract socket @/tmp/kx.PORT, and qgate and the
floor reach it there (address unix:PORT), as on a host where the gateway runs next to its q
processes. HAProxy 2.6 cannot name that socket (abns@ pads the name to the whole sun_path,
and the connection is closed), so HAProxy and direct clients stay on TCP. Clients always
connect over TCP.
--plot PREFIX writes PREFIX-throughput.png and PREFIX-latency.png (needs matplotlib).
--quick: 1.5 s runs, small at 1 and 64 clients, idle 1000, one repetition unless --reps.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
TARGETS = ("direct", "floor", "haproxy", "qgate")
PROXIES = ("floor", "haproxy", "qgate")
ALL_CASES = ("small", "large", "mixed", "bound", "idle")


def die(msg):
    print(f"compare: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            die(f"{what} exited early (status {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    die(f"{what} did not listen on {port} within {timeout}s")


# ------------------------------------------------------------------ /proc readings

def proc_pids(pid):
    """The process and its descendants (HAProxy may fork; threads are counted per process)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def proc_sample(pid):
    """CPU seconds (user, system) of every thread, context switches, VmRSS/VmHWM in KiB."""
    user = sys_ = ctx = rss = hwm = 0
    for p in proc_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11]) / TICK       # utime, field 14: all threads of p
            sys_ += int(fields[12]) / TICK       # stime, field 15
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                            ctx += int(line.split()[1])
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            pass
    return {"user": user, "sys": sys_, "ctx": ctx, "rss_kib": rss, "hwm_kib": hwm}


def reset_hwm(pid):
    for p in proc_pids(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def ring_enters(stats_port):
    """qgate's count of io_uring_enter calls from /stats, or None when it has none."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/stats", timeout=5) as r:
            gw = json.load(r).get("gateway", {})
    except (OSError, ValueError):
        return None
    for k, v in gw.items():
        if "enter" in k and isinstance(v, (int, float)):
            return v
    return None


# ------------------------------------------------------------------ the processes

class Env:
    """n mockq backends (each started with mock_args) and the three proxies in front of them."""

    def __init__(self, args, n, balance, tmp):
        self.args, self.procs, self.tmp = args, [], tmp
        self.backends = [free_port() for _ in range(n)]
        for i, port in enumerate(self.backends):
            self.spawn([args.mockq, "--port", str(port), "--name", f"m{i + 1}"] +
                       (["--unix"] if args.backend_unix else []), port, f"mockq m{i + 1}")
        # how qgate and the floor name a backend; HAProxy and direct always use TCP
        self.via = [f"unix:{b}" if args.backend_unix else f"127.0.0.1:{b}"
                    for b in self.backends]
        self.port = {"direct": self.backends[0]}
        self.pid = {}
        # the floor
        fp = free_port()
        p = self.spawn([args.floor, "--mode", args.floor_mode, f"127.0.0.1:{fp}"] + self.via,
                       fp, "floor")
        self.port["floor"], self.pid["floor"] = fp, p.pid
        # HAProxy, TCP mode, one thread
        hp = free_port()
        cfg = os.path.join(tmp, f"haproxy-{hp}.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  maxconn 9900\n  nbthread 1\n"
                    "defaults\n  mode tcp\n  maxconn 9900\n  timeout connect 2s\n"
                    "  timeout client 600s\n  timeout server 600s\n"
                    f"frontend fe\n  bind 127.0.0.1:{hp}\n  default_backend be\n"
                    f"backend be\n  balance {balance}\n" +
                    "".join(f"  server m{i + 1} 127.0.0.1:{b}\n"
                            for i, b in enumerate(self.backends)))
        p = self.spawn([args.haproxy, "-f", cfg, "-db"], hp, "haproxy")
        self.port["haproxy"], self.pid["haproxy"] = hp, p.pid
        # qgate, default settings apart from --max-inflight
        gp, self.stats_port = free_port(), free_port()
        be = [{"name": f"m{i + 1}", "address": a} for i, a in enumerate(self.via)]
        for b in be:
            b.update(args.qgate_backend)
        if args.max_inflight:
            for b in be:
                b["max_inflight"] = args.max_inflight
        cfg = {"listeners": [{"name": "main", "listen": f"127.0.0.1:{gp}", "pool": "p"}],
               "pools": [{"name": "p", "backends": be}],
               "stats": {"listen": f"127.0.0.1:{self.stats_port}"},
               "log": {"level": "warn"}}
        if args.qgate_limits:
            cfg["limits"] = args.qgate_limits
        path = os.path.join(tmp, f"qgate-{gp}.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        p = self.spawn([args.qgate, "-c", path], gp, "qgate",
                       stderr=open(os.path.join(tmp, f"qgate-{gp}.log"), "w"))
        self.port["qgate"], self.pid["qgate"] = gp, p.pid

    def spawn(self, cmd, port, what, stderr=subprocess.DEVNULL):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        self.procs.append(p)
        wait_port(port, p, what)
        return p

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ------------------------------------------------------------------ running qbench

def qbench_cmd(args, ports, conns, secs, extra=()):
    return [args.qbench, "--port", ",".join(str(p) for p in ports), "--conns", str(conns),
            "--seconds", str(secs), "--json", *extra]


def qbench_result(out, err, rc, what):
    if rc != 0:
        die(f"qbench failed ({what}), status {rc}: {err.strip()}")
    r = json.loads(out.strip().splitlines()[-1])
    if r["mismatches"] or r["errors"] or r["unexpected"] or r["unanswered"]:
        die(f"qbench saw mismatches/errors ({what}): {r}")
    return r


def measured(env, target, fn):
    """Run fn() and return its qbench result with the proxy's figures over that window."""
    pid = env.pid.get(target)
    if pid:
        reset_hwm(pid)
        before = proc_sample(pid)
        enters0 = ring_enters(env.stats_port) if target == "qgate" else None
    r = fn()
    if pid:
        after = proc_sample(pid)
        n = max(r.get("requests_all", r["requests"]), 1)   # mixed: light and heavy
        r["cpu_user_us"] = (after["user"] - before["user"]) / n * 1e6
        r["cpu_sys_us"] = (after["sys"] - before["sys"]) / n * 1e6
        r["ctx_per_req"] = (after["ctx"] - before["ctx"]) / n
        r["hwm_mib"] = after["hwm_kib"] / 1024
        if target == "qgate" and enters0 is not None:
            enters1 = ring_enters(env.stats_port)
            if enters1 is not None:
                r["enters_per_req"] = (enters1 - enters0) / n
    return r


def run_simple(args, env, target, conns, secs, extra=(), ports=None):
    ports = ports or [env.port[target]]

    def go():
        out = subprocess.run(qbench_cmd(args, ports, conns, secs, extra), capture_output=True,
                             text=True, timeout=secs + 90)
        return qbench_result(out.stdout, out.stderr, out.returncode, f"{target}, {conns} conns")
    return measured(env, target, go)


def run_mixed(args, env, target, secs):
    """8 light clients and 2 heavy ones at once; the light clients' result, heavy's rate."""
    if target == "direct":
        b = env.backends
        light_ports, heavy_ports = b, b[8 % len(b):] + b[:8 % len(b)]  # clients 0-7, 8-9
    else:
        light_ports = heavy_ports = [env.port[target]]

    def go():
        heavy = subprocess.Popen(qbench_cmd(args, heavy_ports, 2, secs, ("--sleep-ms", "5")),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        light = subprocess.run(qbench_cmd(args, light_ports, 8, secs), capture_output=True,
                               text=True, timeout=secs + 90)
        hout, herr = heavy.communicate(timeout=secs + 90)
        h = qbench_result(hout, herr, heavy.returncode, f"{target}, mixed heavy")
        r = qbench_result(light.stdout, light.stderr, light.returncode, f"{target}, mixed light")
        r["heavy_requests_per_sec"] = h["requests_per_sec"]
        r["heavy_latency_us"] = h["latency_us"]
        r["requests_all"] = r["requests"] + h["requests"]
        return r
    r = measured(env, target, go)
    return r


def run_idle(args, env, target, n):
    """n clients hold handshaken connections; the proxy's RSS then (KiB), before and peak."""
    pid = env.pid[target]
    reset_hwm(pid)
    before = proc_sample(pid)
    p = subprocess.Popen(qbench_cmd(args, [env.port[target]], n, 600, ("--hold",)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith('{"held"'):
        p.kill()
        die(f"idle clients through {target} not set up: {p.stderr.read().strip()}")
    time.sleep(1.0)
    held = proc_sample(pid)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    if p.returncode != 0:
        die(f"idle clients through {target}: status {p.returncode}: {err.strip()}")
    time.sleep(1.0)     # let the proxy close its side before the next one starts
    return {"clients": n, "rss_before_mib": before["rss_kib"] / 1024,
            "rss_held_mib": held["rss_kib"] / 1024, "hwm_mib": held["hwm_kib"] / 1024,
            "kib_per_client": (held["rss_kib"] - before["rss_kib"]) / n}


# ------------------------------------------------------------------ medians

def median_result(runs):
    """Median of every numeric field (recursively) over the repetitions."""
    out = {}
    for k, v in runs[0].items():
        if isinstance(v, dict):
            out[k] = median_result([r[k] for r in runs])
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and \
                all(k in r for r in runs):
            out[k] = statistics.median(r[k] for r in runs)
        else:
            out[k] = v
    return out


# ------------------------------------------------------------------ the cases

def case_list(args):
    small = [1, 64] if args.quick else [1, 16, 64, 256]
    out = []
    for name in args.cases:
        if name == "small":
            out += [{"case": "small", "label": f"{c} × 32 B", "conns": c, "backends": 1}
                    for c in small]
        elif name == "large":
            out.append({"case": "large", "label": "4 × 1 MiB answer", "conns": 4,
                        "backends": 1})
        elif name == "mixed":
            out.append({"case": "mixed", "label": "mixed: 8 light + 2 × 5 ms", "conns": 8,
                        "backends": 3})
        elif name == "bound":
            out.append({"case": "bound", "label": "bound: 64 × 1 ms, 3 backends",
                        "conns": 64, "backends": 3})
        elif name == "idle":
            out.append({"case": "idle", "label": f"{args.idle} idle clients",
                        "conns": args.idle, "backends": 3})
    return out


def run_case(args, env, c, secs):
    rep_results = {t: [] for t in TARGETS}
    for rep in range(args.reps):
        for t in TARGETS:
            if c["case"] == "small":
                r = run_simple(args, env, t, c["conns"], secs)
            elif c["case"] == "large":
                r = run_simple(args, env, t, 4, secs, ("--answer-bytes", str(1 << 20)))
            elif c["case"] == "mixed":
                r = run_mixed(args, env, t, secs)
            elif c["case"] == "bound":
                if t == "direct":   # one connection to one backend: the unit of the target
                    r = run_simple(args, env, t, 1, secs, ("--sleep-ms", "1"))
                else:
                    r = run_simple(args, env, t, 64, secs, ("--sleep-ms", "1"))
            else:
                if t == "direct":
                    continue
                r = run_idle(args, env, t, c["conns"])
            rep_results[t].append(r)
        print(f"  {c['label']}: repetition {rep + 1}/{args.reps} done", flush=True)
    return {t: median_result(rs) for t, rs in rep_results.items() if rs}


# ------------------------------------------------------------------ reporting

def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def cpu(r):
    if r is None or "cpu_user_us" not in r:
        return None
    return r["cpu_user_us"] + r["cpu_sys_us"]


def tables(results):
    lines = ["### Every target", "",
             "| case | target | req/s | CPU µs/req user | CPU µs/req sys | p50 µs | p99 µs "
             "| peak RSS MiB | ctx sw/req | io_uring_enter/req |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in results:
        if c["case"] == "idle":
            continue
        for t in TARGETS:
            r = c["res"][t]
            lines.append(
                f"| {c['label']} | {t} | {fmt(r['requests_per_sec'])} | "
                f"{fmt(r.get('cpu_user_us'), 1)} | {fmt(r.get('cpu_sys_us'), 1)} | "
                f"{fmt(r['latency_us']['p50'])} | {fmt(r['latency_us']['p99'])} | "
                f"{fmt(r.get('hwm_mib'), 1)} | {fmt(r.get('ctx_per_req'), 2)} | "
                f"{fmt(r.get('enters_per_req'), 2)} |")
    lines += ["", "### qgate's ratios (same run)", "",
              "| case | req/s ÷ floor | ÷ HAProxy | ÷ direct | CPU/req ÷ floor | ÷ HAProxy "
              "| p99 ÷ floor | ÷ HAProxy | ÷ direct | peak RSS ÷ floor | ÷ HAProxy |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in results:
        if c["case"] == "idle":
            continue
        res = c["res"]
        g, f, h, d = res["qgate"], res["floor"], res["haproxy"], res["direct"]
        rps = {k: v["requests_per_sec"] for k, v in res.items()}
        p99 = {k: v["latency_us"]["p99"] for k, v in res.items()}
        lines.append(
            f"| {c['label']} | {fmt(ratio(rps['qgate'], rps['floor']), 2)} | "
            f"{fmt(ratio(rps['qgate'], rps['haproxy']), 2)} | "
            f"{fmt(ratio(rps['qgate'], rps['direct']), 2)} | "
            f"{fmt(ratio(cpu(g), cpu(f)), 2)} | {fmt(ratio(cpu(g), cpu(h)), 2)} | "
            f"{fmt(ratio(p99['qgate'], p99['floor']), 2)} | "
            f"{fmt(ratio(p99['qgate'], p99['haproxy']), 2)} | "
            f"{fmt(ratio(p99['qgate'], p99['direct']), 2)} | "
            f"{fmt(ratio(g.get('hwm_mib'), f.get('hwm_mib')), 2)} | "
            f"{fmt(ratio(g.get('hwm_mib'), h.get('hwm_mib')), 2)} |")
    for c in results:
        if c["case"] != "idle":
            continue
        lines += ["", f"### {c['label']} (RSS while held, MiB)", "",
                  "| proxy | RSS before | RSS held | peak RSS | KiB per client |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for t in PROXIES:
            r = c["res"][t]
            lines.append(f"| {t} | {fmt(r['rss_before_mib'], 1)} | {fmt(r['rss_held_mib'], 1)} "
                         f"| {fmt(r['hwm_mib'], 1)} | {fmt(r['kib_per_client'], 2)} |")
        res = c["res"]
        lines.append(f"\nqgate ÷ HAProxy (RSS held): "
                     f"{fmt(ratio(res['qgate']['rss_held_mib'], res['haproxy']['rss_held_mib']), 2)}"
                     f"; qgate ÷ floor: "
                     f"{fmt(ratio(res['qgate']['rss_held_mib'], res['floor']['rss_held_mib']), 2)}")
    lines += ["", "### The issue's targets", "", "| target | measured | met |",
              "| --- | --- | --- |"]
    lines += targets(results)
    return "\n".join(lines)


def targets(results):
    out = []

    def row(what, value, ok):
        out.append(f"| {what} | {value} | {'–' if ok is None else ('yes' if ok else 'no')} |")
    c = next((c for c in results if c["case"] == "small" and c["conns"] == 64), None)
    if c:
        g, h, f = (c["res"][t] for t in ("qgate", "haproxy", "floor"))
        rh, rf = ratio(cpu(g), cpu(h)), ratio(cpu(g), cpu(f))
        rr = ratio(g["requests_per_sec"], h["requests_per_sec"])
        row("64 × 32 B: CPU/req ≤ 0.8× HAProxy", f"{fmt(cpu(g), 1)} / {fmt(cpu(h), 1)} µs = "
            f"{fmt(rh, 2)}×", rh is not None and rh <= 0.8)
        row("64 × 32 B: CPU/req ≤ 1.2× floor", f"{fmt(cpu(g), 1)} / {fmt(cpu(f), 1)} µs = "
            f"{fmt(rf, 2)}×", rf is not None and rf <= 1.2)
        row("64 × 32 B: req/s ≥ 1.0× HAProxy", f"{fmt(g['requests_per_sec'])} / "
            f"{fmt(h['requests_per_sec'])} = {fmt(rr, 2)}×", rr is not None and rr >= 1.0)
    c = next((c for c in results if c["case"] == "large"), None)
    if c:
        g, d = c["res"]["qgate"], c["res"]["direct"]
        rd = ratio(g["requests_per_sec"], d["requests_per_sec"])
        row("4 × 1 MiB: req/s ≥ 0.8× direct", f"{fmt(g['requests_per_sec'])} / "
            f"{fmt(d['requests_per_sec'])} = {fmt(rd, 2)}×", rd is not None and rd >= 0.8)
    c = next((c for c in results if c["case"] == "mixed"), None)
    if c:
        g, h = c["res"]["qgate"], c["res"]["haproxy"]
        rh = ratio(g["latency_us"]["p99"], h["latency_us"]["p99"])
        row("mixed: light p99 ≤ 0.2× HAProxy", f"{fmt(g['latency_us']['p99'])} / "
            f"{fmt(h['latency_us']['p99'])} µs = {fmt(rh, 2)}×", rh is not None and rh <= 0.2)
    c = next((c for c in results if c["case"] == "bound"), None)
    if c:
        g, d = c["res"]["qgate"], c["res"]["direct"]
        rd = ratio(g["requests_per_sec"], d["requests_per_sec"])
        row("bound: req/s ≥ 2.7× one direct connection", f"{fmt(g['requests_per_sec'])} / "
            f"{fmt(d['requests_per_sec'])} = {fmt(rd, 2)}×", rd is not None and rd >= 2.7)
    c = next((c for c in results if c["case"] == "idle"), None)
    if c:
        g, h = c["res"]["qgate"], c["res"]["haproxy"]
        rh = ratio(g["rss_held_mib"], h["rss_held_mib"])
        row(f"{c['conns']} idle clients: RSS ≤ 1.5× HAProxy", f"{fmt(g['rss_held_mib'], 1)} / "
            f"{fmt(h['rss_held_mib'], 1)} MiB = {fmt(rh, 2)}×", rh is not None and rh <= 1.5)
    row("no mismatched answer in any run", "0 (any mismatch aborts the run)", True)
    return out


def plot(results, prefix):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        die("--plot needs matplotlib (python3 -m venv bench/.venv && "
            "bench/.venv/bin/pip install matplotlib; run compare.py with bench/.venv/bin/python)")
    styles = {"direct": "o-", "floor": "d:", "haproxy": "s--", "qgate": "^-"}
    small = [c for c in results if c["case"] == "small"]
    if small:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [c["conns"] for c in small]
        for t in TARGETS:
            ax.plot(xs, [c["res"][t]["requests_per_sec"] for c in small], styles[t], label=t)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("clients (32 B echo, one backend)")
        ax.set_ylabel("requests/s (median)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax.set_title("Throughput against clients, same run")
        fig.tight_layout()
        fig.savefig(f"{prefix}-throughput.png", dpi=90)
        print(f"plot: {prefix}-throughput.png")
    lat = [c for c in results if c["case"] != "idle"]
    if lat:
        marks = ["p50", "p90", "p99", "p999", "max"]
        labels = ["50%", "90%", "99%", "99.9%", "max"]
        cols = 4
        rows = (len(lat) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
        for ax, c in zip(axes.flat, lat):
            for t in TARGETS:
                ax.plot(labels, [c["res"][t]["latency_us"][m] for m in marks], styles[t],
                        label=t)
            ax.set_yscale("log")
            ax.set_title(c["label"] + (" (light clients)" if c["case"] == "mixed" else ""),
                         fontsize=9)
            ax.set_ylabel("latency (µs)")
            ax.grid(True, which="both", alpha=0.3)
        for ax in list(axes.flat)[len(lat):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=8)
        fig.suptitle("Latency percentiles (medians of the repetitions): direct, floor, "
                     "HAProxy, qgate")
        fig.tight_layout()
        fig.savefig(f"{prefix}-latency.png", dpi=90)
        print(f"plot: {prefix}-latency.png")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--reps", type=int, help="repetitions, medians reported (default 3; "
                    "1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="a smoke run in under 2 minutes")
    ap.add_argument("--cases", default=",".join(ALL_CASES),
                    help="comma-separated subset of " + ",".join(ALL_CASES))
    ap.add_argument("--idle", type=int, help="idle clients (default 9000; 1000 with --quick)")
    ap.add_argument("--out", help="write the markdown tables here")
    ap.add_argument("--json", help="write every median result here")
    ap.add_argument("--plot", metavar="PREFIX", help="write PREFIX-throughput.png and "
                    "PREFIX-latency.png")
    ap.add_argument("--qgate-backend", type=json.loads, default={}, metavar="JSON",
                    help="keys added to every backend object of qgate's config, e.g. "
                    "'{\"connections\": 8}' (default: none)")
    ap.add_argument("--max-inflight", type=int, help="each backend's max_inflight in qgate "
                    "(default: qgate's own)")
    ap.add_argument("--floor-mode", choices=("copy", "zc", "splice"), default="copy",
                    help="how the floor moves answers (default copy)")
    ap.add_argument("--backend-unix", action="store_true",
                    help="qgate and the floor reach the backends over q's abstract unix "
                    "socket (unix:PORT); HAProxy 2.6 cannot (its abns@ pads the name), "
                    "so it and direct stay on TCP")
    ap.add_argument("--qgate-limits", type=json.loads, help="JSON object: qgate's limits "
                    "(default: qgate's own)")
    args = ap.parse_args()
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in args.cases:
        if c not in ALL_CASES:
            ap.error(f"unknown case {c!r} (known: {', '.join(ALL_CASES)})")
    args.reps = args.reps or (1 if args.quick else 3)
    args.idle = args.idle or (1000 if args.quick else 9000)
    if args.reps < 1 or not 1 <= args.idle <= 9500:
        ap.error("--reps must be ≥ 1 and --idle 1..9500 (two descriptors per client "
                 "in HAProxy and the floor)")
    secs = 1.5 if args.quick else args.seconds
    args.mockq = os.path.join(args.build, "bench", "mockq")
    args.qbench = os.path.join(args.build, "bench", "qbench")
    args.floor = os.path.join(args.build, "bench", "floor")
    args.qgate = os.path.join(args.build, "gateway", "qgate")
    args.haproxy = shutil.which("haproxy")
    for p in (args.mockq, args.qbench, args.floor, args.qgate):
        if not os.access(p, os.X_OK):
            die(f"{p} missing: build first (meson setup build && ninja -C build)")
    if not args.haproxy:
        die("haproxy not found (apt-get install haproxy)")

    tmp = tempfile.mkdtemp(prefix="qgate-bench-")
    results = []
    t0 = time.time()
    try:
        for c in case_list(args):
            env = Env(args, c["backends"], "leastconn" if c["case"] in ("mixed", "bound")
                      else "roundrobin", tmp)
            try:
                c["res"] = run_case(args, env, c, secs)
            finally:
                env.stop()
            results.append(c)
            r = c["res"]
            if c["case"] == "idle":
                print(f"{c['label']}: RSS held MiB " + "  ".join(
                    f"{t} {r[t]['rss_held_mib']:.1f}" for t in PROXIES), flush=True)
            else:
                print(f"{c['label']}: req/s " + "  ".join(
                    f"{t} {r[t]['requests_per_sec']:.0f}" for t in TARGETS) +
                    "  p99 µs " + "  ".join(f"{t} {r[t]['latency_us']['p99']:.0f}"
                                            for t in TARGETS), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = tables(results)
    if args.backend_unix:
        text = ("qgate and the floor reach the backends over q's unix socket (unix:PORT); "
                "HAProxy and direct over TCP.\n\n" + text)
    print(text)
    print(f"\n{len(results)} cases, {args.reps} repetition(s), {secs} s per run, "
          f"{time.time() - t0:.0f} s in all; no mismatched answer")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
