#!/usr/bin/env python3
"""Interop runner: third-party q clients (PyKX, qPython, node-q, the Java driver) against mockq,
directly or through qgate.

    run_interop.py --mode direct    clients -> mockq
    run_interop.py --mode gateway   clients -> qgate -> mockq (one backend: the tests keep state)

Meson runs both modes (suite "interop", tests/interop/meson.build) and passes the programs in
MOCKQ_BIN, QGATE_BIN and QBENCH_BIN. The runner starts what it needs on 127.0.0.1 and abstract or
temporary unix sockets, waits for readiness by connecting, runs every client family, stops what it
started and ends with the line "N passed, N failed, N skipped".

It installs nothing: tests/run.sh creates <repo>/.venv, runs npm ci in tests/interop/node and
resolves the Maven dependencies. A family whose client is not installed is skipped with the
reason; more than one skipped family fails the run, so a broken install cannot pass silently.

Clients read their endpoint from the environment:
    QTEST_HOST, QTEST_PORT  TCP endpoint
    QTEST_UNIX=1            the endpoint also listens on q's abstract socket @/tmp/kx.QTEST_PORT
    QTEST_UNIX_PATH         a filesystem unix socket of the endpoint (gateway mode only: mockq has
                            none), for the clients that cannot name abstract sockets
    QTEST_BACKEND_ID        the name mockq answers to .mock.id[]
    QTEST_MODE              direct | gateway
    QTEST_POOL              gateway mode: single | affinity | session (--pool)

In gateway mode a second qgate ("extra") fronts the same backends for the features that need
settings the main one must not have (docs/clients.md): a user table and a TLS listener. PyKX's
guide tests use it through
    QTEST_AUTH_PORT         plain TCP listener of the extra qgate, which checks passwords
    QTEST_AUTH_USER, QTEST_AUTH_PASS   the one user it accepts
    QTEST_TLS_PORT          TLS listener of the extra qgate (same users)
    QTEST_CA_FILE           the self-signed certificate of that listener (made by openssl here)
    QTEST_RESTART_CMD       a command that restarts the extra qgate on the same ports and returns
                            once it accepts connections again (exit status 0), or fails
The main qgate sends `.mock.defer` calls on dedicated sockets (a rule), as a deployment would
route q's deferred (-30!) functions; session pools cannot have that rule and do not need it.
"""
import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV_PY = REPO / ".venv" / "bin" / "python"
BACKEND_ID = "b1"
START_TIMEOUT_S = 15.0
FAMILY_TIMEOUT_S = 240.0
JAVAKDB_JAR = Path.home() / ".m2/repository/com/kx/javakdb/2.0/javakdb-2.0.jar"


def log(msg):
    print(msg, flush=True)


class Result:
    def __init__(self, name, passed=0, failed=0, skipped=0, family_skip=None):
        self.name = name
        self.passed = passed
        self.failed = failed
        self.skipped = skipped
        self.family_skip = family_skip  # reason when the whole family did not run

    def line(self):
        if self.family_skip:
            return f"[{self.name}] SKIPPED: {self.family_skip}"
        return f"[{self.name}] {self.passed} passed, {self.failed} failed, {self.skipped} skipped"


# ------------------------------------------------------------------ processes

def neutral_link(workdir, name, target):
    """A symlink with a neutral name to run target through. On a shared development machine a
    stray `pkill mockq` / `pkill -f qgate` must not stop the processes under test half-way; the
    working directory's name avoids both words for the same reason."""
    link = workdir / name
    link.symlink_to(os.path.abspath(target))
    return str(link)


def is_executable(path):
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def free_tcp_port():
    """A port nothing listens on right now (the kernel's pick); raced only by other binders."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(family, addr):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(addr)
            return True
        except OSError:
            return False


def wait_until(pred, proc, what, timeout=START_TIMEOUT_S):
    """Poll pred() until true; fail early if proc died. Bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
        time.sleep(0.02)  # poll interval of a readiness check, not a synchronisation sleep
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s")


