#!/usr/bin/env python3
"""test_bench — keeps the bench of issue #11 working (docs/performance.md).

- bench/floor relays qbench's load to two mockq backends for a second: zero mismatches,
  requests answered, bytes counted both ways, no error, exit 0 on SIGTERM; and to a mockq
  on q's abstract unix socket (unix:PORT).
- Stress: 64 connections with random token sizes up to 1 MiB, then 1 MiB answers, through a
  floor with only 16 provided buffers of 4 KiB (so recvs find the ring empty and sends are
  split): every answer exact.
- Closing: 20 clients handshaken through the floor reach the backends; once they close, the
  floor's backend connections go too. A backend that closes (.mock.drop) closes the client;
  a backend that is down closes the client.
- qbench's new modes fail when they must: a stand-in q whose answers to --answer-bytes have
  one byte changed, one byte missing or the other connection's token makes qbench report
  mismatches and exit 1 (and exit 0 when its answers are right); bad usage is status 2.
- bench/compare.py --quick --reps 1 --cases small runs end to end (HAProxy included), over
  TCP and with --backend-unix.

Usage: MOCKQ_BIN=... QBENCH_BIN=... QGATE_BIN=... FLOOR_BIN=... QGATE_SRC=... test_bench.py"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

ENV = {k: os.environ.get(k, "") for k in ("MOCKQ_BIN", "QBENCH_BIN", "QGATE_BIN", "FLOOR_BIN",
                                          "QGATE_SRC")}
PROCS = []


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    stop_all()
    sys.exit(1)


def stop_all():
    for p in reversed(PROCS):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    PROCS.clear()


def start(cmd, ready):
    """Start cmd and wait (10 s at most) for the stdout line starting with `ready`."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    PROCS.append(p)
    line = p.stdout.readline()
    if not line.startswith(ready):
        fail(f"{cmd[0]} did not start: {line!r} {p.stderr.read() if p.poll() is not None else ''}")
    return p, int(line.split()[-1])


def mockq(name, *opts):
    return start([ENV["MOCKQ_BIN"], "--port", "0", "--name", name, *opts],
                 f"mockq {name} listening")


def floor(backends, *opts, scheme="127.0.0.1:"):
    return start([ENV["FLOOR_BIN"], *opts, "127.0.0.1:0", *[f"{scheme}{b}" for b in backends]],
                 "floor listening")


