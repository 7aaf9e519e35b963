#!/usr/bin/env bash
# End-to-end tests of stickyd with real Socket.IO 4.8 nodes and clients (4.8 and 2.x).
#
#   tests/e2e/run.sh [test files...]        (default: every test/*.test.js)
#
# Environment: STICKYD_BIN (default <repo>/build/stickyd), E2E_CLIENTS, E2E_MESSAGES,
# E2E_TIME_SCALE (stretches every timeout). The TAP stream goes to stdout and to
# .tmp/e2e.<random>.tap; the last line is `E2E passed=N failed=M` (top-level tests; cancelled tests
# count as failed). Exit status 0 iff M == 0 and the runner itself succeeded.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1

if [[ ! -d node_modules || ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  if ! npm ci --no-audit --no-fund; then
    echo "npm ci failed" >&2
    echo "E2E passed=0 failed=1"
    exit 1
  fi
fi

if [[ $# -gt 0 ]]; then
  files=("$@")
else
  files=(test/*.test.js)
fi

mkdir -p .tmp
# One TAP file per run: concurrent runs must not read each other's summary.
tap=$(mktemp .tmp/e2e.XXXXXX.tap)
node --test --test-reporter=tap --test-reporter-destination=stdout \
  --test-concurrency=1 "${files[@]}" | tee "$tap"
status=${PIPESTATUS[0]}

pass=$(grep -aE '^# pass [0-9]+$' "$tap" | tail -n 1 | awk '{print $3}')
fail=$(grep -aE '^# fail [0-9]+$' "$tap" | tail -n 1 | awk '{print $3}')
cancelled=$(grep -aE '^# cancelled [0-9]+$' "$tap" | tail -n 1 | awk '{print $3}')

if [[ -z "$pass" || -z "$fail" ]]; then
  # No summary: the runner crashed.
  pass=${pass:-0}
  fail=$(( ${fail:-0} > 0 ? ${fail:-0} : 1 ))
fi
fail=$(( fail + ${cancelled:-0} ))
if [[ $status -ne 0 && $fail -eq 0 ]]; then
  fail=1
fi

echo "E2E passed=${pass} failed=${fail}"
[[ $fail -eq 0 && $status -eq 0 ]]
