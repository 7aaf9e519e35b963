#!/usr/bin/env bash
# The Debian package, built, linted, installed and run.
#
#   tests/packaging/run.sh
#
# Builds the .deb with packaging/deb.sh (which installs the build dependencies), runs lintian
# (no error allowed), installs it with dpkg -i (this replaces an installed stickyd: run it on
# a disposable machine), checks what it installed, then runs the installed /usr/bin/stickyd in
# the foreground in front of a small HTTP server, with a fake systemd notification socket.
# Prints one line per check ("ok"/"not ok") and ends with `PKG passed=N failed=M`; exit status
# 0 iff M == 0. Environment: DEB (an already built .deb: skips packaging/deb.sh).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

passed=0 failed=0 n=0
ok() { n=$((n + 1)); passed=$((passed + 1)); echo "ok $n - $1"; }
not_ok() {
  n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
  if [ $# -gt 1 ] && [ -n "$2" ]; then printf '%s\n' "$2" | tail -n 30 | sed 's/^/#   /'; fi
}
# check DESCRIPTION COMMAND...: one test case from a command's exit status.
check() {
  local what=$1 output
  shift
  if output=$("$@" 2>&1); then ok "$what"; else not_ok "$what" "$output"; fi
}
finish() {
  echo "PKG passed=$passed failed=$failed"
  [ "$failed" = 0 ]
  exit
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stickyd-pkg.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---- build and lint
start=$(date +%s)
deb=${DEB:-}
if [ -z "$deb" ]; then
  if deb=$(bash packaging/deb.sh 2>"$tmp/deb.log" | tail -n 1) && [ -f "$deb" ]; then
    ok "packaging/deb.sh builds $(basename "$deb") ($(( $(date +%s) - start )) s)"
  else
    not_ok "packaging/deb.sh builds the package" "$(cat "$tmp/deb.log")"
    finish
  fi
fi

if command -v lintian >/dev/null; then
  lintian --tag-display-limit 0 "$deb" >"$tmp/lintian.log" 2>&1
  errors=$(grep -c '^E: ' "$tmp/lintian.log")
  if [ "$errors" = 0 ]; then
    ok "lintian: no error ($(grep -c '^W: ' "$tmp/lintian.log") warnings)"
    grep -E '^[WI]: ' "$tmp/lintian.log" | sed 's/^/#   /'
  else
    not_ok "lintian: $errors errors" "$(cat "$tmp/lintian.log")"
  fi
else
  not_ok "lintian is installed (packaging/install-deps.sh --deb)"
fi

# ---- install and what it installed
# dpkg_install DEB: dpkg -i, waiting (up to 10 minutes) for another apt or dpkg run to finish.
dpkg_install() {
  local out tries=0
  until out=$(dpkg -i "$1" 2>&1); do
    if ! grep -q 'lock' <<<"$out" || [ $((tries += 1)) -gt 300 ]; then
      printf '%s\n' "$out"
      return 1
    fi
    sleep 2
  done
}
check "dpkg -i installs the package" dpkg_install "$deb"
check "stickyd --version" /usr/bin/stickyd --version
check "the default config passes stickyd --check" \
  /usr/bin/stickyd --check -c /etc/stickyd/stickyd.yaml
check "the system user stickyd exists" getent passwd stickyd
# What the unit's ExecStartPre does, as the unit's user.
check "the stickyd user can read the config (ExecStartPre)" \
  runuser -u stickyd -- /usr/bin/stickyd --check -c /etc/stickyd/stickyd.yaml
check "systemd-analyze verify stickyd.service" \
  systemd-analyze verify /lib/systemd/system/stickyd.service
man_page=/usr/share/man/man8/stickyd.8.gz
if [ -f "$man_page" ] && out=$(zcat "$man_page" | groff -man -Tutf8 -ww -z 2>&1) && [ -z "$out" ] &&
   man -l "$man_page" 2>&1 | grep -q 'SIGUSR2'; then
  ok "man page stickyd(8) renders without warnings"
else
  not_ok "man page stickyd(8) renders without warnings" "${out:-$man_page missing or empty}"
fi
conffiles=$(dpkg-query -W -f='${Conffiles}' stickyd 2>&1)
if grep -q '^ */etc/stickyd/stickyd.yaml ' <<<"$conffiles"; then
  ok "/etc/stickyd/stickyd.yaml is a conffile"
else
  not_ok "/etc/stickyd/stickyd.yaml is a conffile" "$conffiles"
fi
score=$(systemd-analyze security --offline=yes /lib/systemd/system/stickyd.service 2>&1 |
        grep -E 'Overall exposure level' | tail -n 1)
echo "# systemd-analyze security: ${score:-not available}"

# ---- the installed binary, in the foreground
# wait_line FD REGEX LOG: reads lines from FD (copying them to LOG) until one matches, for at
# most 15 s; the matching line is in $line.
wait_line() {
  local fd=$1 re=$2 log=$3
  while IFS= read -r -t 15 line <&"$fd"; do
    printf '%s\n' "$line" >>"$log"
    if [[ $line =~ $re ]]; then return 0; fi
  done
  return 1
}
mkdir -p "$tmp/www"
echo "hello from the backend" >"$tmp/www/hello.txt"
mkfifo "$tmp/backend.fifo" "$tmp/notify.fifo" "$tmp/stickyd1.fifo" "$tmp/stickyd2.fifo"

python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$tmp/www" >"$tmp/backend.fifo" 2>&1 &
pids+=($!)
exec 3<"$tmp/backend.fifo"
if ! wait_line 3 'port ([0-9]+)' "$tmp/backend.log"; then
  not_ok "test backend (python3 -m http.server) starts" "$(cat "$tmp/backend.log")"
  finish
fi
backend_port=${BASH_REMATCH[1]}
cat <&3 >>"$tmp/backend.log" &
pids+=($!)

# A fake systemd: prints every datagram sent to NOTIFY_SOCKET as one line, after the sender's
# pid (SO_PASSCRED, as systemd reads it): "pid=N READY=1 | STATUS=...".
notify_sock="$tmp/notify.sock"
python3 -u - "$notify_sock" >"$tmp/notify.fifo" 2>&1 <<'EOF' &
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = "?"
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", value[:12])[0]
    print("pid=%s %s" % (pid, data.decode("utf-8", "replace").replace("\n", " | ")), flush=True)
EOF
pids+=($!)
exec 4<"$tmp/notify.fifo"
if ! wait_line 4 '^bound' "$tmp/notify.log"; then
  not_ok "fake notify socket is bound" "$(cat "$tmp/notify.log")"
  finish
fi

cat >"$tmp/stickyd.yaml" <<EOF
listen: 127.0.0.1:0
workers: 1
backends:
  - name: b1
    address: 127.0.0.1:$backend_port
EOF
with_systemd=0
if ldd /usr/bin/stickyd | grep -q 'libsystemd\.so'; then with_systemd=1; fi

# start_stickyd N FD: the installed binary in the foreground, its log through FD to
# stickydN.log; sets stickyd_pid and port once it listens.
start_stickyd() {
  local k=$1 fd=$2
  NOTIFY_SOCKET=$notify_sock /usr/bin/stickyd -c "$tmp/stickyd.yaml" >"$tmp/stickyd$k.fifo" 2>&1 &
  stickyd_pid=$!
  pids+=("$stickyd_pid")
  eval "exec $fd<\"\$tmp/stickyd$k.fifo\""
  if ! wait_line "$fd" ' listening .*address=127\.0\.0\.1:([0-9]+)' "$tmp/stickyd$k.log"; then
    not_ok "installed stickyd listens" "$(cat "$tmp/stickyd$k.log")"
    finish
  fi
  port=${BASH_REMATCH[1]}
  cat <&"$fd" >>"$tmp/stickyd$k.log" &
  pids+=($!)
}
# request: one request through stickyd to the backend's file.
request() {
  local body
  body=$(curl -sS --max-time 10 "http://127.0.0.1:$port/hello.txt" 2>&1)
  if [ "$body" = "hello from the backend" ]; then ok "$1"; else not_ok "$1" "$body"; fi
}
# notified REGEX WHAT: the next notification matches REGEX.
notified() {
  if wait_line 4 "$1" "$tmp/notify.log"; then ok "$2"; else not_ok "$2" "$(cat "$tmp/notify.log")"; fi
}
# exited PID: waits (60 s at most) for a stickyd to end, then kills it.
exited() {
  timeout 60 tail --pid="$1" -f /dev/null
  if kill -0 "$1" 2>/dev/null; then kill -KILL "$1"; fi
}

# Run 1: start, request, (notifications: READY, SIGHUP), SIGTERM, exit status 0.
start_stickyd 1 5
ok "installed stickyd listens (127.0.0.1:$port)"
request "a request through stickyd reaches the backend"
if [ "$with_systemd" = 1 ]; then
  notified "^pid=$stickyd_pid MAINPID=$stickyd_pid \\| READY=1" \
    "READY=1 with MAINPID=$stickyd_pid on NOTIFY_SOCKET"
  kill -HUP "$stickyd_pid"
  notified "^pid=$stickyd_pid RELOADING=1 \\| MONOTONIC_USEC=[0-9]+" "SIGHUP: RELOADING=1 with MONOTONIC_USEC"
  notified "^pid=$stickyd_pid MAINPID=$stickyd_pid \\| READY=1" "SIGHUP: READY=1 once reloaded"
else
  echo "# stickyd is built without libsystemd: no notification checks"
fi
kill -TERM "$stickyd_pid"
if [ "$with_systemd" = 1 ]; then
  notified "^pid=$stickyd_pid STOPPING=1" "STOPPING=1 on NOTIFY_SOCKET after SIGTERM"
fi
exited "$stickyd_pid"
wait "$stickyd_pid"
status=$?
if [ "$status" = 0 ]; then
  ok "stickyd exits 0 after SIGTERM"
else
  not_ok "stickyd exits 0 after SIGTERM (status $status)" "$(cat "$tmp/stickyd1.log")"
fi

# Run 2 (libsystemd): a SIGUSR2 upgrade. The new process must announce itself as the main
# process; the old one must not send STOPPING=1 (systemd would stop the service).
if [ "$with_systemd" = 1 ]; then
  start_stickyd 2 6
  old=$stickyd_pid
  notified "^pid=$old MAINPID=$old \\| READY=1" "run 2: READY=1"
  kill -USR2 "$old"
  if wait_line 4 '^pid=([0-9]+) MAINPID=([0-9]+) \| READY=1' "$tmp/notify.log" &&
     [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] && [ "${BASH_REMATCH[1]}" != "$old" ]; then
    new=${BASH_REMATCH[1]}
    ok "SIGUSR2: the new process $new sends MAINPID=$new READY=1"
  else
    not_ok "SIGUSR2: the new process sends MAINPID=<its pid> READY=1" "$(cat "$tmp/notify.log")"
    finish
  fi
  exited "$old"
  wait "$old"
  status=$?
  if [ "$status" = 0 ]; then ok "the old process exits 0 after the hand-over"
  else not_ok "the old process exits 0 after the hand-over (status $status)" "$(cat "$tmp/stickyd2.log")"; fi
  request "a request through the new process reaches the backend"
  pids+=("$new")
  kill -TERM "$new"
  # STOPPING=1 from the new process; one from the old would have come first (it is in the log).
  what="SIGTERM to the new process: STOPPING=1 from it, none from the old one"
  if wait_line 4 "^pid=$new STOPPING=1" "$tmp/notify.log" &&
     ! grep -q "^pid=$old .*STOPPING=1" "$tmp/notify.log"; then
    ok "$what"
  else
    not_ok "$what" "$(cat "$tmp/notify.log")"
  fi
  exited "$new"
  if [ "$(grep -c ' info stopped' "$tmp/stickyd2.log")" = 2 ]; then
    ok "the new process drains and stops"
  else
    not_ok "the new process drains and stops" "$(cat "$tmp/stickyd2.log")"
  fi
fi

echo "# $(( $(date +%s) - start )) s"
finish
