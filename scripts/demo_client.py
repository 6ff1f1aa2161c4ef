#!/usr/bin/env python3
"""Demo client: a few q queries over PyKX (qPython if PyKX is unavailable), each answer printed
with the backend that produced it.

    demo_client.py --label NAME --port P [--host H] [--unix] [--rounds N]

Every query is sent as (.mock.id[]; QUERY), so one round trip returns both the answer and the
id of the mockq that evaluated it; through qgate that shows how requests spread over backends.
"""
import argparse
import os
import sys

QUERIES = ["1+1", "til 10", "{x+y+z}[1;2;3]", "sum til 100", "`a`b`c!1 2 3"]


def pykx_runner(host, port, unix):
    os.environ.setdefault("PYKX_UNLICENSED", "true")  # IPC works without a kdb+ licence
    import pykx as kx

    kw = {"unix": True} if unix else {}
    conn = kx.SyncQConnection(host, port, timeout=10.0, **kw)
    return "PyKX " + kx.__version__, lambda q: conn(q).py(), conn.close


def qpython_runner(host, port, unix):
    if unix:
        raise RuntimeError("qPython has no unix-socket form")
    from qpython import qconnection

    conn = qconnection.QConnection(host=host, port=port, timeout=10.0)
    conn.open()

    def plain(v):
        if isinstance(v, bytes):
            return v.decode()
        if hasattr(v, "tolist"):
            return plain(v.tolist())
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    return "qPython", lambda q: plain(conn.sendSync(q)), conn.close


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--unix", action="store_true", help="q's abstract unix socket for the port")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    try:
        client, query, close = pykx_runner(args.host, args.port, args.unix)
    except ImportError:
        client, query, close = qpython_runner(args.host, args.port, args.unix)
    where = f"unix @/tmp/kx.{args.port}" if args.unix else f"{args.host}:{args.port}"
    print(f"--- {args.label}: {client} -> {where}")
    served = {}
    try:
        for _ in range(args.rounds):
            for q in QUERIES:
                backend, answer = query(f"(.mock.id[];{q})")
                served[backend] = served.get(backend, 0) + 1
                print(f"  {q:<16} = {str(answer):<40} served by {backend}")
    finally:
        close()
    print("  requests per backend: " + ", ".join(f"{b}={n}" for b, n in sorted(served.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
