"""PyKX's IPC guide, the parts that need qgate settings of their own (docs/clients.md): user
names and passwords, TLS (tls=True, SecureQConnection, and the CA file PyKX reads), remote Python functions, and
reconnection_attempts across a restart of the gateway.

run_interop.py --mode gateway starts a second qgate for them and sets:
  QTEST_AUTH_PORT, QTEST_AUTH_USER, QTEST_AUTH_PASS   a listener that checks passwords
  QTEST_TLS_PORT, QTEST_CA_FILE                       a TLS listener and its self-signed cert
  QTEST_RESTART_CMD                                   restarts that qgate, returns when it is back
Without them (direct mode: mockq has no user table and no TLS) each test is skipped, saying why.
"""
import os
import shlex
import subprocess
import sys

import pytest

os.environ.setdefault("PYKX_UNLICENSED", "true")

try:
    import pykx as kx
except Exception as exc:  # ImportError, or pykx failing to initialise
    reason = f"pykx cannot be imported: {type(exc).__name__}: {exc}"
    print(reason, file=sys.stderr)
    pytest.skip(reason, allow_module_level=True)

HOST = os.environ.get("QTEST_HOST", "127.0.0.1")
PORT = os.environ.get("QTEST_PORT")
AUTH_PORT = os.environ.get("QTEST_AUTH_PORT")
USER = os.environ.get("QTEST_AUTH_USER", "")
PASS = os.environ.get("QTEST_AUTH_PASS", "")
TLS_PORT = os.environ.get("QTEST_TLS_PORT")
CA_FILE = os.environ.get("QTEST_CA_FILE")
RESTART_CMD = os.environ.get("QTEST_RESTART_CMD")

# PyKX's IPC library (libe, also in unlicensed mode) takes the CA that verifies the server's
# certificate from KX_SSL_CA_CERT_FILE; KX_SSL_VERIFY_SERVER defaults to YES. It is read when
# the first TLS connection is made, so it must be set before that, once per process.
# AsyncQConnection(tls=True) is refused by PyKX 4.2 itself ("TLS is currently only supported
# for SyncQConnections"), so only SyncQConnection is tested over TLS.
if CA_FILE:
    os.environ["KX_SSL_CA_CERT_FILE"] = CA_FILE

need_auth = pytest.mark.skipif(not AUTH_PORT, reason="QTEST_AUTH_PORT is not set (gateway mode "
                               "only: a listener of qgate with a user table)")
need_tls = pytest.mark.skipif(not (TLS_PORT and CA_FILE), reason="QTEST_TLS_PORT/QTEST_CA_FILE "
                              "are not set (gateway mode only: qgate's TLS listener)")
need_restart = pytest.mark.skipif(not (AUTH_PORT and RESTART_CMD), reason="QTEST_RESTART_CMD is "
                                  "not set (gateway mode only: the runner restarts qgate)")


@need_auth
def test_username_and_password():
    with kx.SyncQConnection(HOST, int(AUTH_PORT), username=USER, password=PASS,
                            timeout=10.0) as c:
        assert c("1+1").py() == 2


@need_auth
def test_wrong_password_is_refused():
    # qgate closes the socket without a reply byte, as q does; PyKX raises at connect time
    with pytest.raises((kx.QError, kx.exceptions.PyKXException)):
        kx.SyncQConnection(HOST, int(AUTH_PORT), username=USER, password=PASS + "x",
                           timeout=10.0)


@need_tls
def test_tls_sync():
    with kx.SyncQConnection(HOST, int(TLS_PORT), username=USER, password=PASS, tls=True,
                            timeout=10.0) as c:
        assert c("1+1").py() == 2
        assert c("{x+y+z}", 1, 2, 3).py() == 6
        with pytest.raises(kx.QError):
            c(".no.such.function", 1)


@need_tls
def test_secure_qconnection():
    # QConnection(tls=True) gives a SecureQConnection; PyKX 4.2 opens it in unlicensed mode too
    with kx.QConnection(HOST, int(TLS_PORT), username=USER, password=PASS, tls=True,
                        timeout=10.0) as c:
        assert isinstance(c, kx.SecureQConnection)
        assert c("til 3").py() == [0, 1, 2]
    with kx.SecureQConnection(HOST, int(TLS_PORT), username=USER, password=PASS, tls=True,
                              timeout=10.0) as c:
        assert c("{x*y}", 6, 7).py() == 42


@need_tls
def test_tls_without_the_ca_is_refused():
    # The same connection in a fresh process without KX_SSL_CA_CERT_FILE: the self-signed
    # certificate cannot be verified, so the connection fails. This shows the variable above is
    # the one PyKX reads, and that it verifies the server.
    code = ("import pykx as kx, sys\n"
            "try:\n"
            f"    kx.SyncQConnection({HOST!r}, {int(TLS_PORT)}, username={USER!r}, "
            f"password={PASS!r}, tls=True, timeout=10.0)\n"
            "except Exception as e:\n"
            "    print('refused:', type(e).__name__, e); sys.exit(3)\n"
            "print('connected'); sys.exit(0)\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("KX_SSL_CA_CERT_FILE", "SSL_CA_CERT_FILE", "KX_SSL_CA_CERT_PATH",
                        "SSL_CA_CERT_PATH")}
    env["PYKX_UNLICENSED"] = "true"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 3, f"status {r.returncode}: {r.stdout} {r.stderr[-500:]}"


@need_auth
def test_remote_python_function_is_forwarded_unchanged(tmp_path):
    # kx.remote needs PyKX loaded in the backend q; qgate forwards its messages as they are, so
    # the client sees the backend's own answer. mockq has no PyKX: the session's first message
    # (`pykx in key `) fails there and kx.remote.session raises that q error.
    with pytest.raises(kx.QError):
        kx.remote.session(HOST, int(AUTH_PORT), username=USER, password=PASS, timeout=10.0)
    # PyKX's own loader lambda (file_execute of a .py) answers with this exact text from a q
    # without PyKX; it arrives through qgate word for word.
    script = tmp_path / "remote_fn.py"
    script.write_text("def f(x):\n    return x + 1\n")
    with kx.SyncQConnection(HOST, int(AUTH_PORT), username=USER, password=PASS,
                            timeout=10.0) as c:
        with pytest.raises(kx.QError, match=r"^pykx must be loaded on remote server$"):
            c.file_execute(str(script), return_all=True)
        assert c("1+1").py() == 2  # an error answer, not a dropped connection


@need_restart
def test_reconnection_attempts_across_a_gateway_restart():
    with kx.SyncQConnection(HOST, int(AUTH_PORT), username=USER, password=PASS, timeout=10.0,
                            reconnection_attempts=20, reconnection_delay=0.25,
                            reconnection_function=lambda d: d) as c:
        assert c(".mock.id[]").py() is not None
        r = subprocess.run(shlex.split(RESTART_CMD), capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, f"restart failed: {r.stdout} {r.stderr}"
        # the old connection was closed by the stopping gateway; PyKX notices on this call,
        # reconnects to the new gateway and sends the query again
        assert c("1+1").py() == 2
        assert c("til 3").py() == [0, 1, 2]
