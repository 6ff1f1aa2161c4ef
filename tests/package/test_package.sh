#!/bin/bash
# tests/package/test_package.sh — the .deb of scripts/package-deb.sh, installed and used.
#
#   tests/package/test_package.sh BUILD_ROOT VERSION     (meson test --suite package)
#
# Builds the package (its own build dir, BUILD_ROOT/deb-build), checks its control fields
# (version, architecture, Depends naming the library packages, conffiles), installs it with
# dpkg -i into a scratch root whose dpkg database holds the host's entries for exactly the
# packages it depends on (so dpkg checks the Depends against what is installed, and nothing on
# the machine changes), runs the installed qgate --version and --check on the installed
# config, verifies the installed unit with systemd-analyze (verify, and security --offline),
# tries the logrotate snippet (logrotate -d, then a real copytruncate under an open O_APPEND
# writer, as qgate's audit log is), runs lintian on the .deb (any E: tag fails; W: and I: tags
# are listed), then removes and purges the package.
set -uo pipefail

BUILD_ROOT=$1
VERSION=$2
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d /tmp/qgate-pkgtest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
FAILS=0

ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
check() { # check "what" command...
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}

# ---- build
DEB=$(timeout 600 "$REPO/scripts/package-deb.sh" -B "$BUILD_ROOT/deb-build" -o "$WORK/out" | tail -n 1)
[ -f "$DEB" ] || { echo "FAIL: package-deb.sh printed no .deb (got '$DEB')"; exit 1; }
ok "built $DEB"

# ---- control fields
field() { dpkg-deb -f "$DEB" "$1"; }
check "Package is qgate" [ "$(field Package)" = qgate ]
check "Version $VERSION (meson project)" [ "$(field Version)" = "$VERSION" ]
check "Architecture $(dpkg --print-architecture)" [ "$(field Architecture)" = "$(dpkg --print-architecture)" ]
DEPENDS=$(field Depends)
echo "Depends: $DEPENDS"
for lib in liburing libssl libjansson libc-ares libsystemd libc6; do
	check "Depends names a $lib package" grep -qE "(^|, )$lib[0-9.a-z-]*( |,|$)" <<<"$DEPENDS"
done
CONFFILES=$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xOf - ./conffiles)
check "conffiles are exactly the config and the logrotate snippet" \
	[ "$CONFFILES" = $'/etc/logrotate.d/qgate\n/etc/qgate/qgate.json' ]
check "no maintainer scripts (DynamicUser: nothing to create)" \
	bash -c "! dpkg-deb --ctrl-tarfile '$DEB' | tar -tf - | grep -qE 'inst|rm$'"

# ---- install into a scratch root
R=$WORK/root
ADMIN=$R/var/lib/dpkg
mkdir -p "$ADMIN/info" "$ADMIN/updates"
: >"$ADMIN/available"
: >"$ADMIN/status"
# the host's status entries of the packages depended on: dpkg checks name, version, arch
for pkg in $(sed 's/([^)]*)//g; s/|/,/g; s/,/ /g' <<<"$DEPENDS"); do
	dpkg-query -s "$pkg" >>"$ADMIN/status" 2>/dev/null && echo >>"$ADMIN/status" ||
		fail "dependency $pkg is not installed on this machine"
	name=$(dpkg-query -W -f '${Package}' "$pkg" 2>/dev/null)
	arch=$(dpkg-query -W -f '${Architecture}' "$pkg" 2>/dev/null)
	: >"$ADMIN/info/$name.list"
	: >"$ADMIN/info/$name:$arch.list"
done
if dpkg --root="$R" -i "$DEB" >"$WORK/dpkg.log" 2>&1; then
	ok "dpkg --root -i"
else
	cat "$WORK/dpkg.log"
	fail "dpkg --root -i"
fi
check "dpkg says qgate $VERSION is installed" \
	grep -q "^Status: install ok installed" <(dpkg --root="$R" -s qgate 2>/dev/null)
