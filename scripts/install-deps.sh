#!/bin/bash
# scripts/install-deps.sh — installs what building and testing qgate need, on Debian bookworm as
# root. Shared by tests/run.sh and scripts/demo.sh so both install the same way.
#
#   scripts/install-deps.sh [build] [python] [node] [java] [tools] [all]
#
#   build   Debian packages to build qgate, mockq and qbench (+ criterion for the tests,
#           clang's libFuzzer runtime for the fuzz targets, scdoc for the man pages and
#           man-db/groff-base to check that they render)
#   python  Debian python3-venv, then <repo>/.venv with tests/interop/requirements.txt
#           (PyKX, qPython, pytest, and a NumPy/pandas pair qPython works with)
#   node    nodejs + npm if missing, then npm ci in tests/interop/node (node-q)
#   java    maven + a JDK if missing, then the Java driver's Maven dependencies
#   tools   haproxy (bench/ and the scale test put qgate behind it), promtool (Debian
#           prometheus: checks a live /metrics scrape), chromium (headless: the status page
#           test), systemd-analyze and logrotate (the unit file and the logrotate snippet),
#           lintian (the .deb of scripts/package-deb.sh)
#   all     everything above (the default)
#
# apt-get runs (with one apt-get update) only when a package is missing, so a rerun is quick.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1

want_build=0 want_python=0 want_node=0 want_java=0 want_haproxy=0
[ $# -eq 0 ] && set -- all
for a in "$@"; do
	case "$a" in
	build) want_build=1 ;;
	python) want_python=1 ;;
	node) want_node=1 ;;
	java) want_java=1 ;;
	tools) want_haproxy=1 ;;
	all) want_build=1 want_python=1 want_node=1 want_java=1 want_haproxy=1 ;;
	*) echo "usage: $0 [build] [python] [node] [java] [tools] [all]" >&2; exit 2 ;;
	esac
done

fail() {
	echo "install-deps: $*" >&2
	exit 1
}

# ---------------------------------------------------------------- Debian packages
PKGS=(ca-certificates)
[ $want_build = 1 ] && PKGS+=(meson ninja-build pkg-config gcc clang liburing-dev libssl-dev
	libjansson-dev libcriterion-dev openssl libclang-rt-14-dev libc-ares-dev
	libsystemd-dev scdoc man-db groff-base)
[ $want_python = 1 ] && PKGS+=(python3 python3-venv)
[ $want_java = 1 ] && PKGS+=(maven)
[ $want_haproxy = 1 ] && PKGS+=(haproxy prometheus chromium systemd logrotate lintian)
MISSING=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		MISSING+=("$p")
done
# node, npm and a JDK may come from elsewhere (NodeSource's nodejs ships npm and conflicts with
# Debian's npm package): ask for the Debian packages only when the commands are missing.
if [ $want_node = 1 ]; then
	command -v node >/dev/null || MISSING+=(nodejs)
	command -v npm >/dev/null || MISSING+=(npm)
fi
if [ $want_java = 1 ]; then
	command -v javac >/dev/null || MISSING+=(default-jdk-headless)
fi
if [ ${#MISSING[@]} -gt 0 ]; then
	echo "apt: installing ${MISSING[*]}"
	[ "$(id -u)" -eq 0 ] || fail "missing Debian packages (${MISSING[*]}): run as root"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q || fail "apt-get update failed"
	apt-get install -y -q --no-install-recommends "${MISSING[@]}" || fail "apt-get install failed"
else
	echo "apt: all packages present"
fi

# ---------------------------------------------------------------- Python clients
if [ $want_python = 1 ]; then
	VENV="$REPO/.venv"
	if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
		rm -rf "$VENV"
		python3 -m venv "$VENV" || fail "python3 -m venv $VENV failed"
	fi
	"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
		-r tests/interop/requirements.txt || fail "pip install failed"
	echo "python: $("$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null |
		grep -iE '^(numpy|pandas|pykx|qpython3|pytest) ' | tr -s ' ' | paste -sd, -)"
fi

# ---------------------------------------------------------------- node-q
if [ $want_node = 1 ]; then
	(cd tests/interop/node && npm ci --no-audit --no-fund --loglevel=error) ||
		fail "npm ci in tests/interop/node failed"
	nodeq_pkg=./tests/interop/node/node_modules/node-q/package.json
	echo "node: $(node --version), node-q $(node -p "require('$nodeq_pkg').version")"
fi

# ---------------------------------------------------------------- Java driver
if [ $want_java = 1 ]; then
	# The goals the interop runner later runs offline (-o), so every plugin it needs is cached.
	out=$(mktemp -d /tmp/qgate-java.XXXXXX)
	if ! mvn -q -B -Dstyle.color=never -f tests/interop/java/pom.xml \
		-Dqgate.build.dir="$out" compile dependency:build-classpath \
		-Dmdep.outputFile="$out/classpath.txt" >"$out/mvn.log" 2>&1; then
		cat "$out/mvn.log"
		rm -rf "$out"
		fail "Maven could not resolve/compile tests/interop/java"
	fi
	echo "java: $(cat "$out/classpath.txt")"
	rm -rf "$out"
fi
exit 0
