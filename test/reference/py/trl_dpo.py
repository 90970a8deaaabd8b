# TRL's side of the DPO trajectory check (docs/reference-parity.md, "DPO trajectory"): the current DPOTrainer
# (sigmoid loss, fp32 on the CPU, dropout off) on a PEFT model that starts from our initial adapter, fed the pairs
# as our trainer tokenized them (prompt, chosen, rejected ids) in the order our trainer consumed them, with the same
# schedule, clipping and fp32 AdamW. Returns the logged metrics per step and where it saved the final adapter.
import torch
from refio import load_causal_lm, main


def train(data):
    from datasets import Dataset
    from peft import PeftModel
    from torch.utils.data import SequentialSampler
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    model = PeftModel.from_pretrained(load_causal_lm(data['model']), data['init_adapter'], is_trainable=True)
    rows = []
    for p in data['pairs_in_order']:
        n = p['promptLength']
        if p['chosen'][:n] != p['rejected'][:n]:
            raise ValueError('chosen and rejected prompts differ; TRL keeps one prompt per pair')
        rows.append({'prompt_ids': p['chosen'][:n], 'chosen_ids': p['chosen'][n:], 'rejected_ids': p['rejected'][n:]})

    class InOrder(DPOTrainer):
        """DPOTrainer fed our tokenized pairs (its own tokenization is compared in tokenization.ref.test.ts) in our
        trainer's order (its data order is compared in our unit tests of the schedule)."""
        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset

        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    logs = []

    class Keep(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and 'loss' in logs:
                logs_copy = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
                logs_copy['step'] = state.global_step
                keep.append(logs_copy)

    keep = logs
    cfg = DPOConfig(
        output_dir=data['work'], report_to=[], use_cpu=True, bf16=False, fp16=False, seed=0,
        per_device_train_batch_size=1, gradient_accumulation_steps=data['grad_accum'], max_steps=data['steps'],
        learning_rate=data['lr'], lr_scheduler_type='linear', warmup_steps=data['warmup_steps'],
        optim='adamw_torch', adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=0.0,
        max_grad_norm=data['max_grad_norm'], beta=data['beta'], loss_type=['sigmoid'], disable_dropout=True,
        precompute_ref_log_probs=False, max_length=None, logging_steps=1, save_strategy='no',
        remove_unused_columns=False, dataloader_num_workers=0,
    )
    trainer = InOrder(model=model, args=cfg, train_dataset=Dataset.from_list(rows), callbacks=[Keep()])
    trainer.train()
    out = f"{data['work']}/trl-final"
    model.save_pretrained(out)
    return {'logs': logs, 'adapter': out, 'versions': {'trl': __import__('trl').__version__, 'torch': torch.__version__}}


main(train)
