# Writes a tiny random checkpoint of one model family with transformers itself (save_pretrained, bf16 safetensors),
# from the config fields a family entry gives (test/reference/families.ts). Weights are redrawn at 1/sqrt(fan_in)
# scale so activations and logits are O(1) and comparisons are not trivially small.
import math

import torch
from refio import main


def make_one(config_fields, out, seed):
    from transformers import AutoConfig, AutoModelForCausalLM
    fields = dict(config_fields)
    fields.pop('architectures', None)
    config = AutoConfig.for_model(fields.pop('model_type'), **fields)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('norm.weight'):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:  # biases (Qwen2's q/k/v)
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[1]))
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    return {'architectures': model.config.architectures, 'params': sum(p.numel() for p in model.parameters())}


main(lambda d: [make_one(m['config'], m['out'], d['seed']) for m in d['models']])
