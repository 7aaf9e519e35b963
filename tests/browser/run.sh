#!/usr/bin/env bash
# Browser tests of stickyd: Debian's chromium-headless-shell driven by puppeteer-core; tabs
# sharing one cookie jar through stickyd to real Socket.IO 4.8 nodes (the e2e suite's node.js),
# cross-origin, TLS, and the demo page (packaging/demo.sh).
#
#   tests/browser/run.sh [test files...]        (default: every test/*.test.js)
#
# Installs what it needs: the Debian package chromium-headless-shell when missing, the pinned
# npm packages here and in tests/e2e (npm ci). Environment: STICKYD_BIN (default
# <repo>/build/stickyd), CHROMIUM_BIN (default: the package's executable), E2E_TIME_SCALE
# (stretches every timeout). The TAP stream goes to stdout and to .tmp/browser.<random>.tap;
# the last line is `BROWSER passed=N failed=M` (top-level tests; cancelled tests count as
# failed). Exit status 0 iff M == 0 and the runner itself succeeded.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1
source ../lib/node-tests.sh
STICKYD_BIN=${STICKYD_BIN:-$(cd ../.. && pwd)/build/stickyd}
export STICKYD_BIN

if ! dpkg-query -W -f='${Status}' chromium-headless-shell 2>/dev/null | grep -q "install ok installed"; then
  sudo_cmd=()
  if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  { "${sudo_cmd[@]}" apt-get update -q &&
    "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends chromium-headless-shell; } ||
    setup_failed BROWSER "installing chromium-headless-shell failed"
fi
npm_ci_if_stale . || setup_failed BROWSER "npm ci in tests/browser failed"
npm_ci_if_stale ../e2e || setup_failed BROWSER "npm ci in tests/e2e failed"

if [[ $# -gt 0 ]]; then
  files=("$@")
else
  files=(test/*.test.js)
fi

run_node_tests BROWSER "${files[@]}"
