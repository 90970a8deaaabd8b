#!/usr/bin/env bash
# clang-format over the engine's C++/CUDA sources (native/) with a pinned clang-format, so that every machine lays
# the code out alike (docs/architecture.md, "Lint and format"). The binary comes from the PyPI wheel
# clang-format==$version, installed once into the user's cache (outside the clone) and reused.
#   bash scripts/lint/native-format.sh check   lists each file whose layout differs from native/.clang-format; fails
#   bash scripts/lint/native-format.sh fix     rewrites those files in place
#   bash scripts/lint/native-format.sh path    prints the clang-format binary (installing it if needed)
# DPO_CLANG_FORMAT_CACHE overrides the cache folder (default ${XDG_CACHE_HOME:-~/.cache}/dpo-studio/clang-format).
set -euo pipefail
cd "$(dirname "$0")/../.."
mode="${1:-check}"
# Pinned: a newer clang-format may lay the same code out differently, which would fail `npm run lint` everywhere.
version=22.1.8
dest="${DPO_CLANG_FORMAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dpo-studio/clang-format}/$version"
bin="$dest/clang_format/data/bin/clang-format"

if [ ! -x "$bin" ]; then
  command -v python3 >/dev/null || { echo "native-format: python3 is needed (pip installs clang-format)" >&2; exit 1; }
  echo "native-format: installing clang-format==$version into $dest (one time, about 5 MB)" >&2
  # Installed beside the destination and renamed, so an interrupted or concurrent install never leaves half a tool.
  tmp="$dest.tmp.$$"
  rm -rf "$tmp"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --only-binary=:all: \
    --target "$tmp" "clang-format==$version"
  [ -x "$tmp/clang_format/data/bin/clang-format" ] || { echo "native-format: the wheel has no clang-format binary" >&2; exit 1; }
  mkdir -p "$(dirname "$dest")"
  mv -T "$tmp" "$dest" 2>/dev/null || rm -rf "$tmp"  # another install won the race: use its copy
fi
"$bin" --version | grep -q "version $version" || { echo "native-format: $bin is not clang-format $version" >&2; exit 1; }

# Every C++/CUDA source and header under native/ is ours (no vendored code); the fuzz seeds and dictionaries are data.
mapfile -t files < <(find native -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | sort)
case "$mode" in
  check) "$bin" --dry-run -Werror "${files[@]}" ;;
  fix) "$bin" -i "${files[@]}" ;;
  path) echo "$bin" ;;
  *) echo "usage: native-format.sh check|fix|path" >&2; exit 2 ;;
esac
