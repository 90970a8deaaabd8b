# transformers' greedy generate in fp32 (docs/reference-parity.md, "Generation"): for each model and prompt (ids),
# the new tokens of model.generate(do_sample=False), stopping at the model's EOS ids.
from refio import greedy_tokens, load_causal_lm, main


def generate(data):
    out = []
    for m in data['models']:
        model = load_causal_lm(m['dir'])
        out.append({'name': m['name'], 'tokens': [greedy_tokens(model, ids, data['max_new_tokens'], m['eos_ids']) for ids in m['prompts']]})
    return out


main(generate)
