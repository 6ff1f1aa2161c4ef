#!/usr/bin/env python3
"""tests/docs/check_man.py — the man pages against the program and the docs.

    check_man.py --qgate BIN --man8 qgate.8 --man5 qgate.json.5 --confdoc docs/configuration.md

Each check prints one line and the script exits 1 if any failed:
  render    both pages format with groff -ww and man --warnings without a warning, no line
            wider than 80 columns, and have the sections an operator looks for;
  fields    the fields qgate.json(5) lists (generated from gateway/config.c's tables) and the
            fields the tables of docs/configuration.md describe are the same set, both ways;
  known     a file setting every listed field to null draws no "unknown key" from
            qgate --check (the page names keys the real loader knows);
  example   the EXAMPLE of qgate.json(5) passes qgate --check (placeholders filled in);
  options   every option `qgate --help` prints is in qgate(8)'s OPTIONS, and every option
            there is accepted by qgate;
  exit      every status in EXIT STATUS is one qgate really exits with, and the reverse;
  stats     every path in STATS ENDPOINT is served by a running qgate (not 404);
  messages  every log message a page quotes (msg="...") is one the source logs
            (gateway/*.c, as the text of a msg=\"...\" in a log call).
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

FAILS = []
TIMEOUT = 20


def check(name, ok, detail=""):
    """One line per check; a passing check shows only the first line of its detail."""
    detail = str(detail).strip()
    if ok:
        detail = detail.splitlines()[0][:100] if detail else ""
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        FAILS.append(name)
    return ok


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", TIMEOUT)
    return subprocess.run(cmd, **kw)


# ------------------------------------------------------------------ rendering

def render(path):
    """The page as man shows it at 80 columns, formatting stripped; checks for warnings."""
    g = run(["groff", "-man", "-Tutf8", "-ww", "-z", path])
    check(f"render {os.path.basename(path)}: groff -man -ww", g.returncode == 0 and not g.stderr,
          g.stderr.strip()[:500])
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="", PAGER="cat", LC_ALL="C.UTF-8")
    m = run(["man", "--warnings", "-l", path], env=env)
    check(f"render {os.path.basename(path)}: man --warnings -l", m.returncode == 0 and
          not m.stderr and len(m.stdout) > 1000, (m.stderr.strip() or
                                                   f"{len(m.stdout)} bytes")[:500])
    text = re.sub(r".\x08", "", m.stdout)          # overstrike bold/underline
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)      # SGR, if any
    wide = [ln for ln in text.splitlines() if len(ln) > 80]
    check(f"render {os.path.basename(path)}: lines within 80 columns", not wide,
          "; ".join(w.strip()[:60] for w in wide[:3]))
    return text


def sections(text):
    """{SECTION NAME: [lines]} of a rendered page (headers are unindented capitals)."""
    out, cur = {}, None
    lines = text.splitlines()
    for ln in lines[1:-1]:                          # skip the header and footer lines
        if re.fullmatch(r"[A-Z][A-Z ]+", ln):
            cur = ln
            out[cur] = []
        elif cur:
            out[cur].append(ln)
    return out


def need_sections(page, secs, names):
    missing = [n for n in names if n not in secs]
    check(f"sections of {page}", not missing, "missing " + ", ".join(missing) if missing
          else ", ".join(names))


# ------------------------------------------------------------------ fields

PATH_RE = r"[a-z_]+(?:\[\])?(?:\.[a-z_]+(?:\[\])?)*"


def man_fields(fields_lines):
    """Field paths in qgate.json(5)'s FIELDS: a path alone at 7 columns with its text at 11."""
    found, sub = [], None
    for i, ln in enumerate(fields_lines):
        m = re.fullmatch(r"   (\S.*)", ln)
        if m:
            sub = m.group(1)
            continue
        m = re.fullmatch(r" {7}(" + PATH_RE + r")", ln)
        nxt = fields_lines[i + 1] if i + 1 < len(fields_lines) else ""
        if m and re.match(r" {11}\S", nxt):
            path = m.group(1)
            if sub is None or (sub != "Top level" and not path.startswith(sub + ".")) or \
               (sub == "Top level" and "." in path):
                check("fields: each under its own heading", False, f"{path} under {sub}")
            found.append(path)
    return found


def norm(path):
    return path.replace("[]", "")


