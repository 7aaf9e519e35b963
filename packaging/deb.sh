#!/usr/bin/env bash
# Builds the Debian binary package of stickyd from this working tree.
#
#   packaging/deb.sh
#
# Installs the build dependencies (packaging/install-deps.sh --deb), copies the project's files
# (tracked, and new ones git does not ignore) to a temporary directory with packaging/debian/ as
# debian/, runs `dpkg-buildpackage -b -us -uc` there (release build: see debian/rules) and
# copies the packages to $DEB_OUT (default build-deb/). The last line printed is the path of
# the stickyd .deb.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${DEB_OUT:-$top/build-deb}

bash "$top/packaging/install-deps.sh" --deb >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/stickyd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src="$work/stickyd"
mkdir -p "$src"
# node_modules (a symlink git does not ignore in some checkouts) and deleted files stay out.
(cd "$top" && git ls-files -z --cached --others --exclude-standard |
   grep -zvE '(^|/)node_modules(/|$)' |
   while IFS= read -r -d '' f; do if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi; done |
   tar --null --no-recursion -T - -cf -) | tar -C "$src" -xf -
rm -rf "$src/debian"
cp -a "$top/packaging/debian" "$src/debian"

(cd "$src" && dpkg-buildpackage -b -us -uc -j"$(nproc)") >&2

mkdir -p "$out"
deb=
for f in "$work"/*.deb "$work"/*.ddeb; do
  [ -e "$f" ] || continue
  cp "$f" "$out/"
  case "$(basename "$f")" in
    stickyd_*.deb) deb="$out/$(basename "$f")" ;;
  esac
done
if [ -z "$deb" ]; then
  echo "deb: dpkg-buildpackage made no stickyd .deb" >&2
  exit 1
fi
echo "$deb"