def qbench(port, *opts, expect_rc=0, timeout=60):
    out = subprocess.run([ENV["QBENCH_BIN"], "--port", str(port), "--json", *opts],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != expect_rc:
        fail(f"qbench {opts} on {port}: status {out.returncode}, want {expect_rc}: "
             f"{out.stdout.strip()} {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else None


def stop_floor(p):
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        fail("floor did not stop on SIGTERM")
    PROCS.remove(p)
    if p.returncode != 0:
        fail(f"floor exit status {p.returncode}: {err}")
    # floor: N connections, X bytes client->backend, Y bytes backend->client, E errors
    words = err.strip().splitlines()[-1].split()
    return int(words[1]), int(words[3]), int(words[6]), int(words[9])


def hello(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"bench:t\x03\x00")
    if s.recv(1) != b"\x03":
        fail(f"no handshake reply through port {port}")
    return s


def query_long(s, text):
    """Send text as a sync message; the answer must be a long atom."""
    body = b"\x0a\x00" + struct.pack("<I", len(text)) + text.encode()
    s.sendall(b"\x01\x01\x00\x00" + struct.pack("<I", 8 + len(body)) + body)
    buf = b""
    while len(buf) < 17:
        chunk = s.recv(64)
        if not chunk:
            fail(f"connection closed before the answer to {text}")
        buf += chunk
    if buf[8] != 0xf9:
        fail(f"answer to {text} is not a long: {buf.hex()}")
    return struct.unpack("<q", buf[9:17])[0]


def clients_of(port):
    s = hello(port)
    n = query_long(s, ".mock.clients[]") - 1      # not this connection
    s.close()
    return n


def wait_for(what, fn, want, timeout=5.0):
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got == want:
            return
        if time.time() > deadline:
            fail(f"{what}: {got}, want {want} within {timeout} s")
        time.sleep(0.05)


def fake_q(mode):
    """A q stand-in answering ("token";.mock.bytes[n]) for qbench: right ("good"), with one
    byte changed ("flip"), one byte short ("short") or with the other connection's token
    ("swap"). Serves until both of qbench's connections close."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)

    def read_exact(c, n):
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def serve(c, tokens, i):
        while c.recv(1) not in (b"\x00", b""):
            pass
        c.sendall(b"\x03")
        while True:
            hdr = read_exact(c, 8)
            if hdr is None:
                return
            body = read_exact(c, struct.unpack("<I", hdr[4:8])[0] - 8)
            text = body[6:].decode()          # ("TOKEN";.mock.bytes[N])
            tok, n = text[2:text.index('"', 2)], int(text[text.index("[") + 1:-2])
            tokens[i] = tok
            if mode == "swap" and tokens[1 - i]:
                tok = tokens[1 - i]
            data = bytearray(j % 256 for j in range(n))
            if mode == "flip":
                data[n // 2] ^= 1
            if mode == "short":
                data = data[:-1]
            out = (b"\x00\x00" + struct.pack("<I", 2) + b"\x0a\x00" + struct.pack("<I", len(tok)) +
                   tok.encode() + b"\x04\x00" + struct.pack("<I", len(data)) + bytes(data))
            c.sendall(b"\x01\x02\x00\x00" + struct.pack("<I", 8 + len(out)) + out)

    def run():
        tokens = [None, None]
        conns = [ls.accept()[0] for _ in range(2)]
        ls.close()
        ths = [threading.Thread(target=serve, args=(c, tokens, i)) for i, c in enumerate(conns)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        for c in conns:
            c.close()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return ls.getsockname()[1], th


def main():
    for k, v in ENV.items():
        if not v:
            fail(f"{k} is not set (is its meson target built?)")
    (_, m1), (_, m2) = mockq("m1"), mockq("m2")

    # 1. a second of load through the floor
    fp, fport = floor([m1, m2])
    r = qbench(fport, "--conns", "16", "--seconds", "1")
    if r["requests"] < 100 or r["mismatches"]:
        fail(f"floor relayed too little or wrongly: {r}")
    conns, up, down, errors = stop_floor(fp)
    if conns != 16 or up < r["requests"] * 32 or down < r["requests"] * 32 or errors:
        fail(f"floor's counts: {conns} connections, {up} B up, {down} B down, {errors} errors "
             f"for {r['requests']} requests")
    print(f"ok floor: {r['requests_per_sec']:.0f} req/s, {up} B up, {down} B down")

    # 1b. the same to a backend on q's abstract unix socket (compare.py --backend-unix)
    _, mu = mockq("mu", "--unix")
    fp, fport = floor([mu], scheme="unix:")
    r = qbench(fport, "--conns", "8", "--seconds", "1")
    conns, up, down, errors = stop_floor(fp)
    if r["requests"] < 100 or r["mismatches"] or conns != 8 or errors or \
            down < r["requests"] * 32:
        fail(f"floor to unix:{mu}: {r}; {conns} connections, {down} B down, {errors} errors")
    print(f"ok floor to unix:{mu}: {r['requests_per_sec']:.0f} req/s")

    # 2. stress with starved buffers and split sends
    fp, fport = floor([m1, m2], "--buffers", "16", "--buffer-bytes", "4096")
    r = qbench(fport, "--conns", "64", "--seconds", "3", "--payload-max", str(1 << 20),
               timeout=120)
    r2 = qbench(fport, "--conns", "4", "--seconds", "1", "--answer-bytes", str(1 << 20))
    conns, up, down, errors = stop_floor(fp)
    if r["requests"] < 64 or r2["requests"] < 4 or errors:
        fail(f"stress: {r['requests']} random-size and {r2['requests']} 1 MiB answers, "
             f"{errors} floor errors")
    print(f"ok stress: {r['requests']} answers up to 1 MiB, {r2['requests']} 1 MiB answers, "
          f"{down} B relayed down, all exact")

    # 3. closing both sides
    fp, fport = floor([m1, m2])
    base = clients_of(m1), clients_of(m2)
    socks = [hello(fport) for _ in range(20)]
    wait_for("m1's clients with 20 through the floor", lambda: clients_of(m1), base[0] + 10)
    wait_for("m2's clients with 20 through the floor", lambda: clients_of(m2), base[1] + 10)
    for s in socks:
        s.close()
    wait_for("m1's clients after the 20 closed", lambda: clients_of(m1), base[0])
    wait_for("m2's clients after the 20 closed", lambda: clients_of(m2), base[1])
    s = hello(fport)
    body = b"\x0a\x00" + struct.pack("<I", 12) + b".mock.drop[]"
    s.sendall(b"\x01\x01\x00\x00" + struct.pack("<I", 8 + len(body)) + body)
    if s.recv(16) != b"":
        fail("the backend closed but the client's connection through the floor did not")
    s.close()
    stop_floor(fp)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]     # bound, not listening: connections are refused
    fp, fport = floor([dead_port])
    s = socket.create_connection(("127.0.0.1", fport), timeout=5)
    s.sendall(b"bench:t\x03\x00")
    try:
        got = s.recv(1)
    except ConnectionResetError:
        got = b""
    if got != b"":
        fail(f"backend down: the floor answered {got!r} instead of closing")
    s.close()
    dead.close()
    conns, _, _, errors = stop_floor(fp)
    if errors != 1:
        fail(f"backend down: floor counted {errors} errors, want 1 (the refused connect)")
    print("ok closing: client close, backend close and backend down each close the pair")

    # 4. qbench's checks: an answer of the right shape but a wrong byte, a short one or
    #    another connection's token is a mismatch (status 1); bad usage is status 2
    r = qbench(m1, "--conns", "2", "--seconds", "0.3", "--sleep-ms", "1")
    if r["requests"] < 2:
        fail(f"--sleep-ms: {r}")
    for mode, rc in (("good", 0), ("flip", 1), ("short", 1), ("swap", 1)):
        port, th = fake_q(mode)
        r = qbench(port, "--conns", "2", "--seconds", "0.3", "--answer-bytes", "1000",
                   expect_rc=rc)
        th.join(timeout=10)
        if (rc == 0) != (r["mismatches"] == 0) or r["requests"] + r["mismatches"] < 1:
            fail(f"fake q answering {mode}: {r}")
    for bad in (["--answer-bytes", "5", "--sleep-ms", "1"], ["--port", "0"],
                ["--payload-bytes", "64", "--payload-max", "32"], ["--answer-bytes", "-3"]):
        qbench(m1, "--seconds", "0.1", *bad, expect_rc=2)
    print("ok qbench modes and usage")
    stop_all()

    # 5. compare.py end to end, one small case
    build = os.path.dirname(os.path.dirname(ENV["QGATE_BIN"]))
    for extra in ([], ["--backend-unix"]):
        out = subprocess.run([sys.executable, os.path.join(ENV["QGATE_SRC"], "bench",
                                                           "compare.py"),
                              "--build", build, "--quick", "--reps", "1", "--cases", "small",
                              *extra], capture_output=True, text=True, timeout=120)
        if out.returncode != 0 or "no mismatched answer" not in out.stdout or \
                "| 64 × 32 B | qgate |" not in out.stdout or \
                bool(extra) != ("over q's unix socket" in out.stdout):
            fail(f"compare.py --quick {extra}: status {out.returncode}\n{out.stdout}\n"
                 f"{out.stderr}")
        print(f"ok compare.py --quick --cases small {' '.join(extra)}")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
