#!/usr/bin/env python3
"""Demo client: a few q queries over PyKX (qPython if PyKX is unavailable), printed as a table
of query, answer and the backend that produced it; or, with --admin, an admin table of the
gateway itself.

    demo_client.py --label NAME --port P [--host H] [--unix] [--rounds N] [--user U:P]
    demo_client.py --label NAME --port P --user admin:admin --admin .qgate.backends[]

Every query is sent as (.mock.id[]; QUERY), so one round trip returns both the answer and the
id of the mockq that evaluated it; through qgate that shows how requests spread over backends.
"""
import argparse
import os
import sys

QUERIES = ["1+1", "til 10", "{x+y+z}[1;2;3]", "sum til 100", "`a`b`c!1 2 3"]


def pykx_runner(host, port, unix, user, password):
    os.environ.setdefault("PYKX_UNLICENSED", "true")  # IPC works without a kdb+ licence
    import pykx as kx

    kw = {"unix": True} if unix else {}
    conn = kx.SyncQConnection(host, port, username=user, password=password, timeout=10.0,
                              **kw)
    return "PyKX " + kx.__version__, lambda q: conn(q), conn.close


def qpython_runner(host, port, unix, user, password):
    if unix:
        raise RuntimeError("qPython has no unix-socket form")
    from qpython import qconnection

    conn = qconnection.QConnection(host=host, port=port, username=user or None,
                                   password=password or None, timeout=10.0, pandas=True)
    conn.open()


    return "qPython", lambda q: conn.sendSync(q), conn.close


def plain(v):
    """A q answer as plain Python, whichever client fetched it."""
    if hasattr(v, "py"):
        return v.py()
    if isinstance(v, bytes):
        return v.decode()
    if hasattr(v, "tolist"):
        return plain(v.tolist())
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def print_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  +" + "+".join("-" * (w + 2) for w in widths) + "+"
    print(line)
    print("  | " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |")
    print(line)
    for r in rows:
        print("  | " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |")
    print(line)


def admin_table(query, text):
    """An admin table (.qgate.backends[] and the like) printed as it is."""
    t = query(text)
    if hasattr(t, "pd"):
        t = t.pd()
    # a pandas frame from either client: symbols may arrive as bytes
    cols = list(t.columns)
    rows = [[v.decode() if isinstance(v, bytes) else v for v in row]
            for row in t.itertuples(index=False)]
    print_table(cols, rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--unix", action="store_true", help="q's abstract unix socket for the port")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--user", default="", help="user:password for the handshake")
    ap.add_argument("--admin", metavar="CALL", help="print this admin table instead")
    args = ap.parse_args()

    user, _, password = args.user.partition(":")
    try:
        client, query, close = pykx_runner(args.host, args.port, args.unix, user, password)
    except ImportError:
        client, query, close = qpython_runner(args.host, args.port, args.unix, user, password)
    where = f"unix @/tmp/kx.{args.port}" if args.unix else f"{args.host}:{args.port}"
    who = f" as {user}" if user else ""
    print(f"--- {args.label}: {client} -> {where}{who}")
    served = {}
    rows = []
    try:
        if args.admin:
            admin_table(query, args.admin)
            return 0
        for _ in range(args.rounds):
            for q in QUERIES:
                backend, answer = plain(query(f"(.mock.id[];{q})"))
                served[backend] = served.get(backend, 0) + 1
                rows.append([q, answer, backend])
    finally:
        close()
    print_table(["query", "answer", "served by"], rows)
    print("  requests per backend: " + ", ".join(f"{b}={n}" for b, n in sorted(served.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
