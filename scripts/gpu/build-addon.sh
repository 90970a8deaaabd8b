#!/usr/bin/env bash
# Builds the native tree (engine, N-API addon, dpo-tool; tests with -DDPO_BUILD_TESTS=ON) with plain cmake, without
# cmake-js, node_modules or network: the Node-API headers and node-addon-api come from .gpu/ (prepare.sh), and the
# `node` that native/CMakeLists.txt asks for node-addon-api's include dir is .gpu's, finding it through NODE_PATH.
#   bash scripts/gpu/build-addon.sh [BUILD_DIR, default build/gpu] [-DVAR=VALUE ...]
# The addon lands at BUILD_DIR/dpo_engine.node (point DPO_ENGINE_PATH there), the tool at BUILD_DIR/dpo-tool.
# CUDA: DPO_CUDA_ARCHS (e.g. 90) or, unset, CMake's "native" when a GPU answers (native/CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build/gpu}"
shift || true
node_bin="$(bash scripts/gpu/node.sh)"
headers="$PWD/.gpu/node-headers/include/node"
[ -f "$headers/node_api.h" ] || { echo "build-addon: $headers/node_api.h is missing: run scripts/gpu/prepare.sh" >&2; exit 1; }
[ -f .gpu/node_modules/node-addon-api/napi.h ] || { echo "build-addon: .gpu/node_modules/node-addon-api is missing" >&2; exit 1; }
export PATH="$(dirname "$node_bin"):$PATH"
export NODE_PATH="$PWD/.gpu/node_modules"
jobs="${JOBS:-$(nproc)}"
# CMAKE_JS_INC is what cmake-js would pass; on Linux an addon needs no import library (CMAKE_JS_LIB stays empty).
cmake -S native -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_JS_INC="$headers" "$@"
cmake --build "$build" -j "$jobs"
echo "build-addon: $build/dpo_engine.node, $build/dpo-tool"
