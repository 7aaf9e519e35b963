#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs the doctest unit tests, the
# end-to-end suite against a real Socket.IO cluster, the browser tests (headless Chromium),
# and ends with one line "N passed, N failed" counting every test case of all of them.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

summary() { echo "$1 passed, $2 failed"; }
# counts PREFIX LOG RC: "P F" from the last "PREFIX passed=P failed=F" line of LOG; F is at
# least 1 when there is no such line or RC (the script's exit status) is not 0.
counts() {
  local line p=0 f=1
  line=$(grep -aE "^$1 passed=" "$2" | tail -n 1)
  if [[ $line =~ passed=([0-9]+)\ failed=([0-9]+) ]]; then
    p=${BASH_REMATCH[1]}
    f=${BASH_REMATCH[2]}
  fi
  if [ "$3" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  echo "$p $f"
}

if ! bash packaging/install-deps.sh --tests; then
  echo "run-all: dependency installation failed" >&2
  summary 0 1
  exit 1
fi
# Builds and runs that need CPU but no timing go to the background, niced (they take the CPU
# the front leaves), from the start: the sanitizer build (its tests run after the end-to-end
# suite), the libFuzzer targets (their own clang build, then each target for FUZZ_SECONDS)
# and the Debian package test. Whatever is left of them is stopped if the run ends early.
bg_dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null' EXIT
asan_build_pid=""
if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
  ( BUILD_DIR=build-asan nice -n 15 bash packaging/build.sh -Db_sanitize=address,undefined \
      -Db_lundef=false -Dbuildtype=debug >"$bg_dir/asan-build.log" 2>&1 ) &
  asan_build_pid=$!
fi
fuzz_pid=""
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  ( nice -n 15 bash tests/fuzz/run.sh "${FUZZ_SECONDS:-10}" >"$bg_dir/fuzz.log" 2>&1 ) &
  fuzz_pid=$!
fi
# The Debian package: built (release), linted, installed, its unit verified, the installed
# binary run once with a fake NOTIFY_SOCKET (tests/packaging/run.sh).
pkg_pid=""
if [ "${SKIP_PACKAGING:-0}" != 1 ]; then
  ( nice -n 15 bash tests/packaging/run.sh >"$bg_dir/pkg.log" 2>&1 ) &
  pkg_pid=$!
fi

# The suite's own build: optimised like the users' one, without LTO (it only lengthens the
# link of every test binary) and without the benchmark tools.
if ! bash packaging/build.sh -Db_lto=false -Dbench=false; then
  echo "run-all: build failed" >&2
  summary 0 1
  exit 1
fi

unit_passed=0 unit_failed=0
# Every doctest binary: the unit tests, and the llhttp self-test against a lenient build.
for bin in build/tests/unit/unit_tests build/tests/unit/unit_tests_lenient; do
  unit_log=$(mktemp)
  "$bin" --no-version 2>&1 | tee "$unit_log"
  unit_rc=${PIPESTATUS[0]}
  line=$(grep -E '^\[doctest\] test cases:' "$unit_log" | tail -n 1)
  p=0 f=0
  if [[ $line =~ ([0-9]+)\ passed\ \|\ *([0-9]+)\ failed ]]; then
    p=${BASH_REMATCH[1]}
    f=${BASH_REMATCH[2]}
  fi
  if [ "$unit_rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  unit_passed=$((unit_passed + p))
  unit_failed=$((unit_failed + f))
  rm -f "$unit_log"
done

# run_suite LABEL COMMAND...: runs the command (its output shown) and reads its last line
# "LABEL passed=N failed=M" into suite_passed and suite_failed; a command that failed without
# counting a failure counts one.
run_suite() {
  local label=$1 log rc
  shift
  log=$(mktemp)
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  read -r suite_passed suite_failed < <(counts "$label" "$log" "$rc")
  rm -f "$log"
}

# bg_suite LABEL PID LOG PATTERN: waits for a background job and reads its counts as
# run_suite does; shows the lines of its log matching PATTERN (the whole tail on failure).
bg_suite() {
  local label=$1 pid=$2 log=$3 pattern=$4 rc
  wait "$pid"
  rc=$?
  grep -aE "$pattern" "$log"
  read -r suite_passed suite_failed < <(counts "$label" "$log" "$rc")
  if [ "$suite_failed" != 0 ]; then tail -n 60 "$log"; fi
}

run_suite E2E env STICKYD_BIN="$top/build/stickyd" bash tests/e2e/run.sh
e2e_passed=$suite_passed e2e_failed=$suite_failed

# Real browsers (chromium-headless-shell): tabs of one cookie jar on every transport,
# cross-origin, TLS, and the demo page.
run_suite BROWSER env STICKYD_BIN="$top/build/stickyd" bash tests/browser/run.sh
browser_passed=$suite_passed browser_failed=$suite_failed

# A short soak: 20k requests and 500 tunnels through stickyd; RSS and fds return to baseline.
soak_passed=0 soak_failed=0
if STICKYD_BIN="$top/build/stickyd" bash tests/bench/soak.sh --short 2>&1 | tail -n 20; then
  soak_passed=1
else
  soak_failed=1
fi

# The same unit tests and the end-to-end suite again, on a build with
# AddressSanitizer and UndefinedBehaviorSanitizer: any report fails the run.
asan_passed=0 asan_failed=0
if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
  if wait "$asan_build_pid"; then
    # Reports go to files: a report from any stickyd process (leaks found at exit included)
    # fails the run even when the test that caused it passed.
    reports="$top/build-asan/sanitizer-reports"
    rm -rf "$reports" && mkdir -p "$reports"
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$reports/asan"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan"
    asan_log=$(mktemp)
    build-asan/tests/unit/unit_tests --no-version 2>&1 | tail -n 3 | tee "$asan_log"
    line=$(grep -E '^\[doctest\] test cases:' "$asan_log" | tail -n 1)
    if [[ $line =~ ([0-9]+)\ passed\ \|\ *([0-9]+)\ failed ]]; then
      asan_passed=${BASH_REMATCH[1]}
      asan_failed=${BASH_REMATCH[2]}
    else
      asan_failed=1
    fi
    # stickyd under the sanitizers behind real Socket.IO traffic, errors and faults.
    STICKYD_BIN="$top/build-asan/stickyd" bash tests/e2e/run.sh 2>&1 | tee "$asan_log" |
      grep -aE '^(not )?ok|^E2E'
    line=$(grep -aE '^E2E passed=' "$asan_log" | tail -n 1)
    if [[ $line =~ passed=([0-9]+)\ failed=([0-9]+) ]]; then
      asan_passed=$((asan_passed + BASH_REMATCH[1]))
      asan_failed=$((asan_failed + BASH_REMATCH[2]))
    else
      asan_failed=$((asan_failed + 1))
    fi
    if grep -aq '^not ok' "$asan_log"; then
      # Only ok/not ok lines were shown above: give each failure its context (the harness's
      # diagnostics before it, the TAP block after it).
      echo "run-all: sanitizer end-to-end failures, with context:" >&2
      grep -a -B 120 -A 30 '^not ok' "$asan_log" | tail -n 600 >&2
    fi
    rm -f "$asan_log"
    if compgen -G "$reports/*" >/dev/null; then
      echo "run-all: sanitizer reports:" >&2
      head -n 60 "$reports"/* >&2
      asan_failed=$((asan_failed + 1))
    fi
    unset ASAN_OPTIONS UBSAN_OPTIONS
  else
    echo "run-all: sanitizer build failed" >&2
    tail -n 40 "$bg_dir/asan-build.log" >&2
    asan_failed=1
  fi
fi

echo "unit: $unit_passed passed, $unit_failed failed; end-to-end: $e2e_passed passed, $e2e_failed failed; browser: $browser_passed passed, $browser_failed failed; sanitizers (unit + end-to-end): $asan_passed passed, $asan_failed failed"
# libFuzzer targets (clang): replay the seed corpora, then fuzz each target for a while.
fuzz_passed=0 fuzz_failed=0
if [ -n "$fuzz_pid" ]; then
  bg_suite FUZZ "$fuzz_pid" "$bg_dir/fuzz.log" '^(PASS|FAIL)|^FUZZ'
  fuzz_passed=$suite_passed fuzz_failed=$suite_failed
fi
pkg_passed=0 pkg_failed=0
if [ -n "$pkg_pid" ]; then
  bg_suite PKG "$pkg_pid" "$bg_dir/pkg.log" '^(ok|not ok|PKG|# [0-9]+ s)'
  pkg_passed=$suite_passed pkg_failed=$suite_failed
fi
rm -rf "$bg_dir"

echo "soak: $soak_passed passed, $soak_failed failed; packaging: $pkg_passed passed, $pkg_failed failed; fuzz targets: $fuzz_passed passed, $fuzz_failed failed"
total_passed=$((unit_passed + e2e_passed + browser_passed + asan_passed + soak_passed + pkg_passed + fuzz_passed))
total_failed=$((unit_failed + e2e_failed + browser_failed + asan_failed + soak_failed + pkg_failed + fuzz_failed))
summary $total_passed $total_failed
[ $total_failed = 0 ]
