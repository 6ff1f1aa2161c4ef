#!/usr/bin/env python3
"""test_k8s_example — docs/examples/k8s/qgate.yaml (docs/deployment.md) is a working example:
the qgate.json in its ConfigMap passes `qgate --check`, and the ports its Deployment and
Service name are the ones that configuration listens on. No YAML library: the ConfigMap's
block scalar and the port lines are read as text, so the test needs only Python and qgate.

Usage: QGATE_BIN=... QGATE_SRC=... test_k8s_example.py (meson passes both)."""
import json
import os
import re
import subprocess
import sys
import tempfile


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def block_scalar(text, key):
    """The lines of a `key: |` block scalar, de-indented."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)" + re.escape(key) + r":\s*\|\s*$", line)
        if not m:
            continue
        body = []
        indent = None
        for nxt in lines[i + 1:]:
            if nxt.strip() == "":
                body.append("")
                continue
            lead = len(nxt) - len(nxt.lstrip(" "))
            if lead <= len(m.group(1)):
                break
            indent = lead if indent is None else min(indent, lead)
            body.append(nxt)
        return "\n".join(b[indent:] for b in body)
    fail(f"no `{key}: |` block in the manifest")


def main():
    qgate = os.environ.get("QGATE_BIN")
    src = os.environ.get("QGATE_SRC")
    if not qgate or not src:
        fail("QGATE_BIN and QGATE_SRC must be set (run through meson test)")
    path = os.path.join(src, "docs/examples/k8s/qgate.yaml")
    text = open(path).read()
    cfg_text = block_scalar(text, "qgate.json")
    try:
        cfg = json.loads(cfg_text)
    except ValueError as e:
        fail(f"the ConfigMap's qgate.json is not JSON: {e}")

    with tempfile.TemporaryDirectory() as tmp:
        # the token comes from a Secret in the cluster; here from a file of the test's own
        token_file = cfg.get("stats", {}).get("token_file")
        if token_file:
            local = os.path.join(tmp, "stats-token")
            with open(local, "w") as f:
                f.write("k8s-example-token\n")
            cfg["stats"]["token_file"] = local
        cpath = os.path.join(tmp, "qgate.json")
        with open(cpath, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([qgate, "--check", "-c", cpath], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            fail(f"qgate --check refused the example's configuration:\n{r.stdout}{r.stderr}")

    # the ports: containerPort kdb and stats, the Service's port, and the config's listeners
    def port_of(addr):
        return int(addr.rsplit(":", 1)[1])

    listen_ports = {port_of(l["listen"]) for l in cfg["listeners"]}
    stats_port = port_of(cfg["stats"]["listen"])
    named = dict(re.findall(r"\{name:\s*(\w+),\s*containerPort:\s*(\d+)\}", text))
    if set(named) != {"kdb", "stats"}:
        fail(f"the Deployment names ports {sorted(named)}, expected kdb and stats")
    if int(named["kdb"]) not in listen_ports:
        fail(f"containerPort kdb {named['kdb']} is not a listener port {sorted(listen_ports)}")
    if int(named["stats"]) != stats_port:
        fail(f"containerPort stats {named['stats']} is not stats.listen's {stats_port}")
    svc = re.findall(r"\{name:\s*kdb,\s*port:\s*(\d+),\s*targetPort:\s*kdb\}", text)
    if not svc:
        fail("the Service does not forward to targetPort kdb")
    for doc in ("terminationGracePeriodSeconds",):
        m = re.search(doc + r":\s*(\d+)", text)
        if not m:
            fail(f"no {doc}")
        grace_s = int(m.group(1))
        need = 5 + cfg["limits"]["shutdown_grace_ms"] / 1000 + 1
        if grace_s < need:
            fail(f"terminationGracePeriodSeconds {grace_s} < preStop 5 s + shutdown grace + 1 s"
                 f" = {need}")
    print(f"ok: qgate --check accepts the example; ports kdb={named['kdb']} "
          f"stats={named['stats']}; grace {grace_s} s")


if __name__ == "__main__":
    main()
