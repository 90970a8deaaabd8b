#!/usr/bin/env bash
# Runs ON the GPU machine, in the repository root, as one device call per stage (docs/gpu-session.md). Needs .gpu/
# from scripts/gpu/prepare.sh (carry [".gpu"]); writes its log and JSON results into $OUT, flat, at most 4 files a
# stage, and keeps every stage inside 9 minutes (each step gets a timeout cut to what is left of the stage's time).
#   bash scripts/gpu/session.sh build   cmake (CUDA for $DPO_CUDA_ARCHS, default 90 = H100/H200) with tests, -j all
#                                       cores; ctest --output-on-failure; dpo-tool info; the addon through the CLI
#   bash scripts/gpu/session.sh bench   random Breeze-7B-shape checkpoint in /tmp, dpo-tool bench-hw6 --backend cuda,
#                                       the PyTorch + PEFT peer, then the CLI (the `cli` stage) as time allows
#   bash scripts/gpu/session.sh cli     the bundled CLI with the carried Node: info; generate + a tiny train run on
#                                       stories260K; generate of the 10 HW6 prompts x 200 tokens on the Breeze shape
set -uo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
stage="${1:-}"
case "$stage" in build | bench | cli) ;; *) echo "usage: session.sh build|bench|cli" >&2; exit 2 ;; esac
OUT="${OUT:-/tmp/dpo-out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/$stage.log") 2>&1
tee_pid=$!

t_start=$(date +%s)
deadline=$((t_start + ${DPO_STAGE_SECONDS:-530}))
steps_json=""
failed=0

# step NAME MAX_SECONDS CMD...: runs CMD with a timeout of min(MAX, time left); records rc and seconds.
step() {
  local name="$1" max="$2"
  shift 2
  local left=$((deadline - $(date +%s)))
  local limit=$((max < left ? max : left))
  if [ "$limit" -lt 10 ]; then
    echo "=== $name: skipped (only ${left}s of the stage left)"
    steps_json+="${steps_json:+, }{\"name\": \"$name\", \"rc\": null, \"skipped\": true}"
    return 0
  fi
  echo "=== $name (timeout ${limit}s): $*"
  local t0 rc
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  local secs
  secs=$(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 2))")
  echo "=== $name: rc $rc in ${secs}s"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  steps_json+="${steps_json:+, }{\"name\": \"$name\", \"rc\": $rc, \"seconds\": $secs}"
  return 0
}

finish() {
  local extra="${1:-}"
  printf '{"stage": "%s", "failed_steps": %d, "seconds": %d, "steps": [%s]%s}\n' "$stage" "$failed" \
    $(($(date +%s) - t_start)) "$steps_json" "$extra" > "$OUT/$stage.json"
  echo "session: stage $stage done, $failed failed step(s); results in $OUT"
}

export DPO_CUDA_ARCHS="${DPO_CUDA_ARCHS:-90}"
export DPO_STUDIO_CACHE=/tmp/dpo-studio-cache
node_bin="$(bash scripts/gpu/node.sh)" || node_bin=""
model="${DPO_BREEZE_DIR:-/tmp/breeze-random}"
# Only for trying this script on a machine without a GPU (DPO_SESSION_BACKEND=cpu and a small DPO_BREEZE_DIR).
backend="${DPO_SESSION_BACKEND:-cuda}"

# The native tests read ../shared/models/stories260K (ctest's DPO_SHARED); give them a stand-in made from .gpu/.
shared_standin() {
  if [ ! -e ../shared/models/stories260K ] && [ -d .gpu/stories260K ]; then
    mkdir -p /tmp/dpo-shared/models /tmp/dpo-shared/datasets
    ln -sfn "$root/.gpu/stories260K" /tmp/dpo-shared/models/stories260K
    ln -sfn "$root/.gpu/genai-hw6" /tmp/dpo-shared/datasets/genai-hw6
    [ -e ../shared ] || ln -s /tmp/dpo-shared ../shared 2>/dev/null ||
      echo "session: cannot link ../shared; the tests that read stories260K will fail"
  fi
}

# The tool and addon: built here by the build stage, else the carried prebuilt ones, else built now (no tests).
pick_binaries() {
  tool=build/gpu/dpo-tool
  addon="$root/build/gpu/dpo_engine.node"
  if [ ! -x "$tool" ] && [ -x .gpu/prebuilt/dpo-tool ]; then
    tool=.gpu/prebuilt/dpo-tool
    addon="$root/.gpu/prebuilt/dpo_engine.node"
    echo "session: using the prebuilt tool and addon carried in .gpu/prebuilt"
  fi
  if [ ! -x "$tool" ]; then
    step build-no-tests 330 bash scripts/gpu/build-addon.sh build/gpu -DDPO_BUILD_TESTS=OFF
  fi
  export DPO_ENGINE_PATH="$addon"
}

