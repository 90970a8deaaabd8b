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
