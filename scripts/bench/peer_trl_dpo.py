#!/usr/bin/env python3
"""The notebook's own stack as the peer of `dpo-tool bench-hw6`: TRL's DPOTrainer + PEFT LoRA + bitsandbytes NF4.

Same random checkpoint, same workload (scripts/bench/makeWorkload.ts: the 50 HW6 pairs as token ids, tokenized the
way our trainer and TRL 0.9 do) and the notebook's settings (docs/gpu-session.md, "The peer"):
  - load: BitsAndBytesConfig(load_in_4bit, nf4, double quantization, compute dtype bf16), fp16 for the rest (what
    transformers made of the notebook's torch_dtype=None); peft.prepare_model_for_kbit_training(use_gradient_
    checkpointing=False) (norms, embeddings and lm_head to fp32); LoRA r 64, alpha 16, dropout 0.1 on q_proj, v_proj,
    created right after torch.manual_seed(42);
  - DPOTrainer (current TRL): sigmoid loss, beta 0.1, batch 1 x accumulation 8, lr 2e-4 linear with warmup ratio 0.1,
    max_grad_norm 1.0, paged_adamw_8bit, one epoch, dropout disabled by TRL, no gradient checkpointing and no bf16
    autocast (the notebook's TRL 0.9 defaults; TRL 1.x would turn both on), reference log-probs precomputed with the
    adapter disabled (timed apart, as dpo-tool times its reference pass), pairs in workload order (dpo-tool's order).
  - The workload's ids go in as TRL's prompt_ids / chosen_ids / rejected_ids (the prompt = the labels' -100 prefix),
    so both stacks train on identical token sequences; TRL's own text tokenization is bypassed.
Then HF greedy generation (10 prompts x 200 tokens in one batch, batch-1 decode), as scripts/bench/peer_peft_dpo.py.

  python3 scripts/bench/peer_trl_dpo.py --model DIR --workload FILE --tokenizer DIR [--json FILE] [--ours FILE]
         [--device cuda|cpu] [--quant nf4|none] [--pairs N] [--generate 0|1] [--new 200] [--ceilings 0|1]
--ours takes dpo-tool's bench-hw6 JSON and prints its per-step losses beside the peer's. --device cpu (with
--quant none where bitsandbytes has no CPU 4-bit path) runs the same trainer on the CPU, as
`npm run bench:peers -- --peers trl` does beside our engine's CPU backend.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_peft_dpo as hf  # noqa: E402  (the shared helpers: ceilings, generation, padding)

LABEL_PAD = -100


def workload_rows(pairs):
    """TRL's pre-tokenized columns from the workload: the prompt is each side's leading run of label -100."""
    rows = []
    for p in pairs:
        c, r = p["chosen"], p["rejected"]
        k = next((i for i, label in enumerate(c["labels"]) if label != LABEL_PAD), len(c["labels"]))
        k2 = next((i for i, label in enumerate(r["labels"]) if label != LABEL_PAD), len(r["labels"]))
        if k != k2 or c["ids"][:k] != r["ids"][:k]:
            raise ValueError("a workload pair's chosen and rejected sides do not share their prompt")
        rows.append({"prompt_ids": c["ids"][:k], "chosen_ids": c["ids"][k:], "rejected_ids": r["ids"][k:]})
    return rows


def load_model(path, device, quant):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    kw = {"device_map": {"": 0} if device == "cuda" else {"": "cpu"}}
    if quant == "nf4":
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        dtype = torch.float16
    else:
        dtype = torch.float32
    try:  # transformers >= 4.56 names it dtype; older ones torch_dtype
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kw)
    except TypeError:
        return AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, **kw)


def trainer_class():
    from torch.utils.data import SequentialSampler
    from trl import DPOTrainer

    class WorkloadDPOTrainer(DPOTrainer):
        """DPOTrainer on an already tokenized dataset, in the dataset's order, timing its reference pass."""
        ref_seconds = 0.0

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # prompt_ids / chosen_ids / rejected_ids from the workload

        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            t0 = time.perf_counter()
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            sync()
            self.ref_seconds += time.perf_counter() - t0
            return out

    return WorkloadDPOTrainer