for f in /usr/sbin/qgate /etc/qgate/qgate.json /etc/logrotate.d/qgate; do
	check "installed $f" [ -f "$R$f" ]
done
UNIT=$(dpkg --root="$R" -L qgate | grep '/systemd/system/qgate.service$')
check "installed the unit ($UNIT)" [ -n "$UNIT" -a -f "$R$UNIT" ]

# ---- the installed program
V=$("$R/usr/sbin/qgate" --version)
check "qgate --version says '$V'" [ "$V" = "qgate $VERSION" ]
# The example config as installed passes --check on a machine where qgate has never run:
# no /var/log/qgate (the unit's LogsDirectory= makes it at the first start), so the example
# keeps no audit log, and its comment says how to turn one on.
check "no /var/log/qgate in the scratch root" [ ! -e "$R/var/log/qgate" ]
CFG=$R/etc/qgate/qgate.json
OUT=$("$R/usr/sbin/qgate" --check -c "$CFG" 2>&1)
RC=$?
echo "--check on $CFG as installed: $OUT"
check "qgate --check on the installed config passes" [ $RC -eq 0 -a "$OUT" = "config OK" ]
check "the example says how to keep an audit log" grep -q '"_audit_file":' "$CFG"
# what its comment says: audit_file in a directory that does not exist yet is refused by
# name (until the service has started once)
python3 - "$CFG" "$WORK/audit.json" "$WORK/no-such-dir/audit.log" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["log"]["audit_file"] = sys.argv[3]
json.dump(c, open(sys.argv[2], "w"))
EOF
OUT=$("$R/usr/sbin/qgate" --check -c "$WORK/audit.json" 2>&1)
RC=$?
check "--check refuses audit_file in a missing directory, naming log.audit_file" \
	bash -c '[ "$1" -eq 1 ] && grep -q "log.audit_file" <<<"$2"' _ "$RC" "$OUT"
mkdir -p "$WORK/no-such-dir"
OUT=$("$R/usr/sbin/qgate" --check -c "$WORK/audit.json" 2>&1)
check "--check accepts it once the directory exists" [ "$OUT" = "config OK" ]
# and the same check refuses a broken copy, naming the field
sed 's|"127.0.0.1:5050"|"127.0.0.1:99999"|' "$CFG" >"$WORK/bad.json"
OUT=$("$R/usr/sbin/qgate" --check -c "$WORK/bad.json" 2>&1)
check "qgate --check refuses a bad port, naming listeners[0].listen" \
	grep -q "listeners\[0\].listen" <<<"$OUT"

# ---- the unit
check "unit runs /usr/sbin/qgate -c /etc/qgate/qgate.json" \
	grep -qx "ExecStart=/usr/sbin/qgate -c /etc/qgate/qgate.json" "$R$UNIT"
for kv in Type=notify ExecReload= WatchdogSec= DynamicUser=yes NoNewPrivileges=yes \
	ProtectSystem=strict LimitNOFILE= LogsDirectory=qgate; do
	check "unit sets $kv" grep -q "^$kv" "$R$UNIT"
done
# systemd-analyze verify loads the unit offline (no systemd as PID 1 needed) and checks
# that ExecStart's program exists: it runs on a copy whose ExecStart points into the scratch
# root. It prints unknown keys and bad values as warnings yet exits 0, so any output fails.
# Documentation= man pages are checked when the package installs them (MANPATH: the root's).
mkdir -p "$WORK/unit"
sed "s|^ExecStart=/usr/sbin/qgate|ExecStart=$R/usr/sbin/qgate|" "$R$UNIT" >"$WORK/unit/qgate.service"
MAN=no
if ls "$R"/usr/share/man/man8/qgate.8* >/dev/null 2>&1; then MAN=yes; fi
OUT=$(MANPATH=$R/usr/share/man systemd-analyze verify --man=$MAN "$WORK/unit/qgate.service" 2>&1)
RC=$?
[ -n "$OUT" ] && echo "$OUT"
check "systemd-analyze verify (man pages checked: $MAN): exit 0, no output" [ $RC -eq 0 -a -z "$OUT" ]
# the hardening, as systemd scores it (0 best .. 10): at most 3.5
OUT=$(systemd-analyze security --offline=yes --threshold=35 "$WORK/unit/qgate.service" 2>&1)
RC=$?
echo "$OUT" | tail -n 1
check "systemd-analyze security --offline: exposure at most 3.5" [ $RC -eq 0 ]
# and verify does catch a broken unit (the check above can fail)
sed 's|^Type=notify|Type=notifyy|' "$WORK/unit/qgate.service" >"$WORK/unit/broken.service"
OUT=$(systemd-analyze verify --man=no "$WORK/unit/broken.service" 2>&1)
check "systemd-analyze verify reports a broken Type=" grep -q "Type\|service type" <<<"$OUT"

