#!/bin/bash
# tests/run.sh — the one test command. On a fresh Debian bookworm machine, as root:
#
#   ./tests/run.sh
#
# 1. refuses C sources that call strcpy/strcat/sprintf/strtok/gets (style.md), or that break
#    the include rules (scripts/check-includes.sh: no gateway/ in pool/ or codec/, no pool/
#    in codec/, no include cycle among gateway/ headers);
# 2. installs the Debian packages the build and the test clients need (apt only when one is
#    missing, so a rerun stays fast);
# 3. installs the third-party q clients: <repo>/.venv (PyKX, qPython, pytest), node-q
#    (npm ci in tests/interop/node) and the Java driver's Maven dependencies;
# 4. builds build-test (warnings are errors) and runs every suite: unit, integration (with
#    promtool on a live scrape, headless Chromium on the status page, the bench smoke test),
#    interop, docs (the man pages against the code) and package (the .deb built, installed
#    into a scratch root with dpkg, systemd-analyze verify, lintian, logrotate);
# 5. builds build-asan (AddressSanitizer + UBSan) and runs the unit and integration suites,
#    then the torture suite (about 60 s of randomized abuse with fixed seeds; tests/torture);
# 6. builds build-fuzz (clang, libFuzzer + ASan/UBSan) and runs each fuzz target for 20 s
#    (tests/fuzz; fuzz_client with its seed corpus tests/fuzz/corpus_client).
#
# Each stage prints a banner. The script stops at a stage that leaves nothing to test (source
# check, install, build); test failures are collected and it exits non-zero at the end. The
# last line is "tests: N passed, N failed, N skipped" over every meson test it ran. Safe to
# rerun: build dirs are reconfigured (or recreated if that fails), installs are no-ops when
# already done. Only build-test/, build-asan/ and build-fuzz/ are touched among build dirs.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1

JOBS=2
START=$SECONDS
STAGE_START=$SECONDS
FAILED_STAGES=()

stage() {
	STAGE_START=$SECONDS
	printf '\n==== [%4ds] %s\n' $((SECONDS - START)) "$*"
}

done_stage() {
	printf '==== [%4ds] ok (%ds)\n' $((SECONDS - START)) $((SECONDS - STAGE_START))
}

die() {
	printf '\n==== FAILED: %s\n' "$*" >&2
	summary
	exit 1
}

