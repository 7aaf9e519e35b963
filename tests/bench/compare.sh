#!/usr/bin/env bash
# stickyd vs HAProxy 2.6 comparison benchmark (run by hand; never part of tests/run-all.sh).
#
#   tests/bench/compare.sh                     # everything, ~2 minutes
#   DURATION=5s TUNNELS=1000 PUSH_MB=100 tests/bench/compare.sh
#
# In one run, alternating the two proxies (stickyd, then HAProxy, for every test and round),
# against the same fake Engine.IO backends on 127.0.0.1:
#   1. sticky polling GETs over keep-alive (wrk, known sid + matching cookie)
#   2. handshakes (wrk, no sid: stickyd learns the sid and injects `io`; HAProxy cookie insert
#      + stick-table entry learnt from the open packet with wait-for-body)
#   3. memory per idle websocket tunnel (RSS before/after TUNNELS tunnels)
#   4. CPU per MB tunnelled (PUSH_MB through PUSH_CONNS tunnels, PUSH_FRAME_KB frames)
#   5. latency at a fixed request rate, open loop (build/tests/bench/fixed_rate, the wrk2 -R
#      method): sticky polls at LAT_RATE/s and handshakes at LAT_HS_RATE/s, p50/p99/p99.9
#      measured from each request's intended send time
#   6. build/tests/bench/affinity_bench (1M sessions) output, if built
# Test 1 also runs build/tests/bench/floor_relay (FLOOR=1): a relay that copies bytes between
# each client connection and its own connection to node 1 with no HTTP at all, so the same 4
# syscalls per poll and nothing else; its CPU per poll is the floor this machine's kernel puts
# under any proxy making one syscall per read and per write, shown as a reference column.
# Proxy CPU is utime+stime from /proc/<pid>/stat (clock ticks, usually 10 ms) over the test;
# RSS is VmRSS from /proc/<pid>/status. Polling backends: nginx (backends/nginx.conf, one
# worker, 3 server blocks); websocket backends: Node `ws` (compare_ws.js). HAProxy runs with
# nbthread $WORKERS and stickyd with `workers: $WORKERS` (WORKERS=1 by default: one thread each).
#
# Env: STICKYD_BIN (build/stickyd), BASE_PORT (18500), DURATION (10s), CONNS (50),
# THREADS (2), ROUNDS (1), NGINX (1 = also measure nginx as a reference proxy), TUNNELS (3000), PUSH_CONNS (50), PUSH_MB (200), PUSH_FRAME_KB (16),
# LAT (1 = run test 5), LAT_RATE (10000), LAT_HS_RATE (5000), LAT_DURATION (10s), LAT_WARMUP (1s),
# LAT_CONNS (50), FIXED_RATE_BIN (build/tests/bench/fixed_rate), WORKERS (1: stickyd `workers:` and HAProxy `nbthread`),
# SPLICE (1: stickyd `tunnel_splice: true`, its default; 0: `tunnel_splice: false`, the copy path),
# PIN (1 = pin every proxy measured to CPUs 1..n-1 and the backends and load generators to CPU 0,
# so that the proxy never waits for a core the load holds: steadier CPU-per-MB figures),
# TESTS (which tests run: default "http lat idle push"; http = tests 1 and 2),
# FLOOR (1 = also run floor_relay in test 1; FLOOR_BIN, default build/tests/bench/floor_relay),
# KEEP (1 = keep the work directory with configs and logs).
# Everything binds to 127.0.0.1, every step is bounded by `timeout`, and every process the
# script starts is stopped by its pid on exit.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STICKYD_BIN="${STICKYD_BIN:-$REPO/build/stickyd}"
BASE_PORT="${BASE_PORT:-18500}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-50}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-1}"
TUNNELS="${TUNNELS:-3000}"
PUSH_CONNS="${PUSH_CONNS:-50}"
PUSH_MB="${PUSH_MB:-200}"
PUSH_FRAME_KB="${PUSH_FRAME_KB:-16}"
NGINX="${NGINX:-1}"
WORKERS="${WORKERS:-1}"
SPLICE="${SPLICE:-1}"
LAT="${LAT:-1}"
LAT_RATE="${LAT_RATE:-10000}"
LAT_HS_RATE="${LAT_HS_RATE:-5000}"
LAT_DURATION="${LAT_DURATION:-10s}"
LAT_WARMUP="${LAT_WARMUP:-1s}"
LAT_CONNS="${LAT_CONNS:-50}"
FIXED_RATE_BIN="${FIXED_RATE_BIN:-$REPO/build/tests/bench/fixed_rate}"
PIN="${PIN:-0}"
FLOOR="${FLOOR:-1}"
FLOOR_BIN="${FLOOR_BIN:-$REPO/build/tests/bench/floor_relay}"
TESTS=" ${TESTS:-http lat idle push} "
[ "$LAT" = 1 ] || TESTS="${TESTS/ lat / }"
want() { [[ "$TESTS" == *" $1 "* ]]; }
HZ="$(getconf CLK_TCK)"
LOAD_ON=(); PROXY_ON=()
if [ "$PIN" = 1 ]; then
  [ "$(nproc)" -ge 2 ] || { echo "PIN=1 needs at least 2 CPUs" >&2; exit 1; }
  LOAD_ON=(taskset -c 0); PROXY_ON=(taskset -c "1-$(( $(nproc) - 1 ))")
