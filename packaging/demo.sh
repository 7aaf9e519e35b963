#!/usr/bin/env bash
# The stickyd demo: three Socket.IO nodes behind stickyd, and a page that shows each tab's
# node, transport and session, with buttons to switch transports and to kill the tab's node.
#
#   bash packaging/demo.sh        then open http://127.0.0.1:8080/ in a few tabs; Ctrl-C stops
#
# It installs what it needs (Debian packages with packaging/install-deps.sh, Node.js and npm
# from Debian when missing, the demo's pinned npm packages with `npm ci` in packaging/demo),
# builds stickyd (packaging/build.sh), starts the three nodes (packaging/demo/server.js) on
# free loopback ports and stickyd in front on 127.0.0.1:8080 with the config written below
# (cookie injection on, health checks every second, admin API on loopback for the page's
# sessions view). A node that exits (the page's kill button) is started again on its port
# after 2 s. Ctrl-C or SIGTERM stops the nodes and stickyd and removes the temp files.
#
# Environment: DEMO_PORT (default 8080), DEMO_SKIP_BUILD=1 (stickyd is built already: no apt,
# no build), STICKYD_BIN (default <repo>/$BUILD_DIR/stickyd), BUILD_DIR (default build).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
demo=$here/demo
port=${DEMO_PORT:-8080}
bin=${STICKYD_BIN:-$top/${BUILD_DIR:-build}/stickyd}
restart_after=2

say() { echo "demo: $*"; }
die() { echo "demo: $*" >&2; exit 1; }

if [ "${DEMO_SKIP_BUILD:-0}" != 1 ]; then
  bash "$here/install-deps.sh" || die "installing the build dependencies failed"
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "installing Node.js and npm (Debian packages)"
    sudo_cmd=()
    if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends nodejs npm ||
      die "installing nodejs and npm failed"
  fi
  bash "$here/build.sh" || die "building stickyd failed"
fi
[ -x "$bin" ] || die "no stickyd binary at $bin (build it with packaging/build.sh, or set STICKYD_BIN)"
command -v node >/dev/null || die "Node.js is not on PATH"
if [[ ! -f $demo/node_modules/.package-lock.json || $demo/package-lock.json -nt $demo/node_modules/.package-lock.json ]]; then
  (cd "$demo" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in $demo failed"
fi

# Four free loopback ports: the three nodes and the admin API.
read -r p1 p2 p3 admin_port < <(node -e '
  const net = require("node:net");
  Promise.all([0, 1, 2, 3].map(() => new Promise((resolve, reject) => {
    const s = net.createServer().once("error", reject);
    s.listen(0, "127.0.0.1", () => resolve(s));
  }))).then((all) => {
    console.log(all.map((s) => s.address().port).join(" "));
    for (const s of all) s.close();
  });') || die "cannot find free ports"
declare -A port_of=([n1]=$p1 [n2]=$p2 [n3]=$p3)
declare -A pid_of=()
stickyd_pid=

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stickyd-demo.XXXXXX")
cat >"$tmp/stickyd.yaml" <<EOF
# stickyd demo config (written by packaging/demo.sh)
listen: 127.0.0.1:$port
workers: 1
backends:
  - {name: n1, address: 127.0.0.1:$p1}
  - {name: n2, address: 127.0.0.1:$p2}
  - {name: n3, address: 127.0.0.1:$p3}
# Add the io cookie (HttpOnly, SameSite=Lax) to every handshake.
cookie: true
# A killed node is marked down at its first failed connect or check, and up again after two
# good checks once restarted.
health: {path: /health, interval: 1s, timeout: 500ms, rise: 2, fall: 1, passive_fall: 1}
admin: {listen: 127.0.0.1:$admin_port}
timeouts: {shutdown_grace: 2s, drain_idle: 1s}
EOF

stopping=0
stop_all() {
  stopping=1
  trap - INT TERM
  local pids=("${pid_of[@]}" $stickyd_pid)
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null
    # stickyd finishes within its 2 s shutdown grace; anything still there after 5 s is killed.
    for _ in $(seq 50); do
      alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ "$alive" = 1 ] || break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null
    wait "${pids[@]}" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap 'echo; say "stopping"; stop_all; exit 0' INT TERM
trap 'if [ "$stopping" = 0 ]; then stop_all; fi' EXIT

start_node() {
  node "$demo/server.js" --name "$1" --port "${port_of[$1]}" --admin "127.0.0.1:$admin_port" </dev/null &
  pid_of[$1]=$!
}

# Waits (at most 10 s) until GET http://127.0.0.1:$1$2 answers 2xx; fails at once if the
# process $3 exits meanwhile.
await_http() {
  for _ in $(seq 100); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1$2" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

for n in n1 n2 n3; do start_node "$n"; done
for n in n1 n2 n3; do await_http "${port_of[$n]}" /health "${pid_of[$n]}" || die "node $n did not start"; done
"$bin" -c "$tmp/stickyd.yaml" </dev/null &
stickyd_pid=$!
# The admin API, then a node's /health through the proxy's listener.
{ await_http "$admin_port" /health "$stickyd_pid" && await_http "$port" /health "$stickyd_pid"; } ||
  die "stickyd did not start (is 127.0.0.1:$port free? DEMO_PORT sets another port)"

cat <<EOF

stickyd demo running
  open   http://127.0.0.1:$port/   (in a few tabs; a private window or another browser lands on another node)
  nodes  n1 127.0.0.1:$p1, n2 127.0.0.1:$p2, n3 127.0.0.1:$p3
  admin  http://127.0.0.1:$admin_port/backends
  Ctrl-C stops everything

EOF

while :; do
  done_pid=
  wait -n -p done_pid
  status=$?
  if [ -z "$done_pid" ]; then
    [ "$status" = 127 ] && die "nothing left running"
    continue
  fi
  if [ "$done_pid" = "$stickyd_pid" ]; then
    stickyd_pid=
    die "stickyd exited (status $status)"
  fi
  for n in n1 n2 n3; do
    if [ "${pid_of[$n]:-}" = "$done_pid" ]; then
      unset "pid_of[$n]"
      say "node $n exited (status $status); starting it again in ${restart_after} s"
      sleep "$restart_after" &
      wait $!
      start_node "$n"
      await_http "${port_of[$n]}" /health "${pid_of[$n]}" && say "node $n is back on 127.0.0.1:${port_of[$n]}"
    fi
  done
done