class Proc:
    """A child process in its own process group, stderr kept in a file for the report."""

    def __init__(self, name, argv, workdir):
        self.name = name
        self.err_path = workdir / f"{name}.stderr"
        self.err = open(self.err_path, "wb")
        log(f"starting {name}: {' '.join(argv)}")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=self.err, start_new_session=True)

    def read_banner(self, pattern, timeout=START_TIMEOUT_S):
        """Read stdout lines until one matches pattern; returns the match."""
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.p.stdout.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            m = re.search(pattern, buf.decode(errors="replace"))
            if m:
                return m
        raise RuntimeError(f"{self.name} printed no banner matching {pattern!r} "
                           f"(stdout so far: {buf[-300:]!r}; status {self.p.poll()})")

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        """SIGTERM, up to 10 s for a graceful exit, then SIGKILL. Returns the exit status."""
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for 10s; killing it")
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=10)
        self.err.close()
        if self.p.stdout:
            self.p.stdout.close()
        return self.p.returncode

    def stderr_tail(self, n=30):
        try:
            lines = self.err_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def run_family_cmd(name, argv, cwd, env, timeout=FAMILY_TIMEOUT_S):
    """Run a family's command in its own process group, echo its output, kill it on timeout."""
    log(f"--- {name}: {' '.join(str(a) for a in argv)}")
    p = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        timed_out = True
    # Maven 3.8 writes colour resets even in batch mode; keep the log plain
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.decode(errors="replace"))
    sys.stdout.write(text)
    if not text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
    if timed_out:
        log(f"--- {name}: killed after {timeout:.0f}s")
    return p.returncode, text, timed_out


# ------------------------------------------------------------------ families

def probe(argv, env=None, timeout=60):
    try:
        r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace").strip()


def pytest_family(name, module, files, env, workdir):
    if not VENV_PY.exists():
        return Result(name, family_skip=f"{VENV_PY} missing (tests/run.sh creates it)")
    files = [f for f in files if f.exists()]
    if not files:
        return Result(name, family_skip="no test files for it in tests/interop yet")
    ok, msg = probe([VENV_PY, "-c", f"import pytest, {module}"], env=env)
    if not ok:
        last = msg.splitlines()[-1] if msg else "?"
        return Result(name, family_skip=f"cannot import {module} in {VENV_PY}: {last}")
    xml = workdir / f"{name}.xml"
    rc, _, timed_out = run_family_cmd(
        name, [VENV_PY, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider",
               f"--junitxml={xml}", *files], cwd=REPO, env=env)
    if timed_out or not xml.exists():
        return Result(name, failed=1)
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    res = Result(name, passed=tests - failed - skipped, failed=failed, skipped=skipped)
    if rc not in (0, 1) and failed == 0:
        # interrupted, internal error, usage error or no tests collected (5): never a pass
        log(f"--- {name}: pytest exited {rc}")
        res.failed += 1
    return res


def node_family(env, workdir):
    name = "node-q"
    node = shutil.which("node")
    if not node:
        return Result(name, family_skip="node is not installed")
    ok, ver = probe([node, "--version"])
    m = re.match(r"v(\d+)\.(\d+)", ver)
    if not ok or not m or (int(m[1]), int(m[2])) < (18, 15):
        return Result(name, family_skip=f"node {ver} lacks --test-reporter (needs >= 18.15)")
    if not (HERE / "node" / "node_modules" / "node-q" / "package.json").exists():
        return Result(name, family_skip="node-q not installed (npm ci in tests/interop/node)")
    rc, out, timed_out = run_family_cmd(
        name, [node, "--test", "--test-reporter=tap", "test/nodeq.test.js"],
        cwd=HERE / "node", env=env)

    def count(key):
        found = re.findall(rf"^# {key} (\d+)$", out, re.M)
        return int(found[-1]) if found else 0

    res = Result(name, passed=count("pass"), failed=count("fail") + count("cancelled"),
                 skipped=count("skipped") + count("todo"))
    if timed_out or (rc != 0 and res.failed == 0) or res.passed + res.failed == 0:
        res.failed += 1
    return res


