#!/usr/bin/env bash
# The one GPU run (docs/gpu-session.md): runs ON the GPU machine, in the repository root, from a single device call
# with carry [".gpu"] (made here by scripts/gpu/prepare.sh). Most decisive evidence first; every finished step is in
# $OUT at once, so a run cut short still returns what it did. Every step's time limit is cut to what is left of the
# run's budget, and a step with under 10 s left is skipped and marked so.
#   bash scripts/gpu/contact.sh [GROUP ...]      default: all groups, in this order
#     gpu       nvidia-smi; the carried binaries unpacked; dpo-tool info (the GPU self-check runs here); if the
#               carried binaries do not load, a compile here as the fallback; the self-check's cost
#     parity    the CUDA parity suites, the self-check suite and the whole-pipeline parity (stories260K, generated)
#     sanitize  compute-sanitizer (memcheck, launches synchronised) on up to two failing suites
#     cli       the real CLI through the carried Node: info, generate and a short train on stories260K
#     bench     the random Breeze-7B-shape checkpoint, then dpo-tool bench-hw6 on it
#     peer      TRL DPOTrainer + PEFT LoRA + bitsandbytes NF4 on the same workload (scripts/bench/peer_trl_dpo.py)
#     breeze    the CLI generating the 10 HW6 prompts x 200 tokens on the Breeze-shape checkpoint
# $OUT receives (flat, 6 files): contact.log (everything printed), contact.json (each step's exit code, seconds and
# last line, rewritten after every step), bench-hw6.json, peer-trl.json, cli-train-metrics.jsonl, self-check.txt.
# Environment: DPO_CONTACT_SECONDS (budget, default 420), DPO_CONTACT_BACKEND (cuda; cpu for the dry run),
# DPO_BREEZE_DIR (default /tmp/breeze-random, made if missing), DPO_PEER_PYTHON (python3), DPO_PEER_WHEELS (1: install
# .gpu/whl first), DPO_PEER_ARGS (extra peer arguments). The dry run on a machine without a GPU: docs/gpu-session.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
OUT="${OUT:-/tmp/dpo-contact-out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/contact.log") 2>&1
tee_pid=$!

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(gpu parity sanitize cli bench peer breeze)
wants() { local g; for g in "${groups[@]}"; do [ "$g" = "$1" ] && return 0; done; return 1; }

t_start=$(date +%s)
deadline=$((t_start + ${DPO_CONTACT_SECONDS:-420}))
backend="${DPO_CONTACT_BACKEND:-cuda}"
model="${DPO_BREEZE_DIR:-/tmp/breeze-random}"
peer_python="${DPO_PEER_PYTHON:-python3}"
steps_tsv="$(mktemp)"
step_out="$(mktemp)"
failed=0
export DPO_STUDIO_CACHE=/tmp/dpo-studio-cache PYTHONUNBUFFERED=1

# contact.json from the steps so far (written to a temp name, then renamed).
write_summary() {
  python3 - "$steps_tsv" "$OUT/contact.json" "$backend" "$t_start" "$failed" <<'PY'
import json, os, sys, time
tsv, out, backend, t0, failed = sys.argv[1:6]
steps = []
for line in open(tsv):
    name, rc, secs, last = (line.rstrip("\n").split("\t") + ["", "", "", ""])[:4]
    steps.append({"name": name, "rc": None if rc == "skipped" else int(rc), "skipped": rc == "skipped",
                  "seconds": float(secs or 0), "last_line": last})
doc = {"run": "contact", "backend": backend, "seconds": round(time.time() - int(t0)), "failed_steps": int(failed),
       "steps": steps}
json.dump(doc, open(out + ".tmp", "w"), indent=1)
os.replace(out + ".tmp", out)
PY
}

record() {  # NAME RC SECONDS LAST_LINE
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(printf '%s' "$4" | tr '\t\r' '  ' | cut -c1-300)" >> "$steps_tsv"
  write_summary
}

# step NAME MAX_SECONDS CMD...: CMD under a timeout of min(MAX, time left), its output shown and kept for the summary.
step() {
  local name="$1" max="$2"
  shift 2
  local left=$((deadline - $(date +%s)))
  local limit=$((max < left ? max : left))
  if [ "$limit" -lt 10 ]; then
    echo "=== $name: skipped (only ${left}s of the run left)"
    record "$name" skipped 0 "skipped: ${left}s of the run left"
    return 1
  fi
  echo "=== $name (limit ${limit}s): $*"
  local t0 rc secs last
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$step_out"
  rc=${PIPESTATUS[0]}
  secs=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
  last="$(grep -v '^[[:space:]]*$' "$step_out" | tail -n 1)"
  echo "=== $name: rc $rc in ${secs}s"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  record "$name" "$rc" "$secs" "$last"
  return "$rc"
}

