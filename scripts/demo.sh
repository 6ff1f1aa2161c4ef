#!/bin/bash
# scripts/demo.sh — qgate in two minutes, on a fresh Debian bookworm machine as root:
#
#   ./scripts/demo.sh
#
# Checks first that every port it uses is free: TCP 5001 and 5002 (mockq backends q1 and q2,
# with q's abstract unix sockets @/tmp/kx.5001 and @/tmp/kx.5002), 5050 (qgate, and its unix
# socket @/tmp/kx.5050) and 8080 (qgate's stats endpoint and status page): the addresses
# docs/examples/demo.json names. Then installs what it needs (scripts/install-deps.sh build
# python), builds into build-demo/, starts the two backends, queries each with a real q
# client (PyKX), starts qgate and sends the same queries through it over TCP and q's unix
# socket, printing a table of every answer and the backend that served it (.mock.id[]). Then
# it shows the gateway's own view: the admin table .qgate.backends[] over q (user admin), a few
# lines of /metrics, and the status page's address. Run from a terminal, it waits for Enter
# so the status page can be opened; everything it started is stopped on exit, also on
# Ctrl-C. Logs of the processes stay in a temporary directory named at the end.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

BUILD=build-demo
CONFIG=docs/examples/demo.json
Q1_PORT=5001
Q2_PORT=5002
GW_PORT=5050	# docs/examples/demo.json: "main" 127.0.0.1:5050 and "local" unix:5050
STATS_PORT=8080	# docs/examples/demo.json: "stats" 127.0.0.1:8080
STATS=http://127.0.0.1:$STATS_PORT
PY="$REPO/.venv/bin/python"
LOGS=$(mktemp -d /tmp/qgate-demo.XXXXXX)
PIDS=()

step() {
	printf '\n=== %s\n' "$*"
}

cleanup() {
	local rc=$?
	if [ ${#PIDS[@]} -gt 0 ]; then
		step "stopping what the demo started (pids ${PIDS[*]})"
		kill -TERM "${PIDS[@]}" 2>/dev/null || true
		for pid in "${PIDS[@]}"; do
			# bounded wait: qgate finishes in-flight requests within its grace period
			for _ in $(seq 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		done
	fi
	echo "logs: $LOGS"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Poll until 127.0.0.1:PORT accepts (bounded: 10 s); give up early if PID died.
wait_port() {
	local port=$1 pid=$2 name=$3
	for _ in $(seq 200); do
		port_open "$port" && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "$name exited before it listened; its log:" >&2
			tail -20 "$LOGS/$name.log" >&2
			return 1
		fi
		sleep 0.05
	done
	echo "$name did not listen on $port within 10 s" >&2
	return 1
}

# q's abstract unix socket for a port (mockq --unix, qgate's "unix:N" listener)
unix_open() {
	grep -q " @/tmp/kx\.$1\$" /proc/net/unix 2>/dev/null
}

require_free() {
	if port_open "$1"; then
		echo "port $1 is already in use: stop whatever listens there and rerun" >&2
		exit 1
	fi
}

require_free_unix() {
	if unix_open "$1"; then
		echo "unix socket @/tmp/kx.$1 is already in use: stop whatever listens there" >&2
		exit 1
	fi
}

start_mockq() {
	local name=$1 port=$2
	require_free "$port"
	"$BUILD/bench/mockq" --port "$port" --unix --name "$name" >"$LOGS/$name.log" 2>&1 &
	PIDS+=($!)
	wait_port "$port" $! "$name"
	echo "mockq $name listening on 127.0.0.1:$port and unix @/tmp/kx.$port (pid ${PIDS[-1]})"
}

start_qgate() {
	require_free "$GW_PORT"
	"$BUILD/gateway/qgate" -c "$CONFIG" >"$LOGS/qgate.log" 2>&1 &
	PIDS+=($!)
	wait_port "$GW_PORT" $! qgate
	echo "qgate listening on 127.0.0.1:$GW_PORT and unix @/tmp/kx.$GW_PORT (pid ${PIDS[-1]})"
}

client() {
	"$PY" scripts/demo_client.py "$@"
}

step "ports: 5001, 5002, 5050 and 8080 on 127.0.0.1, @/tmp/kx.{5001,5002,5050} must be free"
for p in "$Q1_PORT" "$Q2_PORT" "$GW_PORT" "$STATS_PORT"; do
	require_free "$p"
done
for p in "$Q1_PORT" "$Q2_PORT" "$GW_PORT"; do
	require_free_unix "$p"
done
echo "all free"

step "install: build tools, libraries and the Python q clients"
bash scripts/install-deps.sh build python

step "build ($BUILD)"
if [ -f "$BUILD/build.ninja" ]; then
	meson setup --reconfigure "$BUILD" -Dtests=false >"$LOGS/meson-setup.log" ||
		{ cat "$LOGS/meson-setup.log"; exit 1; }
else
	meson setup "$BUILD" -Dtests=false >"$LOGS/meson-setup.log" ||
		{ cat "$LOGS/meson-setup.log"; exit 1; }
fi
ninja -C "$BUILD" >"$LOGS/ninja.log" || { cat "$LOGS/ninja.log"; exit 1; }
echo "built: $(cd "$BUILD" && ls bench/mockq gateway/qgate 2>/dev/null | tr '\n' ' ')"

step "start two backends"
start_mockq q1 "$Q1_PORT"
start_mockq q2 "$Q2_PORT"

step "query each backend directly"
client --label "direct to q1" --port "$Q1_PORT"
client --label "direct to q2" --port "$Q2_PORT"

if [ -x "$BUILD/gateway/qgate" ]; then
	step "start qgate with $CONFIG"
	start_qgate

	step "the same queries through qgate (one address, both backends)"
	client --label "through qgate (tcp)" --port "$GW_PORT" --rounds 2 --user demo:demo
	client --label "through qgate (unix)" --port "$GW_PORT" --unix --user demo:demo
else
	step "qgate is not built yet: skipping the gateway part"
fi

step "the gateway's own view over q: .qgate.backends[] (admin users only)"
client --label "admin table" --port "$GW_PORT" --user admin:admin --admin '.qgate.backends[]'

step "a few lines of /metrics (Prometheus; the whole scrape: curl $STATS/metrics)"
"$PY" - "$STATS/metrics" <<'EOF'
import re, sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
pick = re.compile(r"^qgate_(backend_up|backend_requests_total|pool_requests_total|"
                  r"request_duration_seconds_count|clients)\b")
lines = [l for l in body.splitlines() if pick.match(l)]
for l in lines[:12]:
    print("  " + l)
print(f"  ... {len(body.splitlines())} lines in all")
EOF

step "status page"
echo "  $STATS/  (pools, backends, states, queues, rates and latency; refreshes itself)"
echo "  also: $STATS/stats (JSON), $STATS/metrics, $STATS/health; docs/operations.md"
if [ -t 0 ]; then
	read -r -p "  open it now; press Enter to stop the demo " _ || true
fi
