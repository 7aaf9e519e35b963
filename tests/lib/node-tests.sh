# Shared by tests/e2e/run.sh and tests/browser/run.sh (sourced, from the suite's directory).

# setup_failed LABEL MESSAGE: the message on stderr, the summary line of a failed run, exit 1.
setup_failed() {
  echo "$2" >&2
  echo "$1 passed=0 failed=1"
  exit 1
}

# npm_ci_if_stale DIR: `npm ci` in DIR when its node_modules is missing or older than its
# package-lock.json. A node_modules that is a symbolic link (shared with another checkout) is
# left alone: npm ci would empty the directory it points to.
npm_ci_if_stale() {
  [[ -L $1/node_modules ]] && return 0
  if [[ ! -d $1/node_modules || ! -f $1/node_modules/.package-lock.json || $1/package-lock.json -nt $1/node_modules/.package-lock.json ]]; then
    (cd "$1" && npm ci --no-audit --no-fund)
  fi
}

# run_node_tests LABEL FILE...: node's test runner, one file at a time; the TAP stream goes to
# stdout and to .tmp/<label>.<random>.tap (one file per run: concurrent runs must not read each
# other's summary). The last line is `LABEL passed=N failed=M` (top-level tests; cancelled
# tests count as failed). Returns 0 iff M == 0 and the runner itself succeeded.
run_node_tests() {
  local label=$1
  shift
  mkdir -p .tmp
  local tap status pass fail cancelled
  tap=$(mktemp ".tmp/${label,,}.XXXXXX.tap")
  node --test --test-reporter=tap --test-reporter-destination=stdout \
    --test-concurrency=1 "$@" | tee "$tap"
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

  echo "$label passed=${pass} failed=${fail}"
  [[ $fail -eq 0 && $status -eq 0 ]]
}
