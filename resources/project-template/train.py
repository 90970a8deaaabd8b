# Repeats a DPO Studio run with TRL's DPOTrainer + PEFT (+ bitsandbytes 4-bit when the run used NF4) under accelerate.
# Written by DPO Studio's `export-project`; run_config.json holds the run's settings, data/ its pairs and step plan.
#
#   accelerate launch --config_file accelerate/single_node.yaml train.py            (README.md: more ways to launch)
#
# The defaults reproduce the run (docs/exports.md in DPO Studio, "Project"): the pairs as the run tokenized them, the
# run's micro-batches in the run's order, the run's loss scaling, schedule and LoRA initialisation. --tokenization trl
# and --order shuffle give TRL's own behaviour instead, for new experiments on more data.
import argparse
import json
import os
from pathlib import Path

import torch
from datasets import Dataset
from torch.utils.data import DataLoader, Sampler
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
from trl import DPOConfig, DPOTrainer

HERE = Path(__file__).resolve().parent


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", help="model folder or Hugging Face id (default: run_config.json's)")
    p.add_argument("--output-dir", default=str(HERE / "outputs"), help="where the adapter and metrics.jsonl go")
    p.add_argument("--tokenization", choices=["studio", "trl"], default="studio",
                   help="studio: the run's token ids (exact); trl: let TRL tokenize the text columns")
    p.add_argument("--order", choices=["studio", "shuffle"], default="studio",
                   help="studio: the run's micro-batches in its order; shuffle: TRL's random sampler, epochs of the data")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="weights of the non-quantized model (auto: the run's; fp32 reproduces the run, bf16 halves memory)")
    p.add_argument("--quant-storage", choices=["uint8", "bfloat16"], default="uint8",
                   help="4-bit runs: bfloat16 lets FSDP / ZeRO-3 shard the packed 4-bit weights (same numbers)")
    return p.parse_args()


class StudioSteps(Sampler):
    """The run's micro-batches for this process: step s's micro-batches k = rank, rank + world, ... (each a list of
    row indices), so a step of the whole job uses exactly the pairs the run's step used."""

    def __init__(self, steps, rank, world):
        self.batches = [mb for step in steps for k, mb in enumerate(step) if k % world == rank]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


class StudioDPOTrainer(DPOTrainer):
    """DPOTrainer with the three choices that make it repeat a DPO Studio run (each one documented in README.md)."""

    def __init__(self, *a, studio, **kw):
        self.studio = studio
        super().__init__(*a, **kw)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # The rows already hold prompt_ids / chosen_ids / rejected_ids, the names TRL's own tokenization produces.
        if self.studio["tokenization"] == "studio":
            return dataset
        return super()._prepare_dataset(dataset.remove_columns(["prompt_ids", "chosen_ids", "rejected_ids"]),
                                        processing_class, args, dataset_name)

    def get_train_dataloader(self):
        if self.studio["order"] != "studio":
            return super().get_train_dataloader()
        sampler = StudioSteps(self.studio["steps"], self.args.process_index, self.args.world_size)
        dataset = self._remove_unused_columns(self.train_dataset, description="training")
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                          num_workers=self.args.dataloader_num_workers)

    def training_step(self, model, inputs, num_items_in_batch=None):
        # The run divides every micro-batch loss by its gradient_accumulation_steps, also in a step with fewer
        # micro-batches; per process that divisor is shared by the processes (DDP averages their gradients).
        if self.studio["order"] == "studio":
            self.current_gradient_accumulation_steps = self.studio["loss_divisor"] / self.args.world_size
        return super().training_step(model, inputs, num_items_in_batch)

    def create_scheduler(self, num_training_steps, optimizer=None):
        # The run's linear schedule spans its planned steps (the same number unless the run had a fractional epoch).
        return super().create_scheduler(self.studio["schedule_steps"], optimizer)


