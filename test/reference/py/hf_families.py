# transformers' side of the family checks (docs/reference-parity.md, "Families"): for each checkpoint folder, what
# from_pretrained reports (missing, unexpected and mismatched tensors, the RoPE type and attention factor it set up),
# the fp32 log-probs of given tokens, and greedy tokens. Greedy runs on a fresh model per prompt: dynamic NTK RoPE
# keeps the longest length it has seen in module state, which would otherwise carry from one prompt to the next.
import torch
from refio import greedy_tokens, main, score_probes


def load(model_dir):
    from transformers import AutoModelForCausalLM
    model, info = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation='eager',
                                                       output_loading_info=True)
    model.eval()
    return model, info


def check(data):
    out = []
    for m in data['models']:
        model, info = load(m['dir'])
        rope = model.model.rotary_emb
        entry = {
            'name': m['name'],
            'architecture': model.config.architectures[0] if model.config.architectures else type(model).__name__,
            'missing': sorted(info['missing_keys']),
            'unexpected': sorted(info['unexpected_keys']),
            'mismatched': sorted(str(k) for k in info['mismatched_keys']),
            'ropeType': rope.rope_type,
            'attentionScaling': float(rope.attention_scaling),
            'scores': score_probes(model, m['sequences']),
            'tokens': [greedy_tokens(load(m['dir'])[0], ids, data['max_new_tokens'], m['eos_ids']) for ids in m['prompts']],
        }
        out.append(entry)
    return out


main(check)
