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
# As Debian policy wants (lintian, tests/package): the binary stripped, man pages and the
# changelog gzip -9n, /usr/share/doc/qgate/copyright (machine-readable; the license is
# meson.build's: proprietary). Maintainer: DEBFULLNAME <DEBEMAIL> (the variables Debian's
# tools read) when set, else the git identity of the tree (user.name <user.email>); there is
# no published maintainer address, so none is made up. Dates come from SOURCE_DATE_EPOCH, else
# the last commit, so the same tree gives the same package.
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
		sed -n '2,21p' "$0"
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
quiet meson install -C "$BUILD" --destdir "$ROOT" --no-rebuild --strip

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

# who answers for this package, honestly: whoever builds it says so (see the header)
MAINT_NAME=${DEBFULLNAME:-$(git -C "$REPO" config user.name 2>/dev/null || true)}
MAINT_MAIL=${DEBEMAIL:-$(git -C "$REPO" config user.email 2>/dev/null || true)}
if [ -z "$MAINT_NAME" ] || [ -z "$MAINT_MAIL" ]; then
	echo "package-deb: no maintainer: set DEBFULLNAME and DEBEMAIL (or git user.name/email)" >&2
	exit 1
fi
MAINTAINER="$MAINT_NAME <$MAINT_MAIL>"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH	# dpkg-deb clamps the files' times to it

# man pages and the changelog gzipped without name or time stamp (-n): reproducible
if [ -d "$ROOT/usr/share/man" ]; then
	find "$ROOT/usr/share/man" -type f -name '*.[0-9]' -exec gzip -9n {} +
fi
DOC=$ROOT/usr/share/doc/qgate
mkdir -p "$DOC"
cat >"$DOC/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: qgate
Comment: qgate is not free software and is not published; meson.build declares its
 license 'proprietary'. This package is for the machines of those who hold a copy.

Files: *
Copyright: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y) the qgate authors
License: proprietary
 All rights reserved. No permission to copy, modify or distribute this software is
 given by this package; use it only as your agreement with its authors allows.
EOF
# a native package (no Debian revision in the version): its changelog is changelog.gz
cat >"$STAGE/changelog" <<EOF
qgate ($VERSION) unstable; urgency=medium

  * qgate $VERSION, packed by scripts/package-deb.sh from the meson project;
    the project's history has the changes.

 -- $MAINTAINER  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
EOF
gzip -9n -c "$STAGE/changelog" >"$DOC/changelog.gz"

# conffiles: everything installed under /etc (the operator's to edit; dpkg keeps their copy)
mkdir -p "$ROOT/DEBIAN"
(cd "$ROOT" && find etc -type f | sort | sed 's|^|/|') >"$ROOT/DEBIAN/conffiles"
# md5sums of every file but the conffiles (dpkg keeps theirs itself), for debsums/dpkg -V
(cd "$ROOT" && find usr -type f | LC_ALL=C sort | xargs -r md5sum) >"$ROOT/DEBIAN/md5sums"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat >"$ROOT/DEBIAN/control" <<EOF
Package: qgate
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
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
