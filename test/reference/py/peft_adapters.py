# PEFT's side of the adapter checks (docs/reference-parity.md, "Adapters"):
#  - make: adapters that PEFT itself initialises and saves, one per init_lora_weights variant we load;
#  - score: PeftModel.from_pretrained on the fp32 transformers model, then log-probs of given tokens at given
#    positions and the mean logit, for each adapter (and for the bare model), plus a check that every LoRA tensor
#    PEFT holds after loading equals the file's (nothing left at a random init).
import torch
from refio import load_causal_lm, main, score_probes


def make(data):
    from peft import LoraConfig, get_peft_model
    out = []
    for m in data['models']:
        for v in data['variants']:
            base = load_causal_lm(m['dir'])
            torch.manual_seed(data['seed'])
            cfg = LoraConfig(r=data['r'], lora_alpha=data['alpha'], target_modules=data['targets'], lora_dropout=0.0,
                             init_lora_weights=v['init_lora_weights'], use_rslora=v.get('use_rslora', False),
                             task_type='CAUSAL_LM')
            pm = get_peft_model(base, cfg)
            path = f"{data['out_root']}/{m['name']}-{v['name']}"
            pm.save_pretrained(path)
            out.append({'model': m['name'], 'variant': v['name'], 'dir': path})
    return out


def score(data):
    from peft import PeftModel
    from safetensors.torch import load_file
    out = []
    for m in data['models']:
        entry = {'name': m['name'], 'base': score_probes(load_causal_lm(m['dir']), m['sequences']), 'adapters': []}
        for a in m['adapters']:
            pm = PeftModel.from_pretrained(load_causal_lm(m['dir']), a)
            pm.eval()
            saved = load_file(f'{a}/adapter_model.safetensors')
            held = {k.replace('.default', ''): p for k, p in pm.named_parameters() if 'lora_' in k}
            max_diff = max(float((held[k] - t).abs().max()) for k, t in saved.items())
            entry['adapters'].append({'dir': a, 'tensors': len(saved), 'held': len(held), 'maxTensorDiff': max_diff,
                                      'scores': score_probes(pm, m['sequences'])})
        out.append(entry)
    return out


main(lambda d: make(d) if d['op'] == 'make' else score(d))
