#!/bin/bash
# scripts/status-screenshot.sh [BUILD_DIR] [OUT.png] — regenerate docs/status-page.png, the
# status page's picture in the README: starts mockq backends and qgate from BUILD_DIR
# (default build/) on free loopback ports, two pools (one backend deliberately down), puts
# qbench load on them, and has headless Chromium (Debian chromium) take a 1200x700 shot of
# http://127.0.0.1:PORT/ while the load runs. Everything it starts is stopped at the end.
#
# Chromium runs the page in virtual time (--virtual-time-budget), so the three refreshes
# happen within a fraction of a real second: the req/s figures in the picture are lower than
# the real rates. The page itself, in a real browser, computes them over real time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "${1:-$REPO/build}" && pwd)
OUT=${2:-$REPO/docs/status-page.png}
for b in gateway/qgate bench/mockq bench/qbench; do
	[ -x "$BUILD/$b" ] || { echo "no $BUILD/$b: build first (ninja -C $BUILD)" >&2; exit 1; }
done
command -v chromium >/dev/null || { echo "chromium not found (apt-get install chromium)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/qgate-shot.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait (at most 10 s) for a line in a log
wait_for() {
	for _ in $(seq 100); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "timed out waiting for '$2' in $1:" >&2
	tail -n 20 "$1" >&2
	exit 1
}

declare -A P
for n in hdb1 hdb2 rdb1 rdb2 q_hdb q_rdb stats; do P[$n]=$(free_port); done
for n in hdb1 hdb2 rdb1; do
	timeout 120 "$BUILD/bench/mockq" --port "${P[$n]}" --name "$n" --work-us 300 \
		>"$WORK/$n.log" 2>&1 &
	PIDS+=($!)
	wait_for "$WORK/$n.log" listening
done
# rdb2: nothing listens there, so it shows as down
cat >"$WORK/qgate.json" <<EOF
{
  "listeners": [
    {"name": "hdb", "listen": "127.0.0.1:${P[q_hdb]}", "pool": "hdb"},
    {"name": "rdb", "listen": "127.0.0.1:${P[q_rdb]}", "pool": "rdb"}
  ],
  "stats": {"listen": "127.0.0.1:${P[stats]}"},
  "pools": [
    {"name": "hdb", "backends": [
      {"name": "hdb1", "address": "127.0.0.1:${P[hdb1]}", "connections": 4, "max_inflight": 2},
      {"name": "hdb2", "address": "127.0.0.1:${P[hdb2]}", "connections": 4, "max_inflight": 2}]},
    {"name": "rdb", "backends": [
      {"name": "rdb1", "address": "127.0.0.1:${P[rdb1]}", "connections": 2},
      {"name": "rdb2", "address": "127.0.0.1:${P[rdb2]}", "connections": 2}]}
  ]
}
EOF
timeout 120 "$BUILD/gateway/qgate" -c "$WORK/qgate.json" >"$WORK/qgate.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/qgate.log" "qgate ready"
wait_for "$WORK/qgate.log" "stats endpoint listening"

timeout 60 "$BUILD/bench/qbench" --port "${P[q_hdb]}" --conns 8 --seconds 8 >/dev/null 2>&1 &
PIDS+=($!)
timeout 60 "$BUILD/bench/qbench" --port "${P[q_rdb]}" --conns 2 --seconds 8 >/dev/null 2>&1 &
PIDS+=($!)
sleep 3	# some figures to show: counters, latency, queue

mkdir -p "$WORK/profile" "$(dirname "$OUT")"
timeout -k 5 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--user-data-dir="$WORK/profile" --hide-scrollbars --virtual-time-budget=5000 \
	--window-size=1200,700 --screenshot="$OUT" "http://127.0.0.1:${P[stats]}/" \
	>"$WORK/chromium.log" 2>&1 || { tail -n 20 "$WORK/chromium.log" >&2; exit 1; }
echo "$OUT: $(stat -c %s "$OUT") bytes"
