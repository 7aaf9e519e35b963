#!/usr/bin/env bash
# Soak test of stickyd (run by hand or in CI with --short; not part of tests/run-all.sh).
#
#   tests/bench/soak.sh [--requests N] [--tunnels M] [--short] [more soak.js options]
#
# Starts three fake Engine.IO backends (HTTP polling + websocket echo) and stickyd
# ($STICKYD_BIN, default build/stickyd) on 127.0.0.1, all on ephemeral ports. After a warm-up
# it records stickyd's RSS and open fds, sends N HTTP requests (default 200000: handshakes,
# polling GETs and POSTs with known sids over 50 keep-alive connections), then opens M
# websocket tunnels (default 5000; upgrades with a sid learnt from a handshake, and
# websocket-first) in batches of at most 1000 open at once, each exchanging a few frames, and
# closes them. Once stickyd's fd count has settled (at most 10 s) it records RSS and fds again.
#
# Prints a table and `SOAK ok` or `SOAK FAILED: <why>`; exit status 0 iff SOAK ok. It fails on
# any request or tunnel error, any request that reaches a node that does not own its sid, a
# stickyd crash or unclean SIGTERM exit, fds after != baseline +- --fd-slack (default 3), or
# RSS after > baseline + --rss-slack-mib (default 20; glibc does not return all freed memory).
#
# Options:
#   --requests N          HTTP requests (default 200000)
#   --tunnels M           websocket tunnels (default 5000)
#   --short               20000 requests and 500 tunnels (CI; well under 60 s on 2 cores)
#   --conns C             keep-alive client connections (default 50)
#   --batch B             tunnels open at once at most (default 1000)
#   --frames F            echoed frames per tunnel after the open/probe exchange (default 3)
#   --rss-slack-mib X     allowed RSS growth over the baseline (default 20)
#   --fd-slack K          allowed fd difference from the baseline (default 3)
#   --timeout SEC         stop and fail after SEC seconds (default 900; 120 with --short)
#   --rounds R            repeat the requests + tunnels R times, printing RSS/fds after each
#                         settled round (leaks show as growth from round to round)
#   --abrupt P            fraction (0-1, default 0) of requests sent on a fresh connection that
#                         the client drops 0-3 ms later (FIN or RST; handshakes, polls, half
#                         POST bodies, websocket upgrades), and of tunnels dropped without a
#                         close handshake (FIN or RST); these are not counted as errors
#   --idle-timeout DUR    affinity.idle_timeout for stickyd (default auto = 90 s here), e.g. 2s
#                         so that the sessions of a round have expired before the next one
#   --handshake-ratio H   share of the requests that are handshakes (default 0.1); every
#                         handshake adds a ~140 B affinity entry that lives for the idle timeout
#   --open-concurrency K  tunnels being opened at once (default 200)
#   --warmup-requests N, --warmup-tunnels M   warm-up before the baseline (2000, 100)
#   --keep-logs           keep the temp dir with stickyd's config and log on success too
#
# Needs Node.js >= 20 and the npm packages of tests/e2e (npm ci there, or
# `bash packaging/install-deps.sh --tests`); adds no dependency of its own.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)

args=()
short=0
have_timeout=0
while [ $# -gt 0 ]; do
  case "$1" in
    --short) short=1 ;;
    -h|--help) sed -n '2,45p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --timeout) have_timeout=1; args+=("$1" "${2:-}"); shift ;;
    --requests|--tunnels|--conns|--batch|--frames|--rss-slack-mib|--fd-slack|--open-concurrency|--warmup-requests|--warmup-tunnels|--rounds|--abrupt|--idle-timeout|--handshake-ratio)
      if [ $# -lt 2 ]; then echo "soak.sh: $1 needs a value" >&2; exit 2; fi
      args+=("$1" "$2"); shift ;;
    --keep-logs) args+=("$1") ;;
    *) echo "soak.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$short" = 1 ]; then
  # explicit --requests/--tunnels given as well still win: they come later on the command line
  args=(--requests 20000 --tunnels 500 "${args[@]}")
  [ "$have_timeout" = 1 ] || args+=(--timeout 120)
fi

if ! command -v node >/dev/null 2>&1; then
  echo "SOAK FAILED: node not found on PATH"
  exit 1
fi
if [ ! -d "$top/tests/e2e/node_modules/socket.io" ]; then
  echo "SOAK FAILED: tests/e2e/node_modules missing (run: cd tests/e2e && npm ci)"
  exit 1
fi
export STICKYD_BIN=${STICKYD_BIN:-$top/build/stickyd}
if [ ! -x "$STICKYD_BIN" ]; then
  echo "SOAK FAILED: $STICKYD_BIN not found or not executable (bash packaging/build.sh, or set STICKYD_BIN)"
  exit 1
fi

# 1000 open tunnels hold ~2000 fds in stickyd and as many in the generator and the backends.
want=8192
soft=$(ulimit -Sn)
if [ "$soft" != unlimited ] && [ "$soft" -lt "$want" ]; then
  hard=$(ulimit -Hn)
  if [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ]; then ulimit -Sn "$want"; else ulimit -Sn "$hard"; fi
fi

exec node "$here/soak.js" "${args[@]}"