fi

for bin in "$STICKYD_BIN" haproxy nginx wrk node curl; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "$bin" ] || { echo "missing: $bin" >&2; exit 1; }
done
if [ "$FLOOR" = 1 ] && want http && [ ! -x "$FLOOR_BIN" ]; then
  echo "missing: $FLOOR_BIN (ninja -C build, or FLOOR=0 to skip the floor column)" >&2; exit 1
fi
if want lat && [ ! -x "$FIXED_RATE_BIN" ]; then
  echo "missing: $FIXED_RATE_BIN (ninja -C build, or LAT=0 to skip test 5)" >&2; exit 1
fi

P1=$((BASE_PORT + 1)); P2=$((BASE_PORT + 2)); P3=$((BASE_PORT + 3))        # nginx polling
W1=$((BASE_PORT + 21)); W2=$((BASE_PORT + 22)); W3=$((BASE_PORT + 23))     # node ws
SP=$((BASE_PORT + 10)); HP=$((BASE_PORT + 11))                             # polling proxies
SW=$((BASE_PORT + 12)); HW=$((BASE_PORT + 13))                             # ws proxies
NP=$((BASE_PORT + 14)); NW=$((BASE_PORT + 15))                             # nginx proxy
FP=$((BASE_PORT + 16))                                                     # floor_relay

WORK="$(mktemp -d /tmp/stickyd-compare.XXXXXX)"
mkdir -p "$WORK/tmp"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

