#!/usr/bin/env python3
"""PyTorch + PEFT peer of `dpo-tool bench-hw6` (issue 6): the same HW6 DPO work on the same random checkpoint.

Runs on the GPU machine with only torch, transformers, peft, safetensors and numpy (no TRL, no bitsandbytes, no
network). bf16 base weights (no 4-bit: bitsandbytes is not there), PEFT LoRA r64 / alpha 16 on q_proj, v_proj,
dropout 0; per pair one [2, L] batch (chosen row 0, rejected row 1, right-padded with pad_id / mask 0 / label -100,
TRL's concatenated_inputs, docs/reference/dpo-data.md#collation-and-padding); log-prob sums over labels != -100
after the one-token shift (TRL get_batch_logps, docs/reference/dpo-loss.md#sequence-log-probs); sigmoid DPO loss
with beta 0.1; loss / 8 backward, 8 micro-batches per step, clipping
at 1.0, torch.optim.AdamW(fused=True) with fp32 state (bitsandbytes' paged 8-bit AdamW is not available), HF's
linear schedule with warmup ratio 0.1. Reference log-probs come first, once per pair, with the adapter disabled
(`with model.disable_adapter()`, TRL's null_ref_context), as dpo-tool does. Every pair of the workload is trained
(50 pairs = 7 steps), as in dpo-tool. As dpo-tool, each phase runs twice over every pair (BENCHMARKS.md, "Cold and
warm passes"): a cold pass that meets every pair shape first (PyTorch's per-shape CPU kernel setup costs seconds),
then the warm pass the rates use; the cold training loop runs at lr 0, which leaves the LoRA weights as they were
(checked), and the warm loop starts from them with a fresh optimizer.

  python3 scripts/bench/peer_peft_dpo.py --model DIR --workload FILE [--json FILE] [--pairs N]
         [--attn sdpa|eager] [--generate 0|1] [--new 200] [--grad-checkpointing 0|1] [--ceilings 0|1]
         [--device cuda|cpu] [--threads N]
--device cpu (npm run bench:peers, issue 16) runs the same loop on the CPU with an fp32 base (PyTorch's CPU matmuls),
--threads torch threads, no ceilings (dpo-tool ceilings measures them) and no GPU memory figures.
--ceilings (default on) first measures the machine's two ceilings that the floors of docs/performance.md use: device
memory bandwidth (a 1 GiB device-to-device copy) and dense bf16 matrix-product rate (8192^3).
  python3 scripts/bench/peer_peft_dpo.py --self-test     (pure functions; the torch ones on CPU when torch exists)
"""
import argparse
import json
import math
import sys
import time

GRAD_ACCUM = 8      # gradient_accumulation_steps (docs/reference/trainer.md#loss-scaling-and-the-logged-loss)
PEAK_LR = 2e-4      # the notebook's learning_rate
WARMUP_RATIO = 0.1
BETA = 0.1
MAX_GRAD_NORM = 1.0
LABEL_PAD = -100


# ---- pure Python (no torch): padding and the schedule

def pad_pair(chosen, rejected, pad_id):
    """TRL concatenated_inputs for batch 1: rows [chosen, rejected] right-padded to max(Lc, Lr)
    (docs/reference/dpo-data.md#collation-and-padding)."""
    length = max(len(chosen["ids"]), len(rejected["ids"]))
    ids, mask, labels = [], [], []
    for side in (chosen, rejected):
        n = len(side["ids"])
        ids.append(list(side["ids"]) + [pad_id] * (length - n))
        mask.append([1] * n + [0] * (length - n))
        labels.append(list(side["labels"]) + [LABEL_PAD] * (length - n))
    return ids, mask, labels


def scheduled_lr(step, steps, peak=PEAK_LR, warmup_ratio=WARMUP_RATIO):
    """HF get_linear_schedule_with_warmup: the lr optimizer step `step` (1-based) uses (docs/reference/trainer.md)."""
    warmup = math.ceil(steps * warmup_ratio)
    s = step - 1
    if s < warmup:
        return peak * s / max(1, warmup)
    return peak * max(0.0, (steps - s) / max(1, steps - warmup))