class MetricsLog(TrainerCallback):
    """metrics.jsonl: one line per optimizer step with TRL's names, as DPO Studio's run directory has."""

    def __init__(self, path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        row = {"step": state.global_step, **{k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def load_model(cfg, args):
    name = args.model or cfg["model"]["path"]
    if cfg["model"]["quant"] == "nf4":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig
        # The notebook's 4-bit load: NF4, double quantization, bf16 compute, the checkpoint cast to fp16 first.
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16,
                                 bnb_4bit_quant_storage=getattr(torch, args.quant_storage))
        model = AutoModelForCausalLM.from_pretrained(name, quantization_config=bnb, dtype=torch.float16)
        # What TRL 0.9 did for a 4-bit model: freeze, and cast the non-quantized weights to fp32.
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    dtype = cfg["model"]["dtype"] if args.dtype == "auto" else args.dtype
    return AutoModelForCausalLM.from_pretrained(name, dtype=getattr(torch, dtype))


def main():
    args = parse_args()
    cfg = json.loads((HERE / "run_config.json").read_text())
    p = cfg["params"]
    rows = [json.loads(line) for line in (HERE / "data" / "train.jsonl").read_text().splitlines() if line.strip()]
    steps = json.loads((HERE / "data" / "steps.json").read_text())

    tokenizer = AutoTokenizer.from_pretrained(args.model or cfg["model"]["path"])
    tokenizer.chat_template = (HERE / "chat_template.jinja").read_text() if (HERE / "chat_template.jinja").exists() else None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # the notebook's choice; TRL pads with it

    # LoRA A is drawn from the seed right before the adapter is created, as the run did (B starts at zero).
    model = load_model(cfg, args)
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(p["seed"])
    model = get_peft_model(model, LoraConfig(r=p["loraR"], lora_alpha=p["loraAlpha"], lora_dropout=p["loraDropout"],
                                             target_modules=p["targets"], bias="none", task_type="CAUSAL_LM"))

    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = len(steps[0]) if steps else 1
    studio = {"tokenization": args.tokenization, "order": args.order, "steps": steps,
              "loss_divisor": p["gradAccum"], "schedule_steps": cfg["schedule"]["max_steps"]}
    if args.order == "studio":
        if per_step % world:
            raise SystemExit(f"the run's steps have {per_step} micro-batches each, which {world} processes cannot "
                             f"share evenly; launch 1, or a divisor of {per_step}, processes (or use --order shuffle)")
        grad_accum, max_steps, epochs = per_step // world, len(steps), 1
    else:
        grad_accum = max(1, p["gradAccum"] // world)
        max_steps, epochs = -1, p["epochs"]

    os.makedirs(args.output_dir, exist_ok=True)
    metrics = Path(args.output_dir) / "metrics.jsonl"
    if int(os.environ.get("RANK", "0")) == 0 and metrics.exists():
        metrics.unlink()
    config = DPOConfig(
        output_dir=args.output_dir, report_to=[], seed=p["seed"], bf16=False, fp16=False,
        per_device_train_batch_size=p["batchSize"], gradient_accumulation_steps=grad_accum,
        max_steps=max_steps, num_train_epochs=epochs,
        learning_rate=p["learningRate"], lr_scheduler_type="linear", warmup_steps=cfg["schedule"]["warmup_steps"],
        optim=cfg["optim"], adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=p["weightDecay"],
        max_grad_norm=p["maxGradNorm"], beta=p["beta"], loss_type=[p["lossType"]], label_smoothing=p["labelSmoothing"],
        disable_dropout=p["disableDropout"], precompute_ref_log_probs=False,
        # studio: the ids are already cut to the run's max_length / max_prompt_length (TRL 0.9's keep_end rule).
        max_length=None if args.tokenization == "studio" else p["maxLength"],
        logging_steps=1, save_strategy="no", remove_unused_columns=False, dataloader_num_workers=0,
    )
    set_seed(p["seed"])
    trainer = StudioDPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                               processing_class=tokenizer, callbacks=[MetricsLog(metrics)], studio=studio)
    trainer.train()
    # Every process takes part in the save: under ZeRO-3 or FSDP the adapter is sharded and gathered first (FSDP only
    # gathers for a full state dict; the sharded one it trained with would be written as a checkpoint, not an
    # adapter); the main process writes adapter_config.json, adapter_model.safetensors and the tokenizer.
    out = Path(args.output_dir) / "adapter"
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        print(f"adapter saved to {out}; bring it back with: dpo-studio import-adapter {out} --run RUN_DIR --out NEW_RUN_DIR")


if __name__ == "__main__":
    main()