def sync():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run(args):
    import torch
    import transformers
    import peft
    import trl
    import datasets
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoTokenizer
    from trl import DPOConfig

    cuda = args.device == "cuda"
    w = json.load(open(args.workload))
    pairs = w["pairs"][: args.pairs] if args.pairs else w["pairs"]
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "trl": trl.__version__, "datasets": datasets.__version__}
    if args.quant == "nf4":
        import bitsandbytes
        versions["bitsandbytes"] = bitsandbytes.__version__
    res = {"bench": "hw6-peer-trl", "stack": ", ".join("%s %s" % kv for kv in versions.items()), "versions": versions,
           "device": torch.cuda.get_device_name(0) if cuda else "cpu", "model": args.model,
           "workload": args.workload, "pairs": len(pairs), "prompts": len(w["prompts"]), "quant": args.quant,
           "settings": "notebook: no gradient checkpointing, no bf16 autocast, paged_adamw_8bit, reference "
                       "precomputed with the adapter disabled, workload order"}
    if cuda and args.ceilings:
        hf.measure_ceilings(res)

    t0 = time.perf_counter()
    model = load_model(args.model, args.device, args.quant)
    sync()
    res["load_s"] = time.perf_counter() - t0
    if args.quant == "nf4":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(42)
    model = get_peft_model(model, LoraConfig(r=64, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"],
                                             bias="none", task_type="CAUSAL_LM"))
    res["lora_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    tok.pad_token = tok.convert_ids_to_tokens(w["pad_id"])  # the workload's padding (masked out either way)
    rows = workload_rows(pairs)
    res["mean_pair_tokens"] = sum(2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"])
                                  for r in rows) / len(rows)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        res["memory_after_load_bytes"] = torch.cuda.memory_allocated()

    out_dir = tempfile.mkdtemp(prefix="peer-trl-")
    config = DPOConfig(
        output_dir=out_dir, per_device_train_batch_size=1, gradient_accumulation_steps=8, learning_rate=2e-4,
        lr_scheduler_type="linear", warmup_steps=0.1, max_grad_norm=1.0, num_train_epochs=1, seed=42,
        optim="paged_adamw_8bit" if cuda else "adamw_torch", beta=0.1, loss_type=["sigmoid"],
        gradient_checkpointing=False, bf16=False, fp16=False, precompute_ref_log_probs=True,
        precompute_ref_batch_size=8, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        use_cpu=not cuda, dataloader_pin_memory=False)
    res["optimizer"] = str(getattr(config.optim, "value", config.optim))
    t0 = time.perf_counter()
    trainer = trainer_class()(model=model, args=config, train_dataset=datasets.Dataset.from_list(rows),
                              processing_class=tok)
    sync()
    res["trainer_init_s"] = time.perf_counter() - t0
    res["reference_s"] = trainer.ref_seconds

    t0 = time.perf_counter()
    out = trainer.train()
    sync()
    res["train_s"] = time.perf_counter() - t0
    res["train_runtime_s"] = out.metrics.get("train_runtime")
    steps = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    res["optimizer_steps"] = trainer.state.global_step
    res["step_loss"] = [round(float(h["loss"]), 6) for h in steps]
    res["step_grad_norm"] = [round(float(h.get("grad_norm", float("nan"))), 6) for h in steps]
    res["step_margin"] = [round(float(h.get("rewards/margins", float("nan"))), 6) for h in steps]
    res["train_pairs_per_s"] = len(pairs) / res["train_s"]
    res["run_pairs_per_s"] = len(pairs) / (res["train_s"] + res["reference_s"])
    if cuda:
        res["memory_train_peak_bytes"] = torch.cuda.max_memory_allocated()
    if args.generate:
        if not cuda:  # the helpers time with torch.cuda.synchronize; on the CPU it has nothing to wait for
            torch.cuda.synchronize = lambda *a, **k: None
            torch.cuda.reset_peak_memory_stats = lambda *a, **k: None
            torch.cuda.max_memory_allocated = lambda *a, **k: 0
        hf.generation(model, w, w["pad_id"], args.new, res)
    return res


def print_table(r, ours):
    print("\nTRL + PEFT + bitsandbytes peer: %s on %s; %d pairs (%.1f tokens per pair), %s, %s" % (
        r["stack"], r["device"], r["pairs"], r["mean_pair_tokens"], r["quant"], r["optimizer"]))
    if "ceiling_copy_GBps" in r:
        print("ceilings: device copy %.0f GB/s (read + write), dense bf16 matmul %.0f TFLOP/s" % (
            r["ceiling_copy_GBps"], r["ceiling_bf16_TFLOPs"]))
    print("\n| measurement | value |\n|---|---|")
    print("| load + quantize | %.2f s |" % r["load_s"])
    print("| reference log-probs (precomputed, adapter disabled) | %.3f s (%.1f pairs/s) |" % (
        r["reference_s"], r["pairs"] / max(r["reference_s"], 1e-9)))
    print("| DPO training, %d pairs, %d optimizer steps (trainer.train) | %.3f s (%.2f pairs/s) |" % (
        r["pairs"], r["optimizer_steps"], r["train_s"], r["train_pairs_per_s"]))
    hf.print_run_rows(r)
    mine = ours.get("step_loss", []) if ours else []
    print("\nDPO loss per optimizer step (step 1 and 2 are ln 2 = 0.6931 in both: lora_B starts at 0, step 1 has lr 0)")
    print("| step | dpo-tool | TRL peer |\n|---|---|---|")
    for i in range(max(len(mine), len(r["step_loss"]))):
        a = "%.4f" % mine[i] if i < len(mine) else ""
        b = "%.4f" % r["step_loss"][i] if i < len(r["step_loss"]) else ""
        print("| %d | %s | %s |" % (i + 1, a, b))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--json")
    ap.add_argument("--ours", help="dpo-tool bench-hw6 JSON, for the losses side by side")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quant", default="nf4", choices=["nf4", "none"])
    ap.add_argument("--pairs", type=int, default=0, help="first N pairs only (default: all)")
    ap.add_argument("--generate", type=int, default=1)
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--ceilings", type=int, default=1)
    args = ap.parse_args()
    res = run(args)
    ours = json.load(open(args.ours)) if args.ours and os.path.exists(args.ours) else None
    if ours:
        res["ours_step_loss"] = ours.get("step_loss")
    print_table(res, ours)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