def left_pad(prompts, pad_id):
    """Left-padded prompt batch for HF generate (decoder-only models pad on the left)."""
    length = max(len(p) for p in prompts)
    ids = [[pad_id] * (length - len(p)) + list(p) for p in prompts]
    mask = [[0] * (length - len(p)) + [1] * len(p) for p in prompts]
    return ids, mask


# ---- torch functions (imported lazily so the pure part runs without torch)

def get_batch_logps(logits, labels):
    """TRL 0.9 get_batch_logps: sum over labelled positions of log p(label), after the one-token shift
    (docs/reference/dpo-loss.md#sequence-log-probs)."""
    import torch
    labels = labels[:, 1:].clone()
    logits = logits[:, :-1, :]
    mask = labels != LABEL_PAD
    labels[~mask] = 0
    per_token = torch.gather(logits.log_softmax(-1), 2, labels.unsqueeze(2)).squeeze(2)
    return (per_token * mask).sum(-1)


def dpo_sigmoid_loss(pol_c, pol_r, ref_c, ref_r, beta=BETA, label_smoothing=0.0):
    """TRL dpo_loss, loss_type sigmoid (docs/reference/dpo-loss.md#sigmoid-loss)."""
    import torch.nn.functional as F
    d = (pol_c - pol_r) - (ref_c - ref_r)
    return -F.logsigmoid(beta * d) * (1 - label_smoothing) - F.logsigmoid(-beta * d) * label_smoothing


def self_test():
    ids, mask, labels = pad_pair({"ids": [1, 5, 6], "labels": [-100, 5, 6]}, {"ids": [1, 7], "labels": [-100, 7]}, 2)
    assert ids == [[1, 5, 6], [1, 7, 2]] and mask == [[1, 1, 1], [1, 1, 0]] and labels == [[-100, 5, 6], [-100, 7, -100]]
    # The notebook's schedule (6 steps, warmup 1): 0, 2e-4, 1.6e-4, 1.2e-4, 8e-5, 4e-5
    # (docs/reference/trainer.md#learning-rate-schedule).
    got = [scheduled_lr(k, 6) for k in range(1, 7)]
    want = [0, 2e-4, 1.6e-4, 1.2e-4, 8e-5, 4e-5]
    assert all(abs(a - b) < 1e-12 for a, b in zip(got, want)), got
    assert left_pad([[1, 2, 3], [1]], 2) == ([[1, 2, 3], [2, 2, 1]], [[1, 1, 1], [0, 0, 1]])
    print("self-test: pure functions ok")
    try:
        import torch
    except ImportError:
        print("self-test: torch is not installed here; the torch functions were not run")
        return 0
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 7, generator=g)
    labels = torch.tensor([[-100, 3, 5, 1], [-100, 2, -100, -100]])
    lp = get_batch_logps(logits, labels)
    ls = logits.log_softmax(-1)
    want = torch.tensor([ls[0, 0, 3] + ls[0, 1, 5] + ls[0, 2, 1], ls[1, 0, 2]])
    assert torch.allclose(lp, want), (lp, want)
    loss = dpo_sigmoid_loss(torch.tensor(-10.0), torch.tensor(-12.0), torch.tensor(-11.0), torch.tensor(-11.0))
    assert abs(loss.item() - math.log1p(math.exp(-0.2))) < 1e-6, loss
    assert abs(dpo_sigmoid_loss(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)).item()
               - math.log(2)) < 1e-7
    # The cold training loop relies on this: AdamW with lr 0 and weight_decay 0 leaves the weights' bits.
    w = torch.randn(3, 5, generator=g, requires_grad=True)
    before = w.detach().clone()
    opt = torch.optim.AdamW([w], lr=0.0, weight_decay=0.0)
    for _ in range(3):
        (w * torch.randn(3, 5, generator=g)).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert torch.equal(w.detach(), before)
    print("self-test: torch functions ok (CPU)")
    return 0