def doc_fields(md_path):
    """Field paths described by the tables of docs/configuration.md.

    A table whose header's first cell is "key" is a field table; its section is the first
    `path` in backticks of the nearest heading above ("## `pools`", "### `pools[].queue`"),
    or the top level under "## Top level". A field table under any other heading is an
    error: the extractor would not know whose fields they are."""
    found, prefix, heading, in_table = [], None, None, False
    for n, ln in enumerate(open(md_path, encoding="utf-8"), 1):
        ln = ln.rstrip("\n")
        h = re.match(r"#{1,6}\s+(.*)", ln)
        if h:
            heading = h.group(1)
            m = re.match(r"`(" + PATH_RE + r")`\s*$", heading)
            prefix = "" if heading.strip() == "Top level" else (m.group(1) if m else None)
            in_table = False
            continue
        if not ln.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if cells[0] == "key":
            in_table = True
            if prefix is None:
                check("configuration.md: field tables under a field heading", False,
                      f"line {n}: a key table under heading {heading!r}")
                in_table = False
            continue
        if not in_table or set(cells[0]) <= set("-: "):
            continue
        keys = re.findall(r"`([^`]+)`", cells[0])
        if not keys:
            check("configuration.md: every table row names its key in backticks", False,
                  f"line {n}: {cells[0]!r}")
        for k in keys:
            if not re.fullmatch(r"[a-z_]+", k):
                check("configuration.md: keys are plain names", False, f"line {n}: {k!r}")
                continue
            found.append((prefix + "." if prefix else "") + k)
    return found


def set_path(root, path):
    """Put path into a skeleton config: arrays get one element, leaves are null."""
    node = root
    parts = path.split(".")
    for i, part in enumerate(parts):
        is_arr = part.endswith("[]")
        key = part[:-2] if is_arr else part
        last = i == len(parts) - 1
        if last and not is_arr:
            node.setdefault(key, None)
            return
        if is_arr:
            cur = node.get(key)
            if not isinstance(cur, list):
                cur = node[key] = [{}]
            node = cur[0]
        else:
            cur = node.get(key)
            if not isinstance(cur, dict):
                cur = node[key] = {}
            node = cur


# ------------------------------------------------------------------ log messages

def check_messages(src_dir, man_dir):
    """Every msg="..." the pages' sources quote is logged by the code, so the two cannot drift
    apart (read from the .scd sources: the rendered text may hyphenate). A quote ending in
    "..." stands for any message it begins."""
    src = ""
    for name in sorted(os.listdir(src_dir)):
        if name.endswith(".c"):
            with open(os.path.join(src_dir, name)) as f:
                src += f.read()
    # adjacent C string literals are one string: join them before looking
    src = re.sub(r'"\s*\n\s*"', "", src)
    logged = set(re.findall(r'msg=\\"((?:[^"\\]|\\[^"])*)\\"', src))
    quoted = set()
    for name in sorted(os.listdir(man_dir)):
        if ".scd" in name:
            with open(os.path.join(man_dir, name)) as f:
                quoted |= set(re.findall(r'msg="([^"]+)"', " ".join(f.read().split())))
    check("messages: the pages quote log messages", len(quoted) >= 2, f"{len(quoted)} quoted")

    def is_logged(q):
        if q.endswith("..."):
            return any(m.startswith(q[:-3]) for m in logged)
        return q in logged
    missing = sorted(q for q in quoted if not is_logged(q))
    check("messages: every msg=\"...\" the pages quote is logged by gateway/*.c", not missing,
          "not in the source: " + "; ".join(missing) if missing else
          f"{len(quoted)} of {len(logged)} logged messages quoted")


# ------------------------------------------------------------------ the example

def check_example(qgate, fields_text, tmp):
    block = [ln for ln in fields_text if ln.startswith("           ") or not ln.strip()]
    src = "\n".join(ln[11:] for ln in block).strip()
    try:
        cfg = json.loads(src)
    except ValueError as e:
        check("example: EXAMPLE is JSON", False, str(e))
        return
    h = run([qgate, "--hash-password"], input="example-password\n")
    text = src.replace("<from qgate --hash-password>", h.stdout.strip())
    text = text.replace("/var/log/qgate/audit.log", os.path.join(tmp, "audit.log"))
    for name in ("gw", "ca"):
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-keyout", os.path.join(tmp, name + ".key"),
             "-out", os.path.join(tmp, name + ".crt")])
    os.rename(os.path.join(tmp, "ca.crt"), os.path.join(tmp, "ca.pem"))
    path = os.path.join(tmp, "example.json")
    with open(path, "w") as f:
        f.write(text)
    r = run([qgate, "--check", "-c", path], env=dict(os.environ, HDB_PW="secret"))
    check("example: qgate --check accepts qgate.json(5)'s EXAMPLE",
          r.returncode == 0 and "config OK" in r.stdout and len(cfg.get("pools", [])) > 0,
          (r.stderr.strip() or r.stdout.strip())[:600])


