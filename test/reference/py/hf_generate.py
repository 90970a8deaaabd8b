# transformers' greedy generate in fp32 (docs/reference-parity.md, "Generation"): for each model and prompt (ids),
# the new tokens of model.generate(do_sample=False), stopping at the model's EOS ids.
import torch
from refio import load_causal_lm, main


def generate(data):
    out = []
    for m in data['models']:
        model = load_causal_lm(m['dir'])
        seqs = []
        with torch.no_grad():
            for ids in m['prompts']:
                x = torch.tensor([ids])
                y = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=data['max_new_tokens'],
                                   eos_token_id=m['eos_ids'], pad_token_id=m['eos_ids'][0], num_beams=1)
                seqs.append(y[0, len(ids):].tolist())
        out.append({'name': m['name'], 'tokens': seqs})
    return out


main(generate)