# ---- the benchmark

def synchronize(device):
    """The device's synchronize (work on the CPU is synchronous)."""
    import torch
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def measure_ceilings(res):
    """Device copy bandwidth (bytes read + written per second) and bf16 GEMM rate, 10 timed repeats after 2 warm."""
    import torch
    sync = torch.cuda.synchronize
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(2):
        y.copy_(x)
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    sync()
    res["ceiling_copy_GBps"] = 2 * 10 * x.numel() / (time.perf_counter() - t0) / 1e9
    del x, y
    n = 8192
    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    for _ in range(2):
        a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    res["ceiling_bf16_TFLOPs"] = 2 * n ** 3 * 10 / (time.perf_counter() - t0) / 1e12
    del a, b
    torch.cuda.empty_cache()


def load_model(path, attn, device="cuda"):
    import torch
    from transformers import AutoModelForCausalLM
    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # the CPU peer: fp32 base

    def load(**kw):
        try:  # transformers >= 4.56 names it dtype; older ones torch_dtype
            return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn, **kw)
        except TypeError:
            return AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, attn_implementation=attn, **kw)
    if device == "cpu":
        return load()
    try:
        return load(device_map="cuda")  # straight to the GPU; needs accelerate (a peft dependency)
    except (ImportError, ValueError) as e:
        print("peer: device_map unavailable (%s); loading on the CPU, then moving to the GPU" % e)
        return load().to("cuda")


def pair_tensors(pair, pad_id, device):
    import torch
    ids, mask, labels = pad_pair(pair["chosen"], pair["rejected"], pad_id)
    return (torch.tensor(ids, device=device), torch.tensor(mask, device=device), torch.tensor(labels, device=device))


def pair_logps(model, batch):
    ids, mask, labels = batch
    # fp32 logits (docs/reference/dpo-loss.md#policy-forward)
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
    return get_batch_logps(logits, labels)