skip() {  # NAME WHY
  echo "=== $1: skipped ($2)"
  record "$1" skipped 0 "skipped: $2"
}

bin=/tmp/dpo-bin
node_bin=""
selfcheck_failed=0
GPU_TESTS=(test_backend_self_check test_backend_ops test_pipeline_parity)

# The native tests read DPO_SHARED/models/stories260K: a stand-in made from .gpu/ (../shared does not travel).
mkdir -p /tmp/dpo-shared/models /tmp/dpo-shared/datasets
ln -sfn "$root/.gpu/stories260K" /tmp/dpo-shared/models/stories260K
ln -sfn "$root/.gpu/genai-hw6" /tmp/dpo-shared/datasets/genai-hw6

# Functions cannot run under `timeout`; these two run as bash -c scripts.
unpack='rm -rf "$0" && mkdir -p "$0" && { if command -v xz >/dev/null; then xz -dc .gpu/bin.tar.xz | tar -C "$0" -xf -;
  else python3 -c "import sys, tarfile; tarfile.open(sys.argv[1], \"r:xz\").extractall(sys.argv[2])" .gpu/bin.tar.xz "$0"; fi; } &&
  ls -la "$0" &&
  echo "built from $(cat "$0/COMMIT"); this tree is $(git describe --always --dirty 2>/dev/null || echo unknown)"'
# The carried binaries fail to load (missing library, glibc, an instruction this CPU lacks): build them here.
compile_fallback='JOBS="$(nproc)" DPO_CUDA_ARCHS=90 bash scripts/gpu/build-addon.sh build/gpu -DDPO_NATIVE_ARCH=OFF \
  -DCMAKE_CXX_FLAGS=-march=x86-64-v3 -DDPO_BUILD_TESTS=ON'

if wants gpu; then
  step nvidia-smi 20 bash -c 'nvidia-smi && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv'
  step unpack 60 bash -c "$unpack" "$bin"
  if ! step tool-info 90 "$bin/dpo-tool" info; then
    if grep -qE 'error while loading shared libraries|GLIBC|cannot execute|Illegal instruction|No such file' "$step_out" ||
       [ ! -x "$bin/dpo-tool" ]; then
      echo "contact: the carried binaries do not run here; building them (fallback)"
      if step compile-fallback 330 bash -c "$compile_fallback"; then
        bin="$root/build/gpu"
        step tool-info-built 90 "$bin/dpo-tool" info
      fi
    fi
  fi
  grep '^cuda self-check:' "$step_out" > "$OUT/self-check.txt" 2>/dev/null
  grep -q '^cuda self-check: failed' "$OUT/self-check.txt" 2>/dev/null && selfcheck_failed=1
  if [ "$backend" = cuda ]; then
    step self-check-cost 60 "$bin/dpo-tool" self-check --repeat 20 && tail -n 1 "$step_out" >> "$OUT/self-check.txt"
  else
    step self-check-cost 60 "$bin/dpo-tool" self-check --candidate cpu --repeat 20 &&
      tail -n 1 "$step_out" >> "$OUT/self-check.txt"
  fi
fi

failing=()
if wants parity; then
  for t in "${GPU_TESTS[@]}"; do
    max=120
    [ "$t" = test_pipeline_parity ] && max=180
    step "$t" "$max" env -C native DPO_SHARED=/tmp/dpo-shared "$bin/$t" || failing+=("$t")
  done
  # A refused GPU makes the pipeline parity fail before it compares anything: compare it anyway.
  if [ "$selfcheck_failed" = 1 ] && printf '%s\n' "${failing[@]}" | grep -qx test_pipeline_parity; then
    step test_pipeline_parity-unchecked 180 env -C native DPO_SHARED=/tmp/dpo-shared DPO_CUDA_SELF_CHECK=off \
      "$bin/test_pipeline_parity"
  fi
fi

