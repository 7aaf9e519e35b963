#!/usr/bin/env bash
# Builds stickyd and its unit tests into build/ (or $BUILD_DIR).
#
#   packaging/build.sh [meson -D options...]
#
# Without a -Dbuildtype/--buildtype/-Doptimization argument the build is the optimised release
# one: -O3, assertions off (b_ndebug=if-release), link-time optimisation. Arguments given are
# applied every time: a build directory that exists is reconfigured (`meson configure`, which
# costs nothing when nothing changed), so changing this script's defaults or the arguments takes
# effect without deleting the directory.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
builddir=${BUILD_DIR:-build}

opts=()
custom_type=0
for a in "$@"; do
  case "$a" in
    -Dbuildtype=* | --buildtype=* | --buildtype | -Doptimization=* | --optimization=* | -Ddebug=*)
      custom_type=1 ;;
  esac
done
if [ "$custom_type" = 0 ]; then
  opts+=(-Dbuildtype=release -Db_ndebug=if-release -Db_lto=true)
fi
opts+=("$@")

if [ ! -f "$builddir/build.ninja" ]; then
  meson setup "$builddir" "${opts[@]}"
elif [ ${#opts[@]} -gt 0 ]; then
  meson configure "$builddir" "${opts[@]}" >/dev/null
fi
meson compile -C "$builddir"