def java_family(env, workdir):
    name = "java"
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java or not mvn:
        return Result(name, family_skip="java or mvn is not installed")
    if not JAVAKDB_JAR.exists():
        return Result(name, family_skip=f"com.kx:javakdb:2.0 not in the local Maven repository "
                      f"({JAVAKDB_JAR}); tests/run.sh resolves it")
    # Offline: dependencies come from ~/.m2 only; the build output goes to this run's own
    # directory so the direct and gateway runs never share a target/.
    target = workdir / "java-target"
    cp_file = target / "classpath.txt"
    rc, _, timed_out = run_family_cmd(
        name + " build", [mvn, "-o", "-q", "-B", "-Dstyle.color=never",
                          "-f", HERE / "java" / "pom.xml", f"-Dqgate.build.dir={target}",
                          "compile", "dependency:build-classpath",
                          f"-Dmdep.outputFile={cp_file}"], cwd=workdir, env=env)
    if rc != 0 or timed_out or not cp_file.exists():
        log("--- java: the offline Maven build failed (see above)")
        return Result(name, failed=1)
    cp = f"{target / 'classes'}:{cp_file.read_text().strip()}"
    rc, out, timed_out = run_family_cmd(
        name, [java, "-cp", cp, "qgate.interop.InteropMain"], cwd=workdir, env=env)
    m = re.findall(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", out, re.M)
    if not m:
        return Result(name, failed=1)
    p, f, s = (int(x) for x in m[-1])
    res = Result(name, passed=p, failed=f, skipped=s)
    if timed_out or (rc != 0 and f == 0):
        res.failed += 1
    return res


# ------------------------------------------------------------------ endpoints

def start_mockq(workdir, procs, k=0):
    mockq = os.environ.get("MOCKQ_BIN", "")
    if not is_executable(mockq):
        raise RuntimeError(f"MOCKQ_BIN={mockq!r} is not an executable (run through meson test)")
    # replicas answer .mock.id[] with the same name: the tests check the endpoint, not which
    # replica served them
    mq = Proc("mockq", [neutral_link(workdir, f"be-{BACKEND_ID}-{k}", mockq), "--port", "0",
                        "--unix", "--name", BACKEND_ID], workdir)
    procs.append(mq)
    port = int(mq.read_banner(rf"mockq {BACKEND_ID} listening on port (\d+)")[1])
    wait_until(lambda: can_connect(socket.AF_INET, ("127.0.0.1", port)), mq.p, "mockq")
    return port


def start_qgate(qgate, mport, workdir, procs, pool="single"):
    """qgate on a free port; a port taken between our pick and qgate's bind shows as an early
    exit, so try again with another port, at most 3 times."""
    for attempt in range(3):
        try:
            return start_qgate_once(qgate, mport, workdir, procs, attempt, pool)
        except RuntimeError as e:
            gw = procs[-1]
            if gw.name != "qgate" or gw.alive() or attempt == 2:
                raise
            log(f"qgate attempt {attempt + 1} failed ({e}):\n{gw.stderr_tail(5)}")
            gw.stop()
            procs.pop()
    raise AssertionError("unreachable")


def pool_config(mports, pool):
    """The gateway's pool: one backend (the tests keep state), or three replicas that state
    must follow: affinity client (each client stays on one), or session mode."""
    backends = [{"name": BACKEND_ID if k == 0 else f"{BACKEND_ID}r{k}",
                 "address": f"127.0.0.1:{mp}", "connections": 1}
                for k, mp in enumerate(mports)]
    cfg = {"name": "p", "backends": backends}
    if pool == "affinity":
        cfg["affinity"] = "client"
    elif pool == "session":
        cfg["mode"] = "session"
        for b in backends:
            del b["connections"]
    return cfg


def dedicated_rules(pool):
    """Deferred answers (mockq's .mock.defer, q's -30!) on sockets of their own, as
    docs/configuration.md recommends; a session pool cannot have dedicated rules."""
    return [] if pool == "session" else [{"function": ".mock.defer", "dedicated": True}]


def start_qgate_once(qgate, mport, workdir, procs, attempt, pool="single"):
    port = free_tcp_port()
    sock_path = workdir / f"gw{attempt}.sock"
    cfg = {
        "listeners": [
            {"name": "main", "listen": f"127.0.0.1:{port}", "pool": "p"},
            # the abstract socket on the same number as the TCP port, as q does, so clients
            # that derive @/tmp/kx.PORT from QTEST_PORT (PyKX unix=True) find it
            {"name": "local", "listen": f"unix:{port}", "pool": "p"},
            # a filesystem socket for node-q and the Java driver, which cannot name abstract ones
            {"name": "file", "listen": f"unix:{sock_path}", "pool": "p"},
        ],
        "pools": [pool_config(mport if isinstance(mport, list) else [mport], pool)],
        "rules": dedicated_rules(pool),
    }
    cfg_path = workdir / f"gw{attempt}.json"
    cfg_path.write_text(json.dumps(cfg, indent=1) + "\n")
    gw = Proc("qgate", [neutral_link(workdir, f"gw{attempt}", qgate), "-c", str(cfg_path)],
              workdir)
    procs.append(gw)
    wait_until(lambda: can_connect(socket.AF_INET, ("127.0.0.1", port)), gw.p, "qgate (tcp)")
    wait_until(lambda: can_connect(socket.AF_UNIX, f"\0/tmp/kx.{port}"), gw.p,
               "qgate (abstract unix)")
    wait_until(lambda: can_connect(socket.AF_UNIX, str(sock_path)), gw.p, "qgate (unix path)")
    return port, sock_path


# ------------------------------------------------------------------ the extra gateway

AUTH_USER, AUTH_PASS = "qtest", "qtest-secret"


def make_cert(workdir):
    """A self-signed certificate for 127.0.0.1 and localhost: the client's CA file is the
    certificate itself."""
    crt, key = workdir / "gw-tls.crt", workdir / "gw-tls.key"
    ok, msg = probe(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                     "-out", crt, "-days", "2", "-subj", "/CN=127.0.0.1",
                     "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
    if not ok:
        raise RuntimeError(f"openssl req failed: {msg}")
    return crt, key


def hash_password(qgate, password):
    r = subprocess.run([qgate, "--hash-password"], input=(password + "\n").encode(),
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"qgate --hash-password failed: {r.stderr.decode(errors='replace')}")
    return r.stdout.decode().strip()


class ExtraGateway:
    """A second qgate with a user table and a TLS listener, restartable on request over a unix
    socket (QTEST_RESTART_CMD) so that a client can watch it go away and come back."""

    def __init__(self, qgate, mports, workdir, procs, pool):
        self.qgate, self.workdir, self.procs = qgate, workdir, procs
        self.lock = threading.Lock()
        crt, key = make_cert(workdir)
        self.crt = crt
        self.port, self.tls_port = free_tcp_port(), free_tcp_port()
        cfg = {
            "listeners": [
                {"name": "auth", "listen": f"127.0.0.1:{self.port}", "pool": "p"},
                {"name": "tls", "listen": f"127.0.0.1:{self.tls_port}", "pool": "p",
                 "tls": {"cert_file": str(crt), "key_file": str(key)}},
            ],
            "auth": {"users": [{"name": AUTH_USER,
                                "password_hash": hash_password(qgate, AUTH_PASS)}]},
            "pools": [pool_config(mports, pool)],
            "rules": dedicated_rules(pool),
        }
        self.cfg_path = workdir / "gw-extra.json"
        self.cfg_path.write_text(json.dumps(cfg, indent=1) + "\n")
        self.generation = 0
        self.proc = None
        self.start()
        self.ctl_path = workdir / "restart.sock"
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.bind(str(self.ctl_path))
        self.ctl.listen(4)
        threading.Thread(target=self.serve, daemon=True).start()

    def start(self):
        self.proc = Proc(f"qgate-extra{self.generation}",
                         [neutral_link(self.workdir, f"gwx{self.generation}", self.qgate),
                          "-c", str(self.cfg_path)], self.workdir)
        self.generation += 1
        self.procs.append(self.proc)
        for port in (self.port, self.tls_port):
            wait_until(lambda: can_connect(socket.AF_INET, ("127.0.0.1", port)), self.proc.p,
                       f"extra qgate (port {port})")

    def restart(self):
        with self.lock:
            old = self.proc
            rc = old.stop()
            if rc != 0:
                raise RuntimeError(f"extra qgate exited with status {rc} on SIGTERM")
            self.procs.remove(old)
            self.start()

    def serve(self):
        while True:
            try:
                c, _ = self.ctl.accept()
            except OSError:
                return  # closed at the end of the run
            with c:
                c.settimeout(30)
                try:
                    if c.makefile("rb").readline().strip() == b"restart":
                        self.restart()
                        c.sendall(b"ok\n")
                    else:
                        c.sendall(b"error unknown request\n")
                except Exception as e:  # reported to the test, which fails with it
                    log(f"restart of the extra qgate failed: {e}")
                    try:
                        c.sendall(f"error {e}\n".encode())
                    except OSError:
                        pass

    def close(self):
        self.ctl.close()

    def env(self):
        cmd = (f"{sys.executable} {HERE / 'run_interop.py'} --request-restart {self.ctl_path}")
        return {"QTEST_AUTH_PORT": str(self.port), "QTEST_TLS_PORT": str(self.tls_port),
                "QTEST_AUTH_USER": AUTH_USER, "QTEST_AUTH_PASS": AUTH_PASS,
                "QTEST_CA_FILE": str(self.crt), "QTEST_RESTART_CMD": cmd}


def request_restart(path):
    """The client side of QTEST_RESTART_CMD: ask the runner to restart the extra qgate."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(path)
        s.sendall(b"restart\n")
        answer = s.makefile("rb").readline().decode(errors="replace").strip()
    if answer != "ok":
        print(f"restart failed: {answer or 'no answer'}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["direct", "gateway"], required=True)
    ap.add_argument("--pool", choices=["single", "affinity", "session"], default="single",
                    help="gateway mode: one backend, or three replicas behind affinity: client "
                         "or a session pool (PyKX's guide only)")
    ap.add_argument("--only", action="append", default=[],
                    help="run only these families (pykx, qpython, node-q, java); repeatable")
    if sys.argv[1:2] == ["--request-restart"] and len(sys.argv) == 3:
        return request_restart(sys.argv[2])  # QTEST_RESTART_CMD, run by a test
    args = ap.parse_args()

    if args.mode == "gateway":
        qgate = os.environ.get("QGATE_BIN", "")
        if not is_executable(qgate):
            log(f"SKIP interop-gateway: qgate is not built yet (QGATE_BIN={qgate!r} is not an "
                "executable); the gateway mode runs once gateway/ provides qgate_exe")
            log("0 passed, 0 failed, 1 skipped")
            return 0

    workdir = Path(tempfile.mkdtemp(prefix=f"iop-{args.mode}-"))
    procs = []
    results = []
    infra_failures = 0
    extra = None
    try:
        mport = start_mockq(workdir, procs)
        mports = [mport] + ([start_mockq(workdir, procs, k) for k in (1, 2)]
                            if args.mode == "gateway" and args.pool != "single" else [])
        if args.pool != "single" and not args.only:
            args.only = ["pykx"]  # the guide whose examples keep state
        env = dict(os.environ)
        env.update({"QTEST_HOST": "127.0.0.1", "QTEST_UNIX": "1", "QTEST_MODE": args.mode,
                    "QTEST_BACKEND_ID": BACKEND_ID, "PYTHONDONTWRITEBYTECODE": "1"})
        # PyKX talks IPC without a kdb+ licence in unlicensed mode; never let it prompt.
        env.setdefault("PYKX_UNLICENSED", "true")
        for k in ("QTEST_UNIX_PATH", "QTEST_AUTH_PORT", "QTEST_TLS_PORT", "QTEST_AUTH_USER",
                  "QTEST_AUTH_PASS", "QTEST_CA_FILE", "QTEST_RESTART_CMD", "QTEST_POOL"):
            env.pop(k, None)
        if args.mode == "gateway":
            port, sock_path = start_qgate(os.environ["QGATE_BIN"], mports, workdir, procs,
                                          args.pool)
            env["QTEST_PORT"] = str(port)
            env["QTEST_UNIX_PATH"] = str(sock_path)
            env["QTEST_POOL"] = args.pool
            extra = ExtraGateway(os.environ["QGATE_BIN"], mports, workdir, procs, args.pool)
            env.update(extra.env())
        else:
            env["QTEST_PORT"] = str(mport)
        log(f"endpoint ({args.mode}): 127.0.0.1:{env['QTEST_PORT']}, "
            f"unix @/tmp/kx.{env['QTEST_PORT']}"
            + (f", unix {env['QTEST_UNIX_PATH']}" if "QTEST_UNIX_PATH" in env else ""))

        families = [
            ("pykx", lambda: pytest_family(
                "pykx", "pykx", [HERE / "test_pykx.py", HERE / "test_pykx_gateway.py", *sorted((HERE / "pykx").glob("test_*.py"))],
                env, workdir)),
            ("qpython", lambda: pytest_family(
                "qpython", "qpython.qconnection", [HERE / "test_qpython.py"], env, workdir)),
            ("node-q", lambda: node_family(env, workdir)),
            ("java", lambda: java_family(env, workdir)),
        ]
        for fname, run in families:
            if args.only and fname not in args.only:
                continue
            res = run()
            results.append(res)
            log(res.line())
            for p in procs:
                if not p.alive():
                    raise RuntimeError(f"{p.name} exited with status {p.p.returncode} "
                                       f"during the {fname} tests")
    except RuntimeError as e:
        log(f"ERROR: {e}")
        infra_failures += 1
    finally:
        if extra:
            extra.close()
            extra.lock.acquire()  # no restart half-way while everything stops
        for p in reversed(procs):
            was_alive = p.alive()
            rc = p.stop()
            if p.name.startswith("qgate") and was_alive and rc != 0:
                # SIGTERM is the documented graceful stop (product.md 8): expect status 0
                log(f"ERROR: qgate exited with status {rc} on SIGTERM")
                infra_failures += 1
            if infra_failures or rc not in (0, -signal.SIGTERM):
                log(f"--- {p.name} stderr (last lines):\n{p.stderr_tail()}")

    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results) + infra_failures
    skipped_families = [r for r in results if r.family_skip]
    skipped = sum(r.skipped for r in results) + len(skipped_families)
    log("")
    log(f"interop ({args.mode}):")
    for r in results:
        log("  " + r.line())
    rc = 0
    if failed:
        rc = 1
    if len(skipped_families) > 1:
        log(f"ERROR: {len(skipped_families)} client families skipped (at most 1 may be): "
            "run tests/run.sh to install the clients")
        rc = 1
    if rc == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"(files kept in {workdir})")
    log(f"{passed} passed, {failed} failed, {skipped} skipped")
    return rc


if __name__ == "__main__":
    sys.exit(main())