# ---- logrotate
OUT=$(logrotate -d -s "$WORK/lr.state" "$R/etc/logrotate.d/qgate" 2>&1)
RC=$?
check "logrotate -d on the snippet: exit 0, no error" \
	bash -c "[ $RC -eq 0 ] && ! grep -qi 'error' <<<\"\$1\"" _ "$OUT"
# a real rotation of a copy pointed at a scratch file, written through an O_APPEND fd kept
# open across the rotation as qgate keeps its audit log
mkdir -p "$WORK/lr"
sed "s|/var/log/qgate/audit.log|$WORK/lr/audit.log|" "$R/etc/logrotate.d/qgate" >"$WORK/lr.conf"
exec 7>>"$WORK/lr/audit.log"
for i in $(seq 1 100); do echo "before $i" >&7; done
logrotate -f -s "$WORK/lr.state" "$WORK/lr.conf"
echo "after 1" >&7
exec 7>&-
check "rotated file holds the old lines" grep -q "before 100" "$WORK/lr/audit.log.1"
check "the open writer's next line starts the new file (no hole)" \
	[ "$(head -c 8 "$WORK/lr/audit.log")" = "after 1" ]

# ---- Debian policy, as lintian reads it
check "man pages gzipped" [ -f "$R/usr/share/man/man8/qgate.8.gz" -a \
	-f "$R/usr/share/man/man5/qgate.json.5.gz" ]
check "copyright file, machine-readable, license proprietary" \
	grep -q "^License: proprietary" "$R/usr/share/doc/qgate/copyright"
check "changelog.gz names this version" \
	bash -c "zcat '$R/usr/share/doc/qgate/changelog.gz' | head -n 1 | grep -q '^qgate ($VERSION)'"
check "the binary is stripped (no .symtab)" \
	bash -c "! readelf -S '$R/usr/sbin/qgate' | grep -q '\.symtab'"
if command -v lintian >/dev/null; then
	# lintian warns on stderr when run as root: keep only its tags
	LINT=$(timeout 300 lintian --pedantic -I "$DEB" 2>/dev/null)
	RC=$?
	echo "lintian tags:"
	sed 's/^/  /' <<<"$LINT"
	check "lintian ran (exit $RC: 0, or 2 for tags only)" [ $RC -eq 0 -o $RC -eq 2 ]
	check "lintian reports no error (E:) tag" bash -c "! grep -q '^E:' <<<\"\$1\"" _ "$LINT"
else
	fail "lintian is not installed (scripts/install-deps.sh tools)"
fi

# ---- remove and purge
check "dpkg --root -r" dpkg --root="$R" -r qgate
check "removed: the program is gone, the conffile stays" \
	[ ! -e "$R/usr/sbin/qgate" -a -f "$R/etc/qgate/qgate.json" ]
check "dpkg --root --purge" dpkg --root="$R" --purge qgate
check "purged: the conffiles are gone" [ ! -e "$R/etc/qgate/qgate.json" -a ! -e "$R/etc/logrotate.d/qgate" ]

echo "package test: $FAILS failed"
[ $FAILS -eq 0 ]
