#!/usr/bin/env bash
# Makes the pinned Python environment of the reference stack (torch, transformers, peft, trl, bitsandbytes, ...) that
# `npm run test:reference` compares the engine with, CPU only; reuses it when it already matches the pins.
#
#   bash scripts/refstack/setup.sh            prints the environment's python on its last line
#
# Where things go (both outside git):
#   DPO_REFSTACK_ENV    the environment            default <repo>/.refstack/venv
#   DPO_REFSTACK_CACHE  downloaded wheels (~0.7 GB) default ${XDG_CACHE_HOME:-~/.cache}/dpo-studio/refstack
# A run with an environment stamped with the same pins and scripts does nothing; a run with the wheels cached
# installs without the network. Size and timings: docs/reference-stack.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
env_dir="${DPO_REFSTACK_ENV:-$repo/.refstack/venv}"
cache_dir="${DPO_REFSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dpo-studio/refstack}"
wheels="$cache_dir/wheels"
python="${DPO_REFSTACK_PYTHON:-python3}"
owner_mark=".dpo-refstack"   # a folder holding this file was made by this script and may be replaced by it

log() { echo "refstack: $*" >&2; }

# What the environment is made from: the pins, the stub generator, this script and the interpreter's version.
stamp="$(cat "$here/requirements.txt" "$here/cuda_stubs.py" "$0" <("$python" -VV) | sha256sum | cut -c1-16)"
if [ -f "$env_dir/$owner_mark" ] && [ "$(cat "$env_dir/$owner_mark")" = "$stamp" ]; then
  log "environment up to date ($env_dir, stamp $stamp)"
  echo "$env_dir/bin/python"
  exit 0
fi
if [ -e "$env_dir" ] && [ ! -f "$env_dir/$owner_mark" ]; then
  log "$env_dir exists but was not made by this script; move it away or set DPO_REFSTACK_ENV"
  exit 1
fi

t0=$SECONDS
mkdir -p "$wheels"
# Offline first: every pinned wheel already in the cache means no network at all.
if ! "$python" -m pip download --quiet --no-index --find-links "$wheels" --no-deps --only-binary=:all: \
      -d "$wheels" -r "$here/requirements.txt" >/dev/null 2>&1; then
  log "downloading the pinned wheels into $wheels"
  "$python" -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: -d "$wheels" -r "$here/requirements.txt"
fi
t_download=$((SECONDS - t0))

# Built in place (a venv's scripts hold its absolute path); the mark says "building" until the checks pass, so an
# interrupted build is rebuilt next time.
rm -rf "$env_dir"
"$python" -m venv "$env_dir"
echo "building" > "$env_dir/$owner_mark"
# --no-deps: the requirements file is the whole closure; pip would otherwise add torch's CUDA wheels back.
"$env_dir/bin/python" -m pip install --quiet --no-index --find-links "$wheels" --no-deps --no-compile \
  -r "$here/requirements.txt"
site="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$python" "$here/cuda_stubs.py" "$site/torch/lib" "$site/nvidia/cu13/lib" >&2
t_install=$((SECONDS - t0 - t_download))

# The environment is only stamped once torch computes on the CPU and every library imports.
"$env_dir/bin/python" - <<'PY' >&2
import torch, transformers, peft, trl, bitsandbytes, accelerate, tokenizers, safetensors, jinja2
assert not torch.cuda.is_available()
a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
assert float((a @ a.T).trace()) == 506.0  # the sum of k^2 for k < 12
x = torch.randn(4, 8, requires_grad=True)
(x.softmax(-1) ** 2).sum().backward()
assert x.grad is not None and torch.isfinite(x.grad).all()
print('refstack: torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__,
      '| trl', trl.__version__, '| bitsandbytes', bitsandbytes.__version__)
PY

echo "$stamp" > "$env_dir/$owner_mark"
log "ready in $((SECONDS - t0)) s (wheels $t_download s, install $t_install s); $(du -sh "$env_dir" | cut -f1) in $env_dir"
echo "$env_dir/bin/python"
