# Shared plumbing of the reference scripts: JSON in/out (argv[1] -> argv[2]), quiet libraries, deterministic torch.
import json
import os
import sys
import warnings

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
warnings.filterwarnings('ignore')

import torch  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def main(fn):
    """Calls fn(input) and writes its result; any exception exits non-zero with the traceback on stderr."""
    with open(sys.argv[1]) as f:
        data = json.load(f)
    result = fn(data)
    tmp = sys.argv[2] + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f)
    os.replace(tmp, sys.argv[2])


def load_causal_lm(model_dir, dtype=torch.float32):
    """A transformers model in eval mode, fp32 by default (the reference side of every logits comparison)."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation='eager')
    model.eval()
    return model


def score_probes(model, seqs):
    """Per sequence: log_softmax(logits[t - 1])[v] for each probe (t, v), in double, and the mean of the fp32 logits."""
    res = []
    with torch.no_grad():
        for s in seqs:
            logits = model(input_ids=torch.tensor([s['ids']])).logits[0].float()  # (T, V)
            lsm = torch.log_softmax(logits.double(), dim=-1)
            res.append({'logps': [float(lsm[t - 1, v]) for t, v in s['probes']], 'logitsMean': float(logits.double().mean())})
    return res


def greedy_tokens(model, ids, max_new_tokens, eos_ids):
    """
    The new tokens of model.generate(do_sample=False) after the prompt `ids`, stopping at any of eos_ids: plain
    greedy, as the notebook's explicit GenerationConfig gets on transformers 4.4x. transformers 5 fills what a call
    leaves unset from generation_config.json, whose repetition_penalty (Qwen2.5's 1.1) would apply even to greedy
    decoding, so it is set to 1 here (docs/reference-parity.md).
    """
    x = torch.tensor([ids])
    with torch.no_grad():
        y = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=max_new_tokens,
                           eos_token_id=eos_ids, pad_token_id=eos_ids[0], num_beams=1, repetition_penalty=1.0)
    return y[0, len(ids):].tolist()