# ------------------------------------------------------------------ qgate(8)

def option_labels(lines):
    """Options named at 7 columns in OPTIONS ("-c FILE", "-h, --help"): {option: takes_arg}."""
    opts = {}
    for ln in lines:
        if re.match(r" {7}-", ln):
            for m in re.finditer(r"(?<![\w-])(--?[a-z][a-z-]*)( [A-Z]+\b)?", ln):
                opts[m.group(1)] = bool(m.group(2))
    return opts


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def check_stats(qgate, lines, tmp):
    paths = []
    for ln in lines:
        m = re.fullmatch(r" {7}GET (/\S*)", ln)
        if m:
            paths.append(m.group(1))
    if not check("stats: STATS ENDPOINT names paths", len(paths) >= 3, " ".join(paths)):
        return
    port, dead = free_port(), free_port()
    cfg = {"pools": [{"name": "p", "connect": "lazy",
                      "backends": [{"address": f"127.0.0.1:{dead}"}]}],
           "listeners": [{"listen": f"127.0.0.1:{free_port()}"}],
           "stats": {"listen": f"127.0.0.1:{port}"}}
    path = os.path.join(tmp, "stats.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    proc = subprocess.Popen([qgate, "-c", path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        up = False
        while time.monotonic() < deadline and proc.poll() is None and not up:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                up = True
            except OSError:
                time.sleep(0.05)
        if not check("stats: qgate serves its stats port", up,
                     "" if up else (proc.stderr.read() if proc.poll() is not None else "")):
            return
        for p in paths:
            try:
                code = urllib.request.urlopen(f"http://127.0.0.1:{port}{p}", timeout=5).status
            except urllib.error.HTTPError as e:
                code = e.code
            except OSError as e:
                code = str(e)
            check(f"stats: GET {p} is served", code in (200, 401, 503), f"status {code}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        check("stats: qgate exits 0 on SIGTERM", proc.returncode == 0,
              f"status {proc.returncode}")


def exit_statuses(qgate, tmp):
    """The exit statuses qgate can be made to give, each with how."""
    bad = os.path.join(tmp, "bad.json")
    with open(bad, "w") as f:
        f.write('{"pools": [], "listners": []}')
    cases = {
        0: [[qgate, "--version"]],
        1: [[qgate, "--check", "-c", bad], [qgate, "-c", bad]],
        2: [[qgate, "--no-such-option"], [qgate]],
    }
    seen = {}
    for want, cmds in cases.items():
        for cmd in cmds:
            r = run(cmd)
            check(f"exit: {' '.join(os.path.basename(c) for c in cmd)} exits {want}",
                  r.returncode == want, f"got {r.returncode}")
            seen[want] = seen.get(want, 0) + (r.returncode == want)
    return {k for k, v in seen.items() if v}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qgate", required=True)
    ap.add_argument("--man8", required=True)
    ap.add_argument("--man5", required=True)
    ap.add_argument("--confdoc", required=True)
    ap.add_argument("--src", required=True, help="gateway/ (the .c files that log)")
    ap.add_argument("--mansrc", required=True, help="docs/man/ (the pages' .scd sources)")
    a = ap.parse_args()
    for p in (a.man8, a.man5):
        if not os.path.isfile(p):
            check(f"{os.path.basename(p)} was built", False,
                  "missing: is scdoc installed? (meson setup says 'scdoc not found'; "
                  "scripts/install-deps.sh build installs it)")
    if FAILS:
        return 1

    tmp = tempfile.mkdtemp(prefix="qgate-man.")
    # ---- render and sections
    t8, t5 = render(a.man8), render(a.man5)
    s8, s5 = sections(t8), sections(t5)
    need_sections("qgate(8)", s8, ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS",
                                   "EXIT STATUS", "ENVIRONMENT", "FILES", "STATS ENDPOINT",
                                   "SEE ALSO"])
    need_sections("qgate.json(5)", s5, ["NAME", "SYNOPSIS", "DESCRIPTION", "FIELDS",
                                        "EXAMPLE", "SEE ALSO"])
    for sec, words in (("SIGNALS", ["SIGHUP", "SIGTERM", "SIGINT", "shutdown_grace_ms", "TLS"]),
                       ("FILES", ["/etc/qgate/qgate.json", "/etc/logrotate.d/qgate",
                                  "qgate.service", "audit"]),
                       ("ENVIRONMENT", ["NOTIFY_SOCKET", "WATCHDOG_USEC"]),
                       ("SEE ALSO", ["qgate.json(5)", "systemd.service(5)"])):
        body = " ".join(" ".join(s8.get(sec, [])).split())
        missing = [w for w in words if w not in body]
        check(f"qgate(8) {sec} mentions {', '.join(words)}", not missing,
              "missing " + ", ".join(missing) if missing else "")

    # ---- log messages the pages quote
    check_messages(a.src, a.mansrc)

    # ---- fields: the page against configuration.md, both ways
    gen = man_fields(s5.get("FIELDS", []))
    doc = doc_fields(a.confdoc)
    gen_n, doc_n = {norm(p) for p in gen}, {norm(p) for p in doc}
    # a broken extractor finds few or none, and "nothing missing" would then prove nothing
    check("fields: qgate.json(5) lists a plausible number of fields", len(gen) >= 60,
          f"{len(gen)} found")
    check("fields: configuration.md describes a plausible number of fields", len(doc) >= 60,
          f"{len(doc)} found")
    dup = sorted({p for p in doc if doc.count(p) > 1})
    check("fields: configuration.md describes each field once", not dup, ", ".join(dup))
    only_gen = sorted(gen_n - doc_n)
    only_doc = sorted(doc_n - gen_n)
    check("fields: every field of qgate.json(5) is described in docs/configuration.md",
          not only_gen, "not in configuration.md: " + ", ".join(only_gen) if only_gen
          else f"{len(gen_n)} fields")
    check("fields: every field of docs/configuration.md is in qgate.json(5)",
          not only_doc, "not in the config tables (gateway/config.c): " + ", ".join(only_doc)
          if only_doc else f"{len(doc_n)} fields")

    # ---- known: every listed path is a key the loader knows
    skel = {}
    for p in gen:
        set_path(skel, p)
    path = os.path.join(tmp, "every-key.json")
    with open(path, "w") as f:
        json.dump(skel, f)
    r = run([a.qgate, "--check", "-c", path])
    unknown = [ln for ln in r.stderr.splitlines() if "unknown key" in ln]
    check("known: qgate --check knows every key of qgate.json(5)",
          not unknown and "invalid configuration" in r.stderr, "; ".join(unknown[:5]) or
          "no unknown key")

    check_example(a.qgate, s5.get("EXAMPLE", []), tmp)

    # ---- options
    h = run([a.qgate, "--help"])
    usage = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", h.stdout))
    labels = option_labels(s8.get("OPTIONS", []))
    documented = set(labels)
    check("options: qgate --help prints options", h.returncode == 0 and len(usage) >= 4,
          " ".join(sorted(usage)))
    missing = sorted(usage - documented)
    check("options: every option of qgate --help is in qgate(8) OPTIONS", not missing,
          "missing " + " ".join(missing) if missing else " ".join(sorted(usage)))
    for opt in sorted(documented):
        r = run([a.qgate, opt] + ([os.path.join(tmp, "none.json")] if labels[opt] else []),
                input="")
        check(f"options: qgate accepts {opt}", "unknown argument" not in r.stderr,
              r.stderr.strip()[:200])

    # ---- exit statuses
    codes = {int(m.group(1)) for ln in s8.get("EXIT STATUS", [])
             for m in [re.fullmatch(r" {7}(\d+)", ln)] if m}
    real = exit_statuses(a.qgate, tmp)
    check("exit: EXIT STATUS documents statuses", len(codes) >= 2, str(sorted(codes)))
    check("exit: every documented status is one qgate exits with", codes <= real,
          f"documented {sorted(codes)}, produced {sorted(real)}")
    check("exit: every status qgate exits with is documented", real <= codes,
          f"documented {sorted(codes)}, produced {sorted(real)}")

    check_stats(a.qgate, s8.get("STATS ENDPOINT", []), tmp)

    subprocess.run(["rm", "-rf", tmp], check=False)
    print(f"check_man: {len(FAILS)} failed" + (": " + ", ".join(FAILS) if FAILS else ""))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
