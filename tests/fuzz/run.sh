#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each of them: first a replay of
# its seed corpus (tests/fuzz/corpus/<target>, never modified), then fuzzing for N seconds in
# a temporary copy of that corpus.
#
#   tests/fuzz/run.sh [seconds_per_target]      (default 10)
#
# Environment: STICKYD_FUZZ_BUILD (build dir, default <repo>/build-fuzz), FUZZ_TARGETS (a
# space-separated subset of the targets).
#
# One "test" per target: passed when both the replay and the fuzzing exit 0. A failing input
# (crash-*, timeout-*, oom-*, leak-*) is copied to tests/fuzz/.tmp/ and its path printed;
# reproduce with `build-fuzz/tests/fuzz/<target> <file>`. Logs: tests/fuzz/.tmp/<target>.log.
# Last line: "FUZZ passed=N failed=M"; exit status 0 iff M == 0.
set -uo pipefail

secs=${1:-10}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "usage: $0 [seconds_per_target]" >&2
  exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${STICKYD_FUZZ_BUILD:-$top/build-fuzz}
all_targets=(fuzz_request fuzz_handover fuzz_haproxy fuzz_smuggle fuzz_discovery fuzz_cookie fuzz_query fuzz_open_packet fuzz_config)
read -r -a targets <<< "${FUZZ_TARGETS:-${all_targets[*]}}"
out="$here/.tmp"
mkdir -p "$out"
# Reproducers and logs are local results, never part of the repository.
[ -f "$out/.gitignore" ] || printf '*\n' > "$out/.gitignore"

summary() {
  echo "FUZZ passed=$1 failed=$2"
  [ "$2" = 0 ]
}

start=$(date +%s)

# ---------------------------------------------------------------- build
if [ ! -f "$build/build.ninja" ]; then
  for tool in clang clang++ meson ninja; do
    if ! command -v "$tool" > /dev/null; then
      echo "fuzz: $tool not found" >&2
      summary 0 "${#targets[@]}"
      exit 1
    fi
  done
  san='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all'
  if ! (cd "$top" && CC=clang CXX=clang++ meson setup "$build" -Dfuzz=true -Dtests=false \
          -Db_sanitize=address,undefined -Db_lundef=false \
          "-Dc_args=$san" "-Dcpp_args=$san" > "$out/setup.log" 2>&1); then
    cat "$out/setup.log" >&2
    echo "fuzz: meson setup failed (log: $out/setup.log)" >&2
    summary 0 "${#targets[@]}"
    exit 1
  fi
fi
ninja_targets=()
for t in "${targets[@]}"; do ninja_targets+=("tests/fuzz/$t"); done
if ! ninja -C "$build" "${ninja_targets[@]}" > "$out/build.log" 2>&1; then
  tail -n 60 "$out/build.log" >&2
  echo "fuzz: build failed (log: $out/build.log)" >&2
  summary 0 "${#targets[@]}"
  exit 1
fi
echo "fuzz: built in $(( $(date +%s) - start ))s; ${secs}s of fuzzing per target"

# UBSan findings must fail the run, not just print (the code is also built with
# -fno-sanitize-recover=all).
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

# ---------------------------------------------------------------- run
passed=0
failed=0
work=$(mktemp -d "${TMPDIR:-/tmp}/stickyd-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Copies the newest failing input libFuzzer wrote to $1 into $out, and prints its path.
keep_artifact() {
  local dir=$1 target=$2 f dest
  f=$(ls -t "$dir"/crash-* "$dir"/timeout-* "$dir"/oom-* "$dir"/leak-* 2> /dev/null | head -n 1)
  if [ -z "$f" ]; then
    echo "  no reproducer written (see the log)"
    return
  fi
  dest="$out/$target-$(basename "$f")"
  cp "$f" "$dest"
  echo "  reproducer: $dest"
  echo "  reproduce:  $build/tests/fuzz/$target $dest"
}

for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/$t"
  corpus="$here/corpus/$t"
  log="$out/$t.log"
  art="$work/$t-artifacts"
  mkdir -p "$art" "$work/$t-corpus"
  cp -R "$corpus/." "$work/$t-corpus/"
  dict=()
  [ -f "$here/$t.dict" ] && dict=("-dict=$here/$t.dict")

  # Replay: every seed once (an input naming its own file exercises exactly that file).
  "$bin" -runs=0 "${dict[@]}" -timeout=5 -rss_limit_mb=2048 -artifact_prefix="$art/" \
    "$corpus" > "$log" 2>&1 < /dev/null
  replay_rc=$?
  fuzz_rc=-1
  if [ "$replay_rc" = 0 ]; then
    "$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
      "${dict[@]}" -artifact_prefix="$art/" "$work/$t-corpus" >> "$log" 2>&1 < /dev/null
    fuzz_rc=$?
  fi
  seeds=$(find "$corpus" -type f | wc -l)
  if [ "$replay_rc" = 0 ] && [ "$fuzz_rc" = 0 ]; then
    passed=$((passed + 1))
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)
    grown=$(find "$work/$t-corpus" -type f | wc -l)
    echo "PASS $t: replayed $seeds seeds; fuzzed ${secs}s, ${execs:-?} execs, ${cov:-cov: ?}, corpus $seeds -> $grown"
  else
    failed=$((failed + 1))
    if [ "$replay_rc" != 0 ]; then
      echo "FAIL $t: seed corpus replay exited $replay_rc"
    else
      echo "FAIL $t: fuzzing exited $fuzz_rc"
    fi
    grep -E 'fuzz invariant violated|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error|ERROR: libFuzzer|SUMMARY' "$log" \
      | head -n 6 | sed 's/^/  /'
    keep_artifact "$art" "$t"
    echo "  log: $log"
  fi
done

echo "fuzz: total $(( $(date +%s) - start ))s"
summary "$passed" "$failed"
