#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs the doctest unit tests and the
# end-to-end suite against a real Socket.IO cluster, and ends with one line
# "N passed, N failed" counting every test case of both.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

summary() { echo "$1 passed, $2 failed"; }

if ! bash packaging/install-deps.sh --tests; then
  echo "run-all: dependency installation failed" >&2
  summary 0 1
  exit 1
fi
if ! bash packaging/build.sh; then
  echo "run-all: build failed" >&2
  summary 0 1
  exit 1
fi

unit_passed=0 unit_failed=0
unit_log=$(mktemp)
build/tests/unit/unit_tests --no-version 2>&1 | tee "$unit_log"
unit_rc=${PIPESTATUS[0]}
line=$(grep -E '^\[doctest\] test cases:' "$unit_log" | tail -n 1)
if [[ $line =~ ([0-9]+)\ passed\ \|\ *([0-9]+)\ failed ]]; then
  unit_passed=${BASH_REMATCH[1]}
  unit_failed=${BASH_REMATCH[2]}
fi
if [ "$unit_rc" != 0 ] && [ "$unit_failed" = 0 ]; then unit_failed=1; fi
rm -f "$unit_log"

e2e_passed=0 e2e_failed=0
e2e_log=$(mktemp)
STICKYD_BIN="$top/build/stickyd" bash tests/e2e/run.sh 2>&1 | tee "$e2e_log"
e2e_rc=${PIPESTATUS[0]}
line=$(grep -E '^E2E passed=' "$e2e_log" | tail -n 1)
if [[ $line =~ passed=([0-9]+)\ failed=([0-9]+) ]]; then
  e2e_passed=${BASH_REMATCH[1]}
  e2e_failed=${BASH_REMATCH[2]}
fi
if [ "$e2e_rc" != 0 ] && [ "$e2e_failed" = 0 ]; then e2e_failed=1; fi
rm -f "$e2e_log"

echo "unit: $unit_passed passed, $unit_failed failed; end-to-end: $e2e_passed passed, $e2e_failed failed"
summary $((unit_passed + e2e_passed)) $((unit_failed + e2e_failed))
[ $((unit_failed + e2e_failed)) = 0 ]
