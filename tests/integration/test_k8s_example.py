#!/usr/bin/env python3
"""test_k8s_example — docs/examples/k8s/qgate.yaml (docs/deployment.md) is a working example:
the qgate.json in its ConfigMap passes `qgate --check`; every container that runs qgate (the
gateway, and the reloader's `qgate --check`) mounts the configuration and every file it names
(token_file, password_file, cert_file... any `*_file`), from a volume the pod defines; and the
ports its Deployment and Service name are the ones that configuration listens on. No YAML library: the ConfigMap's
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


def named_files(node, where=""):
    """(json path, value) of every `*_file` string in the configuration."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k.endswith("_file") and isinstance(v, str):
                out.append((f"{where}.{k}".lstrip("."), v))
            else:
                out += named_files(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += named_files(v, f"{where}[{i}]")
    return out


def containers(text):
    """(name, block text) of each item of the pod's `containers:` list."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)containers:\s*$", line)
        if not m:
            continue
        base = len(m.group(1))
        cur = None
        for nxt in lines[i + 1:]:
            if nxt.strip() == "" or nxt.lstrip().startswith("#"):
                continue
            lead = len(nxt) - len(nxt.lstrip(" "))
            if lead <= base:
                break
            item = re.match(r"^\s*- name:\s*([\w-]+)", nxt)
            if item and (cur is None or lead == cur[2]):
                cur = [item.group(1), [], lead]
                out.append(cur)
            elif cur is not None:
                cur[1].append(nxt)
    return [(name, "\n".join(body)) for name, body, _ in out]


def check_mounts(text, cfg, cfg_path):
    """Every container running qgate mounts cfg_path and every file cfg names."""
    volumes = set(re.findall(r"^\s*- name:\s*([\w-]+)\s*\n\s*(?:configMap|secret):", text,
                             re.M))
    files = [("the configuration", cfg_path)] + named_files(cfg)
    checked = []
    for name, block in containers(text):
        runs_qgate = "qgate --check" in block or re.search(r'args:\s*\[\s*"-c"', block)
        if not runs_qgate:
            continue
        mounts = re.findall(r"\{name:\s*([\w-]+),\s*mountPath:\s*([^,}\s]+)", block)
        for vol, _ in mounts:
            if vol not in volumes:
                fail(f"container {name} mounts volume {vol}, which the pod does not define "
                     f"(volumes: {sorted(volumes)})")
        for what, path in files:
            if not any(path == mp or path.startswith(mp.rstrip("/") + "/") for _, mp in mounts):
                fail(f"container {name} runs qgate but mounts nothing at {path} ({what}): "
                     f"its qgate would refuse the configuration (mounts: {mounts})")
        checked.append(name)
    if len(checked) < 2:
        fail(f"expected the qgate and reloader containers to run qgate, found {checked}")
    return checked


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

    m = re.search(r'args:\s*\[\s*"-c",\s*"([^"]+)"', text)
    if not m:
        fail("the qgate container's args do not name its configuration (-c PATH)")
    checked = check_mounts(text, cfg, m.group(1))

    with tempfile.TemporaryDirectory() as tmp:
        # the paths are checked against the mounts above; --check here reads local copies
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
    print(f"ok: qgate --check accepts the example; {', '.join(checked)} mount its files; "
          f"ports kdb={named['kdb']} "
          f"stats={named['stats']}; grace {grace_s} s")


if __name__ == "__main__":
    main()