if wants sanitize; then
  if [ ${#failing[@]} -eq 0 ]; then
    skip sanitize "no failing suite"
  elif ! command -v compute-sanitizer >/dev/null; then
    step sanitize-available 10 compute-sanitizer --version
  else
    # Launches synchronised (DPO_CUDA_SYNC=1), so a fault is reported by the kernel that caused it.
    for t in "${failing[@]:0:2}"; do
      step "sanitize-$t" 80 env -C native DPO_SHARED=/tmp/dpo-shared DPO_CUDA_SYNC=1 \
        compute-sanitizer --tool memcheck --print-limit 20 "$bin/$t"
    done
  fi
fi

if wants cli || wants breeze; then
  node_bin="$(bash scripts/gpu/node.sh)" || node_bin=""
  export DPO_ENGINE_PATH="$bin/dpo_engine.node"
fi

if wants cli; then
  if [ -z "$node_bin" ]; then
    skip cli "no Node (.gpu/node.xz missing)"
  else
    step cli-info 60 "$node_bin" .gpu/cli.js info
    step cli-generate-stories 90 "$node_bin" .gpu/cli.js generate --model .gpu/stories260K --prompts .gpu/genai-hw6/test_prompt.json \
      --max-new-tokens 200 --backend "$backend" --out /tmp/cli-stories.json && head -c 600 /tmp/cli-stories.json && echo
    rm -rf /tmp/cli-train-stories
    step cli-train-stories 150 "$node_bin" .gpu/cli.js train --model .gpu/stories260K --dataset .gpu/genai-hw6 --backend "$backend" \
      --out /tmp/cli-train-stories
    cp /tmp/cli-train-stories/metrics.jsonl "$OUT/cli-train-metrics.jsonl" 2>/dev/null
  fi
fi

if wants bench; then
  if [ ! -f "$model/config.json" ]; then
    step make-model 150 "$bin/dpo-tool" make-model --arch mistral --shards 4 --threads "$(nproc)" --out "$model"
  fi
  step bench-hw6 240 "$bin/dpo-tool" bench-hw6 --model "$model" --workload .gpu/hw6-workload.json \
    --backend "$backend" --json "$OUT/bench-hw6.json"
fi

if wants peer; then
  if [ "${DPO_PEER_WHEELS:-1}" = 1 ]; then
    # The image lacks TRL, bitsandbytes and datasets (and two of its needs): the carried wheels, no network.
    step peer-wheels 60 "$peer_python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    skip peer-wheels "DPO_PEER_WHEELS=0: the peer's Python has the packages"
  fi
  step peer-imports 90 "$peer_python" -c 'import importlib.metadata as m
import torch, transformers, peft, accelerate, trl, datasets, bitsandbytes
from trl import DPOConfig, DPOTrainer
print("cuda", torch.cuda.is_available(), torch.version.cuda, "|", ", ".join("%s %s" % (p, m.version(p)) for p in
  ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "bitsandbytes", "pyarrow", "fsspec",
   "huggingface_hub", "dill", "multiprocess")))'
  if [ -f "$model/config.json" ]; then
    # shellcheck disable=SC2086  # DPO_PEER_ARGS is a list of flags
    step peer-trl 330 "$peer_python" scripts/bench/peer_trl_dpo.py --model "$model" --workload .gpu/hw6-workload.json \
      --tokenizer .gpu/breeze-tokenizer --ours "$OUT/bench-hw6.json" --json "$OUT/peer-trl.json" ${DPO_PEER_ARGS:-}
  else
    skip peer-trl "no checkpoint at $model"
  fi
fi

if wants breeze; then
  if [ -z "$node_bin" ] || [ ! -f "$model/config.json" ]; then
    skip cli-generate-breeze "no Node or no checkpoint"
  else
    cp .gpu/breeze-tokenizer/tokenizer.json .gpu/breeze-tokenizer/tokenizer_config.json "$model/"
    step cli-generate-breeze 120 "$node_bin" .gpu/cli.js generate --model "$model" --prompts .gpu/genai-hw6/test_prompt.json \
      --max-new-tokens 200 --backend "$backend" --out /tmp/cli-breeze.json
  fi
fi

write_summary
echo "contact: done in $(($(date +%s) - t_start)) s, $failed failed step(s); $OUT holds: $(ls "$OUT" | tr '\n' ' ')"
rm -f "$steps_tsv" "$step_out"
rm -rf .gpu/node  # the unpacked Node (99 MB): a dry run here must not leave it to be carried next time
# Let tee write the last lines before the device tool collects $OUT.
exec 1>&- 2>&-
wait "$tee_pid" 2>/dev/null || true