# "N passed, N failed, N skipped" over the meson test logs of this run.
summary() {
	local logs=()
	for f in build-test/meson-logs/testlog*.json build-asan/meson-logs/testlog*.json; do
		[ -f "$f" ] && [ "$f" -nt "$RUN_MARK" ] && logs+=("$f")
	done
	if [ ${#logs[@]} -eq 0 ]; then
		echo "tests: 0 passed, 0 failed, 0 skipped"
		return
	fi
	python3 - "${logs[@]}" <<'EOF'
import json, sys
p = f = s = 0
failed = []
for path in sys.argv[1:]:
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        t = json.loads(line)
        r = t.get("result", "")
        if r in ("OK", "EXPECTEDFAIL"):
            p += 1
        elif r == "SKIP":
            s += 1
        else:
            f += 1
            failed.append((path, t))
# a CI log may keep only its tail: name each failure here, with the end of its output
for path, t in failed:
    print(f"---- {t.get('name')}: {t.get('result')} after {t.get('duration', 0):.0f} s ({path})")
    lines = ((t.get("stdout") or "") + (t.get("stderr") or "")).splitlines()
    marks = [l for l in lines if any(m in l for m in ("Assert", "FAIL", "failed", "ERROR"))]
    for l in marks[:12] + ["..."] + lines[-15:]:
        print("   " + l[:300])
print(f"tests: {p} passed, {f} failed, {s} skipped")
EOF
}

RUN_MARK=$(mktemp /tmp/qgate-run-mark.XXXXXX)
trap 'rm -f "$RUN_MARK"' EXIT

# ---------------------------------------------------------------- 1. source rules
stage "source check: no strcpy/strcat/sprintf/strtok/gets, include rules"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	mapfile -t CFILES < <(git -C "$REPO" ls-files -- '*.c' '*.h')
else
	mapfile -t CFILES < <(find . -path './build*' -prune -o -path './.venv' -prune -o \
		\( -name '*.c' -o -name '*.h' \) -print)
fi
# \b keeps snprintf, fgets and strtok_r legal; lines that are plainly comments are ignored.
BANNED=$(grep -HnE '\b(strcpy|strcat|sprintf|strtok|gets)[[:space:]]*\(' -- "${CFILES[@]}" \
	2>/dev/null | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/?\*|//)')
if [ -n "$BANNED" ]; then
	echo "$BANNED"
	die "banned C library calls (use snprintf, memcpy, strtok_r: the project's style guide)"
fi
echo "${#CFILES[@]} C files clean"
# the dependency direction: pool/ and codec/ stay pure, gateway/ headers form no cycle
bash scripts/check-includes.sh ||
	die "include rules broken (scripts/check-includes.sh; style.md, header discipline)"
done_stage

# ---------------------------------------------------------------- 2-3. packages and clients
# Debian packages (apt only when one is missing), then the third-party q clients:
# <repo>/.venv (PyKX, qPython, pytest), node-q (npm ci) and the Java driver (Maven).
for part in build tools python node java; do
	stage "install: $part (scripts/install-deps.sh $part)"
	bash scripts/install-deps.sh "$part" || die "scripts/install-deps.sh $part"
	done_stage
done

# ---------------------------------------------------------------- 4. build + all suites
# meson setup, reusing the directory when it reconfigures cleanly, recreating it otherwise.
setup() {
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ] && meson setup --reconfigure "$dir" "$@"; then
		return 0
	fi
	rm -rf "$dir"
	meson setup "$dir" "$@"
}

stage "build build-test (-Dwerror=true)"
setup build-test -Dwerror=true || die "meson setup build-test"
meson compile -C build-test || die "build-test does not build"
done_stage

stage "meson test build-test: unit, integration, interop, docs, package"
# the torture suite runs once, against the sanitizer build (stage 5), where it finds the most
if meson test -C build-test --print-errorlogs --num-processes $JOBS --no-suite torture; then
	done_stage
else
	FAILED_STAGES+=("build-test suites")
fi

# ---------------------------------------------------------------- 5. sanitizers
stage "build build-asan (-Db_sanitize=address,undefined)"
setup build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false ||
	die "meson setup build-asan"
meson compile -C build-asan || die "build-asan does not build"
done_stage

stage "meson test build-asan: unit, integration"
# meson 1.0 sets no sanitizer options: make undefined behaviour stop the program (by default
# UBSan only prints), keep leak detection on, and print a summary line per report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:print_summary=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:print_summary=1}"
if meson test -C build-asan --print-errorlogs --num-processes $JOBS \
	--suite unit --suite integration; then
	done_stage
else
	FAILED_STAGES+=("build-asan suites")
fi

stage "meson test build-asan: torture (about 60 s, fixed seeds)"
# a seeded, randomized stress run of the real gateway; a failure prints its seed and a
# replay command (docs/testing.md, "The torture test")
# its own log base: the suites' logs above stay readable, and the summary counts both
if meson test -C build-asan --print-errorlogs --suite torture --logbase testlog-torture; then
	done_stage
else
	FAILED_STAGES+=("build-asan torture")
fi

# ---------------------------------------------------------------- 6. fuzz targets
# libFuzzer needs clang; every target runs briefly (a smoke test: docs/testing.md says how to
# fuzz for longer). New inputs go to a scratch directory, never into tests/fuzz/corpus_*.
FUZZ_SECONDS=20
stage "build build-fuzz (clang, libFuzzer, -Db_sanitize=address,undefined)"
CC=clang setup build-fuzz -Dwerror=true -Dfuzz=true -Dtests=false \
	-Db_sanitize=address,undefined -Db_lundef=false || die "meson setup build-fuzz"
meson compile -C build-fuzz fuzz_decode fuzz_hello fuzz_client || die "build-fuzz does not build"
done_stage

stage "fuzz: fuzz_decode, fuzz_hello, fuzz_client (${FUZZ_SECONDS} s each)"
FUZZ_WORK=$(mktemp -d /tmp/qgate-fuzz.XXXXXX)
FUZZ_FAILED=()
for t in fuzz_decode fuzz_hello fuzz_client; do
	seeds=()
	[ -d "tests/fuzz/corpus_${t#fuzz_}" ] && seeds=("tests/fuzz/corpus_${t#fuzz_}")
	mkdir -p "$FUZZ_WORK/$t/corpus"
	# -timeout: one input running 30 s is a hang; the outer timeout bounds the whole run
	if timeout $((FUZZ_SECONDS + 120)) "build-fuzz/tests/fuzz/$t" \
		-max_total_time=$FUZZ_SECONDS -timeout=30 \
		-artifact_prefix="$FUZZ_WORK/$t/" "$FUZZ_WORK/$t/corpus" "${seeds[@]}" \
		>"$FUZZ_WORK/$t.log" 2>&1; then
		# libFuzzer's last line: "#RUNS DONE cov: ... exec/s: ... rss: ..."
		echo "$t: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$FUZZ_WORK/$t.log" | tail -n 1)"
	else
		tail -n 60 "$FUZZ_WORK/$t.log"
		echo "$t FAILED: log and reproducer (crash-*) in $FUZZ_WORK/$t*;" \
			"replay with build-fuzz/tests/fuzz/$t FILE"
		FUZZ_FAILED+=("$t")
	fi
done
if [ ${#FUZZ_FAILED[@]} -eq 0 ]; then
	rm -rf "$FUZZ_WORK"
	done_stage
else
	FAILED_STAGES+=("fuzz: ${FUZZ_FAILED[*]}")
fi

# ---------------------------------------------------------------- result
printf '\n==== [%4ds] done\n' $((SECONDS - START))
if [ ${#FAILED_STAGES[@]} -gt 0 ]; then
	echo "FAILED: ${FAILED_STAGES[*]} (logs: build-*/meson-logs/testlog.txt)"
	summary
	exit 1
fi
summary
exit 0