def run(args):
    import torch
    from peft import LoraConfig, get_peft_model
    import transformers
    import peft

    cuda = args.device == "cuda"
    if not cuda:
        torch.set_num_threads(args.threads)
    sync = synchronize(args.device)
    w = json.load(open(args.workload))
    pairs = w["pairs"][: args.pairs] if args.pairs else w["pairs"]
    pad_id = w["pad_id"]
    res = {"bench": "hw6-peer", "stack": "torch %s, transformers %s, peft %s" % (
        torch.__version__, transformers.__version__, peft.__version__),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (%d threads)" % torch.get_num_threads(),
        "model": args.model, "workload": args.workload,
        "pairs": len(pairs), "prompts": len(w["prompts"]), "attn": args.attn,
        "base_dtype": "bfloat16" if cuda else "float32",
        "optimizer": "torch.optim.AdamW(fused=%s), fp32 state" % cuda, "gradient_checkpointing": bool(args.grad_checkpointing)}

    if args.ceilings and cuda:
        measure_ceilings(res)
    t0 = time.perf_counter()
    model = load_model(args.model, args.attn, args.device)
    sync()
    res["load_s"] = time.perf_counter() - t0
    cfg = LoraConfig(r=64, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, bias="none",
                     task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    if args.grad_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model.train()  # dropout is 0 everywhere; train mode as TRL leaves it (docs/reference/generation.md)
    lora = [p for p in model.parameters() if p.requires_grad]
    res["lora_params"] = sum(p.numel() for p in lora)
    res["lora_dtype"] = str(lora[0].dtype)
    dev = lora[0].device
    batches = [pair_tensors(p, pad_id, dev) for p in pairs]
    res["mean_pair_tokens"] = sum(len(p["chosen"]["ids"]) + len(p["rejected"]["ids"]) for p in pairs) / len(pairs)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        res["memory_after_load_bytes"] = torch.cuda.memory_allocated()

    # ---- reference log-probs, adapter disabled: a cold pass over every pair, then the timed warm pass
    def reference(batch):
        with torch.no_grad(), model.disable_adapter():
            return pair_logps(model, batch)

    def reference_pass():
        t0, c0 = time.perf_counter(), time.process_time()
        refs = [reference(b) for b in batches]
        sync()
        return time.perf_counter() - t0, time.process_time() - c0, refs
    # *_cpu_s: CPU seconds of the process (all threads; torch's idle threads spin, so they count waiting too)
    res["reference_cold_s"], res["reference_cold_cpu_s"], cold_refs = reference_pass()
    res["reference_s"], res["reference_cpu_s"], refs = reference_pass()
    res["reference_logps"] = [[float(r[0]), float(r[1])] for r in refs]
    res["reference_cold_warm_max_abs_diff"] = max(float((a - b).abs().max()) for a, b in zip(cold_refs, refs))

    # ---- training: a cold loop at lr 0 (weights unchanged), then a fresh optimizer and the timed warm loop
    def micro(batch, ref):
        pol = pair_logps(model, batch)
        loss = dpo_sigmoid_loss(pol[0], pol[1], ref[0], ref[1])
        (loss / GRAD_ACCUM).backward()
        return loss.detach()

    steps = (len(batches) + GRAD_ACCUM - 1) // GRAD_ACCUM

    def train_pass(lr_scale):
        """One loop over every pair with a fresh optimizer; lr_scale 0 leaves the weights (AdamW with lr 0 and
        weight_decay 0 adds 0 times a finite step)."""
        opt = torch.optim.AdamW(lora, lr=PEAK_LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=cuda)
        losses, norms, acc = [], [], []
        t0, c0 = time.perf_counter(), time.process_time()
        for i, (b, r) in enumerate(zip(batches, refs)):
            acc.append(micro(b, r))
            if len(acc) == GRAD_ACCUM or i + 1 == len(batches):
                norm = torch.nn.utils.clip_grad_norm_(lora, MAX_GRAD_NORM)
                for g in opt.param_groups:
                    g["lr"] = lr_scale * scheduled_lr(len(losses) + 1, steps)
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(torch.stack(acc).mean())
                norms.append(norm)
                acc = []
        sync()
        return time.perf_counter() - t0, time.process_time() - c0, losses, norms

    before = [p.detach().clone() for p in lora]
    res["train_cold_s"], res["train_cold_cpu_s"], _, cold_norms = train_pass(0.0)
    changed = [i for i, (p, q) in enumerate(zip(lora, before)) if not torch.equal(p.detach(), q)]
    if changed:
        raise RuntimeError("peer: the lr-0 cold training loop changed %d LoRA tensors (first: #%d); the warm loop "
                           "would not start from the fresh adapter" % (len(changed), changed[0]))
    del before
    res["train_s"], res["train_cpu_s"], losses, norms = train_pass(1.0)
    res["train_cold_warm_step1_grad_norm"] = [float(cold_norms[0]), float(norms[0])]
    res["optimizer_steps"] = steps
    res["step_loss"] = [round(float(x), 6) for x in losses]
    res["step_grad_norm"] = [round(float(x), 6) for x in norms]
    res["train_pairs_per_s"] = len(pairs) / res["train_s"]
    res["run_pairs_per_s"] = len(pairs) / (res["train_s"] + res["reference_s"])
    if cuda:
        res["memory_train_peak_bytes"] = torch.cuda.max_memory_allocated()

    if args.generate:
        generation(model, w, pad_id, args.new, res, args.device)
    return res


def generation(model, w, pad_id, new, res, device="cuda"):
    """HF greedy generate, adapter active, min_new_tokens = max_new_tokens so no prompt stops early (as dpo-tool's
    empty eos_ids): one left-padded batch of the prompts, then prompt 1 alone (prefill-only run subtracted)."""
    import torch
    sync = synchronize(device)
    model.eval()
    dev = next(model.parameters()).device

    def gen(prompts, n):
        ids, mask = left_pad(prompts, pad_id)
        ids, mask = torch.tensor(ids, device=dev), torch.tensor(mask, device=dev)
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, pad_token_id=pad_id)
        sync()
        return time.perf_counter() - t0, out.shape[1] - ids.shape[1]

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    res["generate_warmup_s"], _ = gen(w["prompts"], 2)
    res["generate_batched_s"], n = gen(w["prompts"], new)
    res["generate_batched_tokens"] = n * len(w["prompts"])
    res["batch1_prefill_s"], _ = gen(w["prompts"][:1], 1)
    res["batch1_total_s"], _ = gen(w["prompts"][:1], new)
    res["batch1_decode_tokens_per_s"] = (new - 1) / max(1e-9, res["batch1_total_s"] - res["batch1_prefill_s"])
    if device == "cuda":
        res["memory_generate_peak_bytes"] = torch.cuda.max_memory_allocated()


