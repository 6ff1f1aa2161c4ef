#!/bin/bash
# scripts/check-includes.sh — the dependency direction of style.md, checked on the sources:
#
#   (a) nothing in pool/ or codec/ includes "gateway/...": the pure libraries know no I/O;
#   (b) nothing in codec/ includes "pool/...": the codec depends on libc only;
#   (c) the #include "gateway/..." edges among gateway/*.h form no cycle, so every header
#       can be read (and compiled) on its own, and the include graph is the architecture.
#
# Run from anywhere; exits non-zero and names every violation. Needs bash, grep, python3.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
fail=0

# quoted includes only: <...> are system headers. Comment lines are not includes.
inc_re='^[[:space:]]*#[[:space:]]*include[[:space:]]*"'

bad=$(grep -HnE "${inc_re}gateway/" -- pool/*.[ch] codec/*.[ch] 2>/dev/null)
if [ -n "$bad" ]; then
	echo "$bad"
	echo "check-includes: pool/ and codec/ must not include gateway/ headers" >&2
	fail=1
fi

bad=$(grep -HnE "${inc_re}pool/" -- codec/*.[ch] 2>/dev/null)
if [ -n "$bad" ]; then
	echo "$bad"
	echo "check-includes: codec/ must not include pool/ headers" >&2
	fail=1
fi

# (c) depth-first search over the header graph; prints each cycle found as a -> b -> a
python3 - gateway/*.h <<'PY' || fail=1
import re, sys

inc = re.compile(r'^\s*#\s*include\s*"(gateway/[^"]+\.h)"')
edges = {}
for path in sys.argv[1:]:
    with open(path) as f:
        edges[path] = [m.group(1) for m in map(inc.match, f) if m]

WHITE, GREY, BLACK = 0, 1, 2
color = {h: WHITE for h in edges}
cycles = []

def visit(h, stack):
    color[h] = GREY
    stack.append(h)
    for t in edges.get(h, []):
        if t not in edges:
            continue  # not a gateway header we were given (reported by the compiler)
        if color[t] == GREY:
            cycles.append(stack[stack.index(t):] + [t])
        elif color[t] == WHITE:
            visit(t, stack)
    stack.pop()
    color[h] = BLACK

for h in sorted(edges):
    if color[h] == WHITE:
        visit(h, [])
for c in cycles:
    print("include cycle: " + " -> ".join(c))
if cycles:
    print("check-includes: gateway/ headers include each other in a cycle "
          "(use a forward declaration, or a type-only header)", file=sys.stderr)
    sys.exit(1)
n = sum(len(v) for v in edges.values())
print(f"{len(edges)} gateway headers, {n} include edges, no cycle")
PY

[ $fail -eq 0 ] && echo "check-includes: ok"
exit $fail