log() { echo "# $*" >&2; }
cmdlog() { echo "\$ $*" >>"$WORK/commands.txt"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wait_port() { # port
  local i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never opened" >&2; exit 1
}
port_free() { # port: exit if something already listens there
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 is already in use (set BASE_PORT)" >&2; exit 1
  fi
}
subst() { sed "s#@DIR@#$WORK#g;s/@PORT@/$2/;s/@P1@/$P1/;s/@P2@/$P2/;s/@P3@/$P3/;s/@W1@/$W1/;s/@W2@/$W2/;s/@W3@/$W3/;s/@MODE@/$3/;s/@WPORT@/$NW/" "$1"; }

for p in $P1 $P2 $P3 $W1 $W2 $W3 $SP $HP $SW $HW $NP $NW $FP; do port_free "$p"; done

# ---- backends -------------------------------------------------------------------------------
subst "$HERE/backends/nginx.conf" 0 x >"$WORK/nginx.conf"
cmdlog "nginx -c $WORK/nginx.conf -e $WORK/nginx-error.log   # tests/bench/backends/nginx.conf"
timeout 1800 "${LOAD_ON[@]}" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
PIDS+=($!)
cmdlog "node tests/bench/compare_ws.js backend $W1 $W2 $W3"
BACKEND_MAX_SEC=1800 "${LOAD_ON[@]}" node "$HERE/compare_ws.js" backend "$W1" "$W2" "$W3" >"$WORK/ws-backend.log" 2>&1 &
PIDS+=($!)
for p in $P1 $P2 $P3 $W1 $W2 $W3; do wait_port "$p"; done

# ---- proxies --------------------------------------------------------------------------------
child_of() { # pid of `timeout` -> pid of the proxy it runs (the one measured)
  local c i
  for i in 1 2 3 4 5 6 7 8 9 10; do c=$(pgrep -P "$1" | head -1) && break; sleep 0.1; done
  [ -n "$c" ] || { echo "no child of $1" >&2; exit 1; }
  echo "$c"
}
stickyd_conf() { # port backend-ports...
  local port=$1; shift
  echo "listen: 127.0.0.1:$port"
  echo "backends:"
  local i=1 bp
  for bp in "$@"; do echo "  - {name: n$i, address: 127.0.0.1:$bp}"; i=$((i + 1)); done
  cat <<YAML
workers: $WORKERS
tunnel_splice: $([ "$SPLICE" = 0 ] && echo false || echo true)
cookie: true
timeouts: {tunnel: 1h, client: 60s, server: 60s}
limits: {max_connections: 9000, max_connections_per_ip: 0}
log: {level: warn}
YAML
}
start_stickyd() { # name port backend-ports...
  local name=$1; shift
  stickyd_conf "$@" >"$WORK/$name.yaml"
  cmdlog "$STICKYD_BIN -c $WORK/$name.yaml   # $(tr '\n' ' ' <"$WORK/$name.yaml")"
  timeout 1800 "${PROXY_ON[@]}" "$STICKYD_BIN" -c "$WORK/$name.yaml" >"$WORK/$name.log" 2>&1 &
  local pid=$!; PIDS+=("$pid"); wait_port "$2"; PROXY_TO=$pid; PROXY_PID=$(child_of "$pid")
}
start_haproxy() { # name port mode
  subst "$HERE/haproxy.cfg" "$2" "$3" >"$WORK/$1.cfg"
  sed -i "/^  nbthread 1/a\\  stats socket $WORK/$1.sock" "$WORK/$1.cfg"
  sed -i "s/^  nbthread 1\$/  nbthread $WORKERS/" "$WORK/$1.cfg"
  cmdlog "haproxy -db -f $WORK/$1.cfg   # tests/bench/haproxy.cfg, backend $3, nbthread $WORKERS"
  timeout 1800 "${PROXY_ON[@]}" haproxy -db -f "$WORK/$1.cfg" >"$WORK/$1.log" 2>&1 &
  local pid=$!; PIDS+=("$pid"); wait_port "$2"; PROXY_TO=$pid; PROXY_PID=$(child_of "$pid")
}
stop_proxy() { # timeout-pid port: SIGTERM (timeout passes it on), wait until the port is closed
  kill "$1" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null || return 0; sleep 0.05; done
  echo "proxy on port $2 did not stop" >&2; exit 1
}
haproxy_cmd() { # socket command
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode()); out = b""
while True:
    d = s.recv(65536)
    if not d: break
    out += d
print(out.decode(errors="replace").splitlines()[0] if out else "")
PY
}

start_stickyd stickyd-poll "$SP" "$P1" "$P2" "$P3"; S_PID=$PROXY_PID
start_haproxy haproxy-poll "$HP" polling; H_PID=$PROXY_PID
N_PID=""
if [ "$NGINX" = 1 ]; then
  subst "$HERE/nginx-proxy.conf" "$NP" x >"$WORK/nginx-proxy.conf"
  cmdlog "nginx -c $WORK/nginx-proxy.conf -e $WORK/nginx-proxy-error.log   # tests/bench/nginx-proxy.conf"
  timeout 1800 "${PROXY_ON[@]}" nginx -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log" &
  PIDS+=($!); N_TO=$!
  wait_port "$NP"; wait_port "$NW"
  N_PID=$(child_of "$(child_of "$N_TO")")   # timeout -> master -> the one worker (measured)
fi

F_PID=""
if [ "$FLOOR" = 1 ] && want http; then
  cmdlog "build/tests/bench/floor_relay $FP $P1"
  timeout 1800 "${PROXY_ON[@]}" "$FLOOR_BIN" "$FP" "$P1" >"$WORK/floor.log" 2>&1 &
  PIDS+=($!); F_TO=$!
  wait_port "$FP"
  F_PID=$(child_of "$F_TO")
fi

