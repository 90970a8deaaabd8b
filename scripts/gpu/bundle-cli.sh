#!/usr/bin/env bash
# Bundles the dpo-studio CLI (src-main/cli via scripts/gpu/cli-entry.ts) and its npm dependencies into one ESM file
# for machines without node_modules (the GPU machine): bash scripts/gpu/bundle-cli.sh [OUT_FILE, default .gpu/cli.js]
# Run it with `node OUT_FILE <command> ...`; set DPO_ENGINE_PATH to the addon (.node) it should load.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-.gpu/cli.js}"
mkdir -p "$(dirname "$out")"
esbuild=node_modules/.bin/esbuild
[ -x "$esbuild" ] || { echo "bundle-cli: $esbuild is missing (npm install first)" >&2; exit 1; }
# The banner gives bundled CommonJS packages a require() for node's built-ins (esbuild's ESM output has none).
# ws's optional native helpers and electron are never loaded by the CLI's paths, so they stay external.
"$esbuild" scripts/gpu/cli-entry.ts --bundle --platform=node --format=esm --target=node20 --outfile="$out" \
  --banner:js="import { createRequire as __dpoCreateRequire } from 'node:module'; const require = __dpoCreateRequire(import.meta.url);" \
  --external:electron --external:bufferutil --external:utf-8-validate --log-level=warning
# No package.json is written beside it: the repository's ("type": "module") makes it ESM, and appRoot() (the nearest
# folder above with a package.json) stays the repository, so build/native/Release/dpo_engine.node is the default addon.
echo "bundle-cli: wrote $out ($(du -k "$out" | cut -f1) KiB)"
