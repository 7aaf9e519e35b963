#!/usr/bin/env bash
# Installs everything stickyd needs on a fresh Debian machine.
#   packaging/install-deps.sh           build dependencies (Debian packages)
#   packaging/install-deps.sh --tests   also the test packages, and the npm packages of the
#                                       e2e and browser tests (npm ci)
#   packaging/install-deps.sh --deb     also what packaging/deb.sh needs to build the .deb
# Packages already present are not reinstalled; apt-get runs only when something is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

packages=(g++ meson ninja-build pkg-config libuv1-dev libssl-dev libyaml-cpp-dev doctest-dev
          libc-ares-dev liburing-dev node-llhttp libsystemd-dev openssl curl)
# The test suite also builds the libFuzzer targets with clang; dnsmasq is the real DNS server
# of the discovery tests; haproxy (2.6) is the side-by-side column of the request-smuggling
# e2e test and tests/bench/smuggling-compare.js (the package's default config listens on no
# port); systemd brings systemd-socket-activate, which passes stickyd a listening socket
# the way a socket unit does (LISTEN_FDS), and systemd-analyze for the packaging test, which
# builds and lints the .deb (tests/packaging/run.sh) and renders its man page;
# chromium-headless-shell is the browser of tests/browser (driven by puppeteer-core).
# packaging/deb.sh builds the Debian package with these.
deb_packages=(debhelper dpkg-dev fakeroot lintian)
test_packages=(clang libclang-rt-14-dev haproxy dnsmasq-base systemd chromium-headless-shell
               "${deb_packages[@]}" man-db python3)
with_tests=0
with_deb=0
for a in "$@"; do
  case "$a" in
    --tests) with_tests=1 ;;
    --deb) with_deb=1 ;;
    *) echo "install-deps: unknown argument $a" >&2; exit 2 ;;
  esac
done

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

if [ "$with_tests" = 1 ]; then packages+=("${test_packages[@]}"); fi
if [ "$with_deb" = 1 ]; then packages+=("${deb_packages[@]}"); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt or dpkg run (a shared machine) is waited for rather than failing.
  "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q
  "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
    "${missing[@]}"
fi

if [ "$with_tests" = 1 ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install-deps: the tests need Node.js (>= 18) and npm on PATH" >&2
    exit 1
  fi
  # Reproducible: exactly the versions in package-lock.json. A node_modules that is a symbolic
  # link (shared with another checkout) is left alone: npm ci would empty its target.
  for d in tests/e2e tests/browser; do
    [ -L "$top/$d/node_modules" ] || (cd "$top/$d" && npm ci --no-audit --no-fund --loglevel=error)
  done
fi
