#!/usr/bin/env bash
# Configures (once) and builds stickyd and its unit tests into build/.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
builddir=${BUILD_DIR:-build}
if [ ! -f "$builddir/build.ninja" ]; then
  meson setup "$builddir" "$@"
fi
meson compile -C "$builddir"
