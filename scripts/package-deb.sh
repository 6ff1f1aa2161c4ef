#!/bin/bash
# scripts/package-deb.sh — a binary .deb of qgate, made from what `meson install` installs.
#
#   scripts/package-deb.sh [-B BUILD_DIR] [-o OUT_DIR]
#
# Configures BUILD_DIR (default build-deb) with --prefix=/usr --buildtype=release -Dtests=false,
# installs it into a staging tree (meson install --destdir) and packs that tree with dpkg-deb:
# /usr/sbin/qgate, the systemd unit, /etc/qgate/qgate.json and /etc/logrotate.d/qgate, and
# whatever else meson installs (man pages). DEBIAN/control gets the version of meson's
# project(), the architecture of dpkg --print-architecture and Depends from dpkg-shlibdeps
# over every ELF file staged (the library packages and the versions the binary needs).
# Both files in /etc are conffiles. No maintainer scripts: the unit uses DynamicUser=, so no
# user needs creating, and the package installs into a scratch root (dpkg --root) as well.
# The last line printed is the path of the .deb.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$REPO/build-deb
OUT=$REPO
while getopts "B:o:h" opt; do
	case $opt in
	B) BUILD=$(realpath -m "$OPTARG") ;;
	o) OUT=$(realpath -m "$OPTARG") ;;
	*)
		sed -n '2,14p' "$0"
		[ "$opt" = h ] && exit 0 || exit 2
		;;
	esac
done

for tool in meson dpkg-deb dpkg-shlibdeps dpkg; do
	command -v "$tool" >/dev/null || { echo "package-deb: $tool not found" >&2; exit 1; }
done

cd "$REPO"
# reuse the directory when it reconfigures; the prefix must be /usr (the unit names
# /usr/sbin/qgate and /etc/qgate/qgate.json)
opts=(--prefix=/usr --buildtype=release -Dtests=false -Dwerror=true)
# quiet when it works; the whole output (compiler errors are on stdout) when it does not
quiet() {
	local out
	out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; echo "package-deb: $* failed" >&2; exit 1; }
}
if [ -f "$BUILD/build.ninja" ]; then
	quiet meson setup --reconfigure "$BUILD" "${opts[@]}"
else
	quiet meson setup "$BUILD" "${opts[@]}"
fi
quiet meson compile -C "$BUILD"

STAGE=$(mktemp -d /tmp/qgate-deb.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/root
quiet meson install -C "$BUILD" --destdir "$ROOT" --no-rebuild

VERSION=$(meson introspect --projectinfo "$BUILD" |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
ARCH=$(dpkg --print-architecture)
[ -x "$ROOT/usr/sbin/qgate" ] || { echo "package-deb: meson installed no /usr/sbin/qgate" >&2; exit 1; }

# Depends: dpkg-shlibdeps reads debian/control from its working directory, so it runs in a
# minimal one beside the staging tree.
mkdir -p "$STAGE/src/debian"
printf 'Source: qgate\n\nPackage: qgate\nArchitecture: any\n' >"$STAGE/src/debian/control"
mapfile -t ELFS < <(find "$ROOT" -type f -perm -u+x -exec sh -c \
	'head -c 4 "$1" | grep -q "ELF" && echo "$1"' _ {} \;)
DEPENDS=$(cd "$STAGE/src" && dpkg-shlibdeps -O "${ELFS[@]/#/-e}" 2>/dev/null |
	sed -n 's/^shlibs:Depends=//p')
[ -n "$DEPENDS" ] || { echo "package-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

# conffiles: everything installed under /etc (the operator's to edit; dpkg keeps their copy)
mkdir -p "$ROOT/DEBIAN"
(cd "$ROOT" && find etc -type f | sort | sed 's|^|/|') >"$ROOT/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat >"$ROOT/DEBIAN/control" <<EOF
Package: qgate
Version: $VERSION
Architecture: $ARCH
Maintainer: qgate developers <qgate@localhost>
Installed-Size: $SIZE
Depends: $DEPENDS
Section: net
Priority: optional
Description: connection-pooling gateway for kdb+/q
 qgate accepts q IPC clients, authenticates them and routes their messages over
 pools of backend q processes, with reconnects, queueing, TLS, a stats endpoint
 and an audit log. Runs as the systemd service qgate.service (Type=notify).
EOF
chmod -R u+rwX,go+rX,go-w "$ROOT"
mkdir -p "$OUT"
DEB=$OUT/qgate_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group --build "$ROOT" "$DEB" >/dev/null
echo "package-deb: Depends: $DEPENDS" >&2
echo "$DEB"