def print_table(r):
    print("\nPyTorch + PEFT peer: %s on %s; %d pairs (%.1f tokens per pair), attention %s, %s" % (
        r["stack"], r["device"], r["pairs"], r["mean_pair_tokens"], r["attn"], r["optimizer"]))
    print("cold passes (first over every pair shape; the rates below are the warm second pass): reference %.3f s, "
          "training %.3f s (lr 0)" % (r["reference_cold_s"], r["train_cold_s"]))
    print("DPO loss per step: %s\n" % r["step_loss"])
    if "ceiling_copy_GBps" in r:
        print("ceilings: device copy %.0f GB/s (read + write), dense bf16 matmul %.0f TFLOP/s\n" % (
            r["ceiling_copy_GBps"], r["ceiling_bf16_TFLOPs"]))
    print("| measurement | value |\n|---|---|")
    print("| load (%s, no quantization) | %.2f s |" % (r["base_dtype"], r["load_s"]))
    print("| reference log-probs, %d pairs, warm | %.3f s (%.1f pairs/s) |" % (
        r["pairs"], r["reference_s"], r["pairs"] / r["reference_s"]))
    print("| same, cold (first pass) | %.3f s (%.1f pairs/s) |" % (
        r["reference_cold_s"], r["pairs"] / r["reference_cold_s"]))
    print("| DPO training, %d pairs, %d optimizer steps, warm | %.3f s (%.2f pairs/s) |" % (
        r["pairs"], r["optimizer_steps"], r["train_s"], r["train_pairs_per_s"]))
    print("| same, cold (first loop, lr 0) | %.3f s (%.2f pairs/s) |" % (
        r["train_cold_s"], r["pairs"] / r["train_cold_s"]))
    print_run_rows(r)


def print_run_rows(r):
    """The table rows both peers share: whole run, peak memory (on a GPU), HF generation (when it ran)."""
    print("| whole run incl. reference | %.3f s (%.2f pairs/s) |" % (
        r["reference_s"] + r["train_s"], r["run_pairs_per_s"]))
    if "memory_train_peak_bytes" in r:
        print("| peak torch.cuda.max_memory_allocated, reference + training | %.2f GiB |" % (
            r["memory_train_peak_bytes"] / 1024 ** 3))
    if "generate_batched_s" in r:
        print("| HF greedy generate, %d prompts x %d tokens, one batch | %.3f s |" % (
            r["prompts"], r["generate_batched_tokens"] // max(1, r["prompts"]), r["generate_batched_s"]))
        print("| HF batch-1 decode, prompt 1 | %.1f tok/s |" % r["batch1_decode_tokens_per_s"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--workload")
    ap.add_argument("--json")
    ap.add_argument("--pairs", type=int, default=0, help="first N pairs only (default: all)")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--generate", type=int, default=1)
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--grad-checkpointing", type=int, default=0)
    ap.add_argument("--ceilings", type=int, default=1)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--threads", type=int, default=2, help="torch threads with --device cpu")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.model or not args.workload:
        ap.error("--model and --workload are required")
    res = run(args)
    print_table(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
