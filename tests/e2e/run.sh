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
source ../lib/node-tests.sh

npm_ci_if_stale . || setup_failed E2E "npm ci failed"

if [[ $# -gt 0 ]]; then
  files=("$@")
else
  files=(test/*.test.js)
fi

run_node_tests E2E "${files[@]}"
