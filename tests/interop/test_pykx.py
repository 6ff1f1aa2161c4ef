"""PyKX (4.x, unlicensed mode) against a q-like endpoint: the PyKX IPC guide's examples.

The endpoint comes from the environment (the interop runner starts mockq or qgate and sets it):
  QTEST_HOST   host (default 127.0.0.1)
  QTEST_PORT   port (required; without it the module is skipped)
  QTEST_UNIX   "1": also connect over q's abstract unix socket for that port
  QTEST_USER / QTEST_PASS   optional credentials
  QTEST_POOL   "affinity" or "session": several replicas behind the endpoint

The same tests pass against a real q process, so they check the endpoint, not mockq's quirks.
If pykx cannot be imported the whole module is skipped, with the reason.
"""
import asyncio
import os
import sys
import uuid

import pytest

# Unlicensed mode is what users without a kdb+ licence get; it must be chosen before import.
os.environ.setdefault("PYKX_UNLICENSED", "true")

try:
    import pykx as kx
except Exception as exc:  # ImportError, or pykx failing to initialise
    reason = f"pykx cannot be imported: {type(exc).__name__}: {exc}"
    print(reason, file=sys.stderr)
    pytest.skip(reason, allow_module_level=True)

HOST = os.environ.get("QTEST_HOST", "127.0.0.1")
PORT = os.environ.get("QTEST_PORT")
USE_UNIX = os.environ.get("QTEST_UNIX") == "1"
# several replicas behind the endpoint (run_interop.py --pool affinity|session)
REPLICAS = os.environ.get("QTEST_POOL", "single") != "single"
USER = os.environ.get("QTEST_USER", "")
PASS = os.environ.get("QTEST_PASS", "")

if not PORT:
    reason = "QTEST_PORT is not set: no endpoint to test against"
    print(reason, file=sys.stderr)
    pytest.skip(reason, allow_module_level=True)
PORT = int(PORT)

# A per-run suffix keeps globals from clashing when the endpoint is shared between runs.
RUN = uuid.uuid4().hex[:8]


def connect(**kw):
    return kx.SyncQConnection(HOST, PORT, username=USER, password=PASS, timeout=10.0, **kw)


@pytest.fixture
def conn():
    with connect() as c:
        yield c


def test_simple_queries(conn):
    assert conn("1+1").py() == 2
    assert conn("til 10").py() == list(range(10))


def test_lambda_with_arguments(conn):
    # Sent as a general list ("{x+y+z}";1;2;3) ...
    assert conn("{x+y+z}", 1, 2, 3).py() == 6
    # ... and as one string with the arguments applied in q.
    assert conn("{x+y+z}[1;2;3]").py() == 6


def test_context_interface(conn):
    conn(".test.addition:{x+y}")
    conn(".test.namespace.subtraction:{x-y}")
    assert conn.test.addition(4, 2).py() == 6
    assert conn.test.namespace.subtraction(8, 4).py() == 4
    # A function can also be called by name with arguments.
    assert conn(".test.addition", 10, 20).py() == 30


def test_set_and_read_back(conn):
    name = f"pykxv{RUN}"
    conn("set", name, 5)
    assert conn(name).py() == 5
    conn(f"{name}:til 3")
    assert conn(name).py() == [0, 1, 2]


def test_async_call_then_sync_sees_it(conn):
    name = f"pykxasync{RUN}"
    conn(f"{name}:42", wait=False)
    # Messages on one connection run in order: the sync read sees the async assignment.
    assert conn(name).py() == 42


def test_error_is_raised_as_qerror(conn):
    with pytest.raises(kx.QError):
        conn(f".no.such.fn{RUN}", 1)
    # The connection is still usable after an error.
    assert conn("1+1").py() == 2


def test_file_execute(conn, tmp_path):
    script = tmp_path / "pykx_fe.q"
    script.write_text(
        "/ a comment line\n"
        f".fe{RUN}.x:42\n"
        f".fe{RUN}.f:{{[a;b]\n"
        "  a+b}\n"
        f".fe{RUN}.y:.fe{RUN}.f[1;2]\n"
    )
    # Default: the script runs without a reply (async); a later sync sees its effects.
    conn.file_execute(str(script))
    assert conn(f".fe{RUN}.x").py() == 42
    assert conn(f".fe{RUN}.y").py() == 3
    # return_all: one result per statement.
    res = conn.file_execute(str(script), return_all=True).py()
    assert len(res) == 3
    assert res[0] == 42 and res[2] == 3


def test_async_connection():
    async def main():
        async with kx.AsyncQConnection(HOST, PORT, username=USER, password=PASS) as q:
            r1 = await q("til 5")
            r2 = await q("{x*y}", 6, 7)
            return r1.py(), r2.py()

    assert asyncio.run(main()) == ([0, 1, 2, 3, 4], 42)


@pytest.mark.skipif(not USE_UNIX, reason="QTEST_UNIX is not 1")
def test_unix_socket():
    with kx.SyncQConnection(port=PORT, unix=True, username=USER, password=PASS,
                            timeout=10.0) as c:
        assert c("1+1").py() == 2
        assert c("til 3").py() == [0, 1, 2]


def test_async_connection_wait_false():
    # The guide's example: an async message (no answer), then a sync read on the same connection.
    name = f"pykxawf{RUN}"

    async def main():
        async with kx.AsyncQConnection(HOST, PORT, username=USER, password=PASS) as q:
            await q("{x set y+til z}", name, 10, 5, wait=False)
            return (await q(name)).py()

    assert asyncio.run(main()) == [10, 11, 12, 13, 14]


def test_deferred_call_reuse_false():
    # reuse=False opens a connection for this one call, as the guide advises for functions that
    # answer later (q's -30!; mockq's .mock.defer[ms;x]). Through qgate a `dedicated` rule sends
    # such calls on a socket of their own, so the pool's one backend connection stays free: a
    # query from another client is answered while the deferred answer is still pending.
    defer_ms = 3000

    async def main():
        async with kx.AsyncQConnection(HOST, PORT, username=USER, password=PASS) as q:
            deferred = q(".mock.defer", defer_ms, 42, reuse=False)
            loop = asyncio.get_running_loop()
            if REPLICAS:
                # the probe below may land on another replica than the deferred call: check
                # the deferred answer only
                return (await asyncio.wait_for(deferred, 10.0)).py()
            t0 = loop.time()
            with connect() as other:
                # readiness: the deferred call is in flight in the backend; the probe itself
                # is answered only if the call does not hold the connection other clients need
                while other(".mock.inflight[]").py() < 1:
                    assert loop.time() - t0 < 5.0, \
                        "no probe answered in 5s: the deferred call is not in flight, or it " \
                        "holds the connection other clients need (no dedicated rule?)"
                    await asyncio.sleep(0.02)  # poll interval of a readiness check
                t1 = loop.time()
                assert other("1+1").py() == 2
                answered_in = loop.time() - t1
            assert not deferred.done(), "the deferred answer came early"
            assert answered_in < defer_ms / 2000, \
                f"another client waited {answered_in:.2f}s behind the deferred call"
            return (await asyncio.wait_for(deferred, 10.0)).py()

    assert asyncio.run(main()) == 42
