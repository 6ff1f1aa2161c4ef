#!/bin/bash
# scripts/demo.sh — qgate in two minutes, on a fresh Debian bookworm machine as root:
#
#   ./scripts/demo.sh
#
# Installs what it needs (scripts/install-deps.sh build python), builds into build-demo/, starts
# two mockq backends (q1 on 5001, q2 on 5002: the addresses docs/examples/demo.json names),
# queries each with a real q client (PyKX), then starts qgate with docs/examples/demo.json and
# sends the same queries through it over TCP and q's unix socket, printing every answer and the
# backend that served it (.mock.id[]). Everything it started is stopped on exit, also on Ctrl-C.
# Logs of the processes stay in a temporary directory named at the end.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

BUILD=build-demo
CONFIG=docs/examples/demo.json
Q1_PORT=5001
Q2_PORT=5002
GW_PORT=5050	# docs/examples/demo.json: "main" 127.0.0.1:5050 and "local" unix:5050
STATS_URL=http://127.0.0.1:8080/stats
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

require_free() {
	if port_open "$1"; then
		echo "port $1 is already in use: stop whatever listens there and rerun" >&2
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
	client --label "through qgate (tcp)" --port "$GW_PORT" --rounds 2
	client --label "through qgate (unix)" --port "$GW_PORT" --unix
else
	step "qgate is not built yet: skipping the gateway part"
fi

step "stats"
echo "qgate's stats endpoint: $STATS_URL (GET /stats, /metrics, /health; see docs/operations.md)"
if "$PY" - "$STATS_URL" <<'EOF'
import sys, urllib.request
try:
    body = urllib.request.urlopen(sys.argv[1], timeout=2).read().decode()
except OSError as e:
    print(f"  not served right now ({e}); the config needs a \"stats\" listener")
    sys.exit(0)
print("  " + body[:600] + (" ..." if len(body) > 600 else ""))
EOF
then :; fi