# ---- results --------------------------------------------------------------------------------
declare -A R   # R[metric|proxy|round] = value
METRICS=()
put() { # metric proxy value
  R["$1|$2|$ROUND"]="$3"
  local m; for m in "${METRICS[@]}"; do [ "$m" = "$1" ] && return 0; done
  METRICS+=("$1")
}

to_ms() { # wrk latency like 812.00us / 1.20ms / 2.00s -> ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

run_wrk() { # label proxy pid url header...
  local label=$1 proxy=$2 pid=$3 url=$4; shift 4
  local hdr=() h; for h in "$@"; do hdr+=(-H "$h"); done
  local out="$WORK/wrk-$label-$proxy-$ROUND.txt"
  local rss0 t0 t1 rss1
  rss0=$(rss_kb "$pid"); t0=$(ticks "$pid")
  cmdlog "wrk -c $CONNS -t $THREADS -d $DURATION --latency ${hdr[*]@Q} '$url'"
  timeout 120 "${LOAD_ON[@]}" wrk -c "$CONNS" -t "$THREADS" -d "$DURATION" --latency "${hdr[@]}" "$url" >"$out" 2>&1
  t1=$(ticks "$pid"); rss1=$(rss_kb "$pid")
  local reqs rps p50 p99 non2xx errs
  reqs=$(awk '/requests in/ {print $1}' "$out")
  rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$out"); non2xx=${non2xx:-0}
  errs=$(awk '/Socket errors/ {s = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i; print s}' "$out"); errs=${errs:-0}
  local cpu_us
  cpu_us=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
  log "$label $proxy round $ROUND: $reqs req, $rps req/s, p50 $p50 ms, p99 $p99 ms, cpu $((t1 - t0)) ticks = $cpu_us us/req, non-2xx $non2xx, socket errors $errs, RSS $rss0 -> $rss1 KB"
  put "$label: requests/s" "$proxy" "$rps"
  put "$label: proxy CPU us/request" "$proxy" "$cpu_us"
  put "$label: latency p50 ms" "$proxy" "$p50"
  put "$label: latency p99 ms" "$proxy" "$p99"
  put "$label: non-2xx + socket errors" "$proxy" "$((non2xx + errs))"
  # learnt-session memory: round 1 only (fresh process, empty table; later rounds reuse memory
  # of expired entries, and HAProxy's table is capped at 1m entries)
  if [ "$label" = handshake ] && [ "$ROUND" = 1 ]; then
    put "$label: proxy RSS growth KB" "$proxy" "$((rss1 - rss0))"
    put "$label: RSS bytes per new session" "$proxy" "$(awk -v k=$((rss1 - rss0)) -v n="$reqs" 'BEGIN { printf "%.1f", k * 1024 / n }')"
  fi
  return 0
}

# Known sids: one handshake through each proxy.
S_HS="$(curl -s -D - "http://127.0.0.1:$SP/socket.io/?EIO=4&transport=polling")"
S_SID="$(printf '%s' "$S_HS" | sed -n 's/.*"sid":"\([^"]*\)".*/\1/p')"
S_COOKIE="$(printf '%s' "$S_HS" | sed -n 's/^[Ss]et-[Cc]ookie: \(io=[^;]*\).*/\1/p' | tr -d '\r')"
H_HS="$(curl -s -D - "http://127.0.0.1:$HP/socket.io/?EIO=4&transport=polling")"
H_SID="$(printf '%s' "$H_HS" | sed -n 's/.*"sid":"\([^"]*\)".*/\1/p')"
H_COOKIE="$(printf '%s' "$H_HS" | sed -n 's/^[Ss]et-[Cc]ookie: \(SERVERID=[^;]*\).*/\1/p' | tr -d '\r')"
log "stickyd sid $S_SID cookie '$S_COOKIE'; haproxy sid $H_SID cookie '$H_COOKIE'"
[ -n "$S_SID" ] && [ "$S_COOKIE" = "io=$S_SID" ] || { echo "stickyd handshake did not inject io=<sid>" >&2; exit 1; }
[ -n "$H_SID" ] && [ -n "$H_COOKIE" ] || { echo "haproxy handshake did not insert SERVERID" >&2; exit 1; }

if want http; then
  for ROUND in $(seq 1 "$ROUNDS"); do
    run_wrk poll stickyd "$S_PID" "http://127.0.0.1:$SP/socket.io/?EIO=4&transport=polling&sid=$S_SID" "Cookie: $S_COOKIE"
    run_wrk poll haproxy "$H_PID" "http://127.0.0.1:$HP/socket.io/?EIO=4&transport=polling&sid=$H_SID" "Cookie: $H_COOKIE"
    if [ -n "$F_PID" ]; then
      run_wrk poll floor "$F_PID" "http://127.0.0.1:$FP/socket.io/?EIO=4&transport=polling&sid=$S_SID" "Cookie: $S_COOKIE"
    fi
    run_wrk handshake stickyd "$S_PID" "http://127.0.0.1:$SP/socket.io/?EIO=4&transport=polling"
    run_wrk handshake haproxy "$H_PID" "http://127.0.0.1:$HP/socket.io/?EIO=4&transport=polling"
    if [ -n "$N_PID" ]; then
      run_wrk poll nginx "$N_PID" "http://127.0.0.1:$NP/socket.io/?EIO=4&transport=polling&sid=$S_SID"
      run_wrk handshake nginx "$N_PID" "http://127.0.0.1:$NP/socket.io/?EIO=4&transport=polling"
    fi
  done
fi
ROUND=1
HT="$(haproxy_cmd "$WORK/haproxy-poll.sock" "show table polling")"; HT="${HT%%$'\n'*}"
log "haproxy stick table after the handshake runs: $HT"

# ---- 5. latency at a fixed rate (open loop) -----------------------------------------------------
# fixed_rate schedules request i at t0 + i/rate over LAT_CONNS keep-alive connections and times
# it from that intended send time to the end of the response (a request whose connection is
# still busy waits on it and the wait counts), so a proxy that falls behind or stalls shows up
# in every request scheduled meanwhile. Same requests as tests 1 and 2.
run_lat() { # poll|handshake proxy pid port rate fixed_rate-args...
  local kind=$1 proxy=$2 pid=$3 port=$4 rate=$5; shift 5
  local label="fixed ${rate}/s $kind" out="$WORK/lat-$kind-$proxy-$ROUND.txt" t0 t1
  local args=(--port "$port" --rate "$rate" --connections "$LAT_CONNS" --duration "$LAT_DURATION"
              --warmup "$LAT_WARMUP" --timeline "$@")
  t0=$(ticks "$pid")
  cmdlog "build/tests/bench/fixed_rate ${args[*]@Q}"
  timeout 900 "${LOAD_ON[@]}" "$FIXED_RATE_BIN" "${args[@]}" >"$out" 2>"$out.err" || true
  t1=$(ticks "$pid")
  local line; line=$(grep '^RESULT ' "$out" || true)
  [ -n "$line" ] || { log "fixed_rate $label $proxy round $ROUND: no result ($(tr '\n' ' ' <"$out.err"))"; return 0; }
  get() { local v; v=$(printf '%s\n' "$line" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"); echo "${v:-0}"; }
  local p50 p99 p999 max ach errs non2xx unf all cpu_us
  p50=$(get p50_ms); p99=$(get p99_ms); p999=$(get p99.9_ms); max=$(get max_ms)
  ach=$(get achieved_rps); errs=$(get errors); non2xx=$(get non2xx); unf=$(get unfinished)
  all=$(get completed_all)
  cpu_us=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$all" 'BEGIN { printf "%.2f", n ? d * 1e6 / hz / n : 0 }')
  local extra=""; [ "$kind" = poll ] || extra=", set-cookie $(get set_cookie) of $(get requests), bad body $(get bad_body)"
  log "$label $proxy round $ROUND: $ach req/s achieved, p50 $p50 ms, p99 $p99 ms, p99.9 $p999 ms, max $max ms, cpu $((t1 - t0)) ticks = $cpu_us us/req, errors $errs, non-2xx $non2xx, unfinished $unf$extra, generator lag p99 $(get sched_lag_p99_ms) ms"
  put "$label: achieved requests/s" "$proxy" "$ach"
  put "$label: latency p50 ms" "$proxy" "$p50"
  put "$label: latency p99 ms" "$proxy" "$p99"
  put "$label: latency p99.9 ms" "$proxy" "$p999"
  put "$label: proxy CPU us/request" "$proxy" "$cpu_us"
  put "$label: failed requests" "$proxy" "$((errs + non2xx + unf))"
  # the generator's own timer lateness: when it nears the latencies, they measure the host
  put "$label: generator lag p99 ms" "$proxy" "$(get sched_lag_p99_ms)"
  return 0
}
if want lat; then
  for ROUND in $(seq 1 "$ROUNDS"); do
    run_lat poll stickyd "$S_PID" "$SP" "$LAT_RATE" \
      --path "/socket.io/?EIO=4&transport=polling&sid=$S_SID" --header "Cookie: $S_COOKIE"
    run_lat poll haproxy "$H_PID" "$HP" "$LAT_RATE" \
      --path "/socket.io/?EIO=4&transport=polling&sid=$H_SID" --header "Cookie: $H_COOKIE"
    run_lat handshake stickyd "$S_PID" "$SP" "$LAT_HS_RATE" --handshake
    run_lat handshake haproxy "$H_PID" "$HP" "$LAT_HS_RATE" --handshake
    if [ -n "$N_PID" ]; then
      run_lat poll nginx "$N_PID" "$NP" "$LAT_RATE" --path "/socket.io/?EIO=4&transport=polling&sid=$S_SID"
      run_lat handshake nginx "$N_PID" "$NP" "$LAT_HS_RATE" --handshake
    fi
  done
  ROUND=1
fi

# ---- websockets -----------------------------------------------------------------------------

idle_test() { # proxy pid port
  local proxy=$1 pid=$2 port=$3 out="$WORK/idle-$1.txt"
  # warm-up: open and close a few hundred tunnels so that allocator arenas exist
  timeout 60 "${LOAD_ON[@]}" node "$HERE/compare_ws.js" idle "$port" 300 0 >/dev/null
  sleep 1
  local rss0 rss1 i
  rss0=$(rss_kb "$pid")
  cmdlog "node tests/bench/compare_ws.js idle $port $TUNNELS 4   # $proxy"
  timeout 180 "${LOAD_ON[@]}" node "$HERE/compare_ws.js" idle "$port" "$TUNNELS" 4 >"$out" 2>&1 &
  local cpid=$!
  for i in $(seq 1 1200); do grep -q READY "$out" && break; sleep 0.1; done
  sleep 1
  rss1=$(rss_kb "$pid")
  wait "$cpid" || true
  local opened; opened=$(sed -n 's/.*opened=\([0-9]*\).*/\1/p' "$out"); opened=${opened:-0}
  local per; per=$(awk -v a="$rss0" -v b="$rss1" -v n="$opened" 'BEGIN { printf "%.2f", n ? (b - a) / n : 0 }')
  log "idle $proxy: $(cat "$out" | tr '\n' ' ') RSS $rss0 -> $rss1 KB = $per KB/tunnel"
  put "ws idle: tunnels opened (of $TUNNELS)" "$proxy" "$opened"
  put "ws idle: proxy RSS before KB" "$proxy" "$rss0"
  put "ws idle: proxy RSS with tunnels KB" "$proxy" "$rss1"
  put "ws idle: KB per tunnel" "$proxy" "$per"
}
push_test() { # proxy pid port
  local proxy=$1 pid=$2 port=$3 out="$WORK/push-$1.txt"
  local t0 t1
  t0=$(ticks "$pid")
  cmdlog "node tests/bench/compare_ws.js push $port $PUSH_CONNS $PUSH_MB $PUSH_FRAME_KB   # $proxy"
  timeout 300 "${LOAD_ON[@]}" node "$HERE/compare_ws.js" push "$port" "$PUSH_CONNS" "$PUSH_MB" "$PUSH_FRAME_KB" >"$out" 2>&1
  t1=$(ticks "$pid")
  local bytes mbps ms
  bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' "$out")
  mbps=$(sed -n 's/.*MBps=\([0-9.]*\).*/\1/p' "$out")
  ms=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v b="$bytes" 'BEGIN { printf "%.3f", d * 1000 / hz / (b / 1048576) }')
  log "push $proxy: $(tr '\n' ' ' <"$out") cpu $((t1 - t0)) ticks = $ms ms/MB"
  put "ws push ${PUSH_FRAME_KB}KB frames: proxy CPU ms/MB" "$proxy" "$ms"
  put "ws push ${PUSH_FRAME_KB}KB frames: MB/s (client-bound)" "$proxy" "$mbps"
}
# Fresh stickyd and HAProxy processes every round, so that the idle-tunnel RSS delta is not
# hidden by memory the previous round's tunnels left in the allocator.
for ROUND in $(seq 1 "$ROUNDS"); do
  start_stickyd stickyd-ws "$SW" "$W1" "$W2" "$W3"; SW_PID=$PROXY_PID; SW_TO=$PROXY_TO
  start_haproxy haproxy-ws "$HW" ws; HW_PID=$PROXY_PID; HW_TO=$PROXY_TO
  if want idle; then idle_test stickyd "$SW_PID" "$SW"; idle_test haproxy "$HW_PID" "$HW"; fi
  if want push; then push_test stickyd "$SW_PID" "$SW"; push_test haproxy "$HW_PID" "$HW"; fi
  stop_proxy "$SW_TO" "$SW"; stop_proxy "$HW_TO" "$HW"
  if [ -n "$N_PID" ]; then
    # nginx is not restarted (it also serves the polling tests): idle memory in round 1 only
    if [ "$ROUND" = 1 ] && want idle; then idle_test nginx "$N_PID" "$NW"; fi
    if want push; then push_test nginx "$N_PID" "$NW"; fi
  fi
done

# ---- report ---------------------------------------------------------------------------------
mean() { # metric proxy
  local r v s=0 n=0
  for r in $(seq 1 "$ROUNDS"); do
    v="${R["$1|$2|$r"]:-}"; [ -n "$v" ] || continue
    s=$(awk -v s="$s" -v v="$v" 'BEGIN { print s + v }'); n=$((n + 1))
  done
  [ "$n" -gt 0 ] && awk -v s="$s" -v n="$n" 'BEGIN { printf "%.2f", s / n }' || echo "-"
}
echo
echo "stickyd vs HAProxy $(haproxy -v | head -1 | awk '{print $3}') -- $(date -u +%FT%TZ), $(nproc) CPUs, $(uname -r)"
echo "wrk -c $CONNS -t $THREADS -d $DURATION; $ROUNDS round(s), mean shown; tunnels $TUNNELS; push ${PUSH_MB} MB / $PUSH_CONNS tunnels / ${PUSH_FRAME_KB} KB frames; tests:$TESTS"
[ "$PIN" = 1 ] && echo "pinned: proxies on CPUs ${PROXY_ON[2]}, backends and load generators on CPU 0"
want lat && echo "fixed: open-loop fixed_rate over $LAT_CONNS connections, $LAT_WARMUP warm-up + $LAT_DURATION measured; latency from the intended send time"
printf '%-46s %12s %12s %10s %12s %12s %12s\n' metric stickyd haproxy ratio "nginx(ref)" "floor(ref)" "floor/hap"
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
for m in "${METRICS[@]}"; do
  a=$(mean "$m" stickyd); b=$(mean "$m" haproxy); c=$(mean "$m" nginx); f=$(mean "$m" floor)
  printf '%-46s %12s %12s %10s %12s %12s %12s\n' "$m" "$a" "$b" "$(div "$a" "$b")" "$c" "$f" "$(div "$f" "$b")"
done
echo "ratio = stickyd / haproxy. floor(ref): floor_relay, bytes copied with no HTTP (test 1 only):"
echo "the least CPU per poll a proxy making the same syscalls (one read, one write per message) can"
echo "spend on this machine; floor/hap = the best ratio such a proxy can reach."
echo "nginx(ref): hash \$arg_sid proxy, not Engine.IO-sticky (no cookie, handshake"
echo "not learnt), its worker process measured; the nginx poll run sends the sid without a cookie."
echo
echo "haproxy stick table (polling): $HT"
echo
echo "commands:"
cat "$WORK/commands.txt"
if [ -x "$REPO/build/tests/bench/affinity_bench" ]; then
  echo
  echo "\$ build/tests/bench/affinity_bench 1000000"
  timeout 120 "$REPO/build/tests/bench/affinity_bench" 1000000 || echo "(affinity_bench failed)"
fi