cli_steps() {
  [ -n "$node_bin" ] || { echo "session: no node binary (.gpu/node.xz missing)"; return 0; }
  local cli=.gpu/cli.js
  step cli-info 30 "$node_bin" $cli info --json
  step cli-generate-stories 60 "$node_bin" $cli generate --model .gpu/stories260K \
    --prompts .gpu/genai-hw6/test_prompt.json --max-new-tokens 200 --backend "$backend" --out /tmp/cli-stories.json
  step cli-train-stories 90 "$node_bin" $cli train --model .gpu/stories260K --dataset .gpu/genai-hw6 --backend "$backend" \
    --out /tmp/cli-train-stories
  if [ -f "$model/config.json" ]; then
    cp .gpu/breeze-tokenizer/tokenizer.json .gpu/breeze-tokenizer/tokenizer_config.json "$model/"
    step cli-generate-breeze 120 "$node_bin" $cli generate --model "$model" \
      --prompts .gpu/genai-hw6/test_prompt.json --max-new-tokens 200 --backend "$backend" --out /tmp/cli-breeze.json
  fi
  # What the CLI wrote, summarised into this stage's JSON (the files themselves stay on the machine).
  cli_json=$(python3 - <<'PY'
import json, os
out = {}
for key, path in [("generate_stories", "/tmp/cli-stories.json"), ("generate_breeze", "/tmp/cli-breeze.json")]:
    if os.path.exists(path):
        rows = json.load(open(path))
        first = dict(rows[0]) if rows else None
        if first:
            first["response"] = first["response"][:160]
        out[key] = {"responses": len(rows), "first": first}
p = "/tmp/cli-train-stories/train_summary.json"
if os.path.exists(p):
    s = json.load(open(p))
    out["train_stories"] = {k: s.get(k) for k in ("status", "global_step", "train_loss", "train_runtime", "pairs_per_s", "reference")}
print(json.dumps(out))
PY
)
  [ -n "$cli_json" ] || cli_json="{}"
}

case "$stage" in
  build)
    step nvidia-smi 20 nvidia-smi
    step nvcc 20 bash -c 'command -v nvcc >/dev/null && nvcc --version || /usr/local/cuda/bin/nvcc --version'
    shared_standin
    step build 330 bash scripts/gpu/build-addon.sh build/gpu -DDPO_BUILD_TESTS=ON
    step ctest 150 ctest --test-dir build/gpu --output-on-failure
    # A failing GPU suite again under compute-sanitizer, with every launch synchronised (DPO_CUDA_SYNC=1) so that a
    # fault is reported by the kernel that caused it: the first thing to read when fixing kernels.
    failed_log=build/gpu/Testing/Temporary/LastTestsFailed.log
    if [ -s "$failed_log" ]; then
      for t in $(cut -d: -f2 "$failed_log" | grep -E 'cuda|parity' | sed 's/_guarded$//' | sort -u); do
        step "sanitize-$t" 90 env -C native DPO_SHARED="$root/../shared" DPO_CUDA_SYNC=1 \
          compute-sanitizer --tool memcheck --print-limit 20 "$root/build/gpu/$t"
      done
    fi
    step tool-info 30 build/gpu/dpo-tool info
    [ -n "$node_bin" ] && DPO_ENGINE_PATH="$root/build/gpu/dpo_engine.node" step cli-info 30 "$node_bin" .gpu/cli.js info
    finish
    ;;
  bench)
    pick_binaries
    step nvidia-smi 20 nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm --format=csv
    if [ ! -f "$model/config.json" ]; then
      step make-model 150 "$tool" make-model --arch mistral --shards 4 --out "$model"
    fi
    step bench-hw6 210 "$tool" bench-hw6 --model "$model" --workload .gpu/hw6-workload.json --backend "$backend" \
      --json "$OUT/bench-hw6.json"
    step peer-self-test 60 python3 scripts/bench/peer_peft_dpo.py --self-test
    step peer 210 python3 scripts/bench/peer_peft_dpo.py --model "$model" --workload .gpu/hw6-workload.json \
      --json "$OUT/peer.json"
    cli_json="{}"
    cli_steps
    finish ", \"cli\": $cli_json"
    ;;
  cli)
    pick_binaries
    cli_json="{}"
    cli_steps
    finish ", \"cli\": $cli_json"
    ;;
esac
# Let tee write the last lines before the device tool collects $OUT.
exec 1>&- 2>&-
wait "$tee_pid" 2>/dev/null || true
