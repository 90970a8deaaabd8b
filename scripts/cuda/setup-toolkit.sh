#!/usr/bin/env bash
# Installs a pinned CUDA 13.0 compiler toolkit from PyPI into the ignored folder .cuda-toolkit/ (reused when it is
# already there with these versions), so that machines without a preinstalled nvcc (CI, build machines) still compile
# the engine's CUDA backend. native/CMakeLists.txt picks the folder up by itself; docs/cuda-toolkit.md says why 13.0
# and what the two links below repair.
#   bash scripts/cuda/setup-toolkit.sh          prints the toolkit root (the folder holding bin/nvcc) last
set -euo pipefail
cd "$(dirname "$0")/../.."
dest="$PWD/.cuda-toolkit"
root="$dest/nvidia/cu13"
# 13.0 is the CUDA version of the GPU machine's driver (580.x) and of its own nvcc: binaries built here run there
# without PTX JIT. Keep these five in step (one release of the toolkit).
pins=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
      nvidia-nvvm==13.0.88)
stamp="$dest/.pins"

if [ -x "$root/bin/nvcc" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${pins[*]}" ]; then
  echo "cuda-toolkit: reusing $root" >&2
else
  command -v python3 >/dev/null || { echo "cuda-toolkit: python3 is needed (pip installs the toolkit)" >&2; exit 1; }
  echo "cuda-toolkit: installing ${pins[*]} into $dest (one time, about 300 MB unpacked)" >&2
  tmp="$dest.tmp"
  rm -rf "$tmp"
  # Binary wheels only, no dependencies beyond the five: nothing else is wanted in the folder.
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --only-binary=:all: --target "$tmp" "${pins[@]}"
  [ -x "$tmp/nvidia/cu13/bin/nvcc" ] || { echo "cuda-toolkit: the wheels did not provide nvidia/cu13/bin/nvcc" >&2; exit 1; }
  rm -rf "$dest"
  mv "$tmp" "$dest"
  echo "${pins[*]}" > "$stamp"
fi

# (1) The wheel's nvcc.profile adds "lib64" to the link path, but the runtime wheel ships "lib".
[ -e "$root/lib64" ] || ln -s lib "$root/lib64"
# (2) CMake's FindCUDAToolkit looks for the unversioned libcudart.so, which the runtime wheel leaves out.
[ -e "$root/lib/libcudart.so" ] || ln -s libcudart.so.13 "$root/lib/libcudart.so"

"$root/bin/nvcc" --version | tail -n 2 >&2
echo "$root"
