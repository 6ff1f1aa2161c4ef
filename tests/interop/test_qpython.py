# Interop tests: qPython (PyPI "qpython3", finos/qPython) against a q endpoint.
#
# The endpoint is whatever tests/interop/run_interop.py points us at: mockq directly, or qgate in
# front of one mockq. Environment:
#   QTEST_HOST, QTEST_PORT  TCP endpoint (required)
#   QTEST_BACKEND_ID        name of the (single) mockq behind the endpoint, for .mock.id[]
# Every name this file defines on the server starts with "qpy" so the other client families,
# which share the same backend, never see or clobber it.
import os

import numpy
import pytest

from qpython import qconnection
from qpython.qtype import QException

HOST = os.environ.get("QTEST_HOST", "127.0.0.1")
PORT = int(os.environ.get("QTEST_PORT", "0"))
BACKEND_ID = os.environ.get("QTEST_BACKEND_ID")

pytestmark = pytest.mark.skipif(PORT == 0, reason="QTEST_PORT not set (run via run_interop.py)")


@pytest.fixture
def q():
    # timeout bounds every socket operation, so a gateway that never answers fails the test
    # instead of hanging the suite.
    conn = qconnection.QConnection(host=HOST, port=PORT, timeout=10.0)
    conn.open()
    yield conn
    conn.close()


def test_handshake_capability(q):
    # finos qPython offers capability 6; mockq and qgate both speak 6, so the answer is 6.
    assert q.protocol_version == 6


def test_sync_arithmetic(q):
    assert q.sendSync("1+1") == 2


def test_sync_til(q):
    assert list(q.sendSync("til 10")) == list(range(10))


def test_lambda_applied_to_args(q):
    # the PyKX IPC guide's example, in qPython's (string-head; args) form
    assert q.sendSync("{x+y+z}", numpy.int64(1), numpy.int64(2), numpy.int64(3)) == 6


def test_call_string_head(q):
    # qPython sends the function name as a char vector: (".mock.echo"; 42)
    assert q.sendSync(".mock.echo", numpy.int64(42)) == 42


def test_call_string_head_string_arg(q):
    # arguments are applied, not evaluated: a string argument comes back unchanged
    assert q.sendSync(".mock.echo", "hello") == b"hello"


def test_call_symbol_head(q):
    # a symbol query becomes (`.mock.echo; 7), the form q users write by hand
    assert q.sendSync(numpy.bytes_(b".mock.echo"), numpy.int64(7)) == 7


def test_define_then_call(q):
    q.sendSync(".qpy.add:{x+y}")
    assert q.sendSync(".qpy.add", numpy.int64(2), numpy.int64(3)) == 5


def test_async_assign_then_sync_read(q):
    q.sendAsync("qpyvar:42")
    # the sync read is ordered after the async on the same connection (direct or via qgate)
    assert q.sendSync("qpyvar") == 42


def test_async_set_then_sync_read(q):
    q.sendAsync("set", numpy.bytes_(b"qpyset"), numpy.int64(7))
    assert q.sendSync("qpyset") == 7


def test_backend_id(q):
    got = q.sendSync(".mock.id[]")
    assert isinstance(got, (bytes, numpy.bytes_)), f"expected a symbol, got {got!r}"
    if BACKEND_ID:
        assert got == BACKEND_ID.encode()


def test_q_error_raises(q):
    with pytest.raises(QException) as err:
        q.sendSync('.mock.error["qpy boom"]')
    assert err.value.args[0] == b"qpy boom"


def test_q_error_from_args(q):
    with pytest.raises(QException) as err:
        q.sendSync(".mock.error", numpy.bytes_(b"qpyfail"))
    assert err.value.args[0] == b"qpyfail"


def test_type_error_then_connection_still_usable(q):
    with pytest.raises(QException) as err:
        q.sendSync("1+`a")
    assert err.value.args[0] == b"type"
    assert q.sendSync("2+3") == 5


# No unix-socket test: qconnection._init_socket always creates an AF_INET socket, so qPython
# has no unix-domain form (PyKX, node-q and the Java driver do; see docs/testing.md).
