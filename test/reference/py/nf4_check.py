# bitsandbytes' side of the NF4 checks (docs/reference-parity.md, "NF4"):
#  - quantize: writes real and constructed weights (random, ties at the NF4 midpoints, zeros, denormals, partial
#    blocks), runs our quantizer on them (`dpo-tool nf4-quantize`), quantizes them with
#    bitsandbytes.functional.quantize_4bit (nf4, blocksize 64, double quantization, CPU), and compares stage by stage,
#    putting every element or block that differs into a named cause; the test fails on any difference no cause explains.
#  - checkpoint: has transformers + bitsandbytes load a checkpoint in 4 bit and save it (the `*-bnb-4bit` layout),
#    and scores given tokens with that model and with an fp32 model built from bnb's own dequantized weights.
import json
import subprocess

import numpy as np
import torch
from refio import load_causal_lm, main
from safetensors.torch import load_file, save_file

LINEAR_KINDS = ('q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj')


def f32(x):
    return np.float32(x)


def constructed_inputs():
    """Weights that probe the rules: ties, zeros, denormals, partial and odd blocks, extreme values."""
    import bitsandbytes.functional as F
    g = torch.Generator().manual_seed(5)
    t = {}
    scales = 10 ** (torch.rand(128, 1, generator=g) * 4 - 3)
    t['random.f16'] = (torch.randn(128, 256, generator=g) * scales).half()
    t['random.bf16'] = (torch.randn(64, 192, generator=g) * scales[:64]).bfloat16()
    t['random.f32'] = torch.randn(96, 128, generator=g) * scales[:96]
    # Ties: blocks holding 1.0 (so x = w exactly) and every NF4 midpoint as bnb's CUDA kernel compiles it (fp32
    # literals), its fp32 neighbours, and the midpoints bnb's CPU path computes ((a + b) / 2 in fp32); then the same
    # scaled by 2 (x = w * 0.5, exact).
    lit = torch.tensor([float(f32_literal(m)) for m in CUDA_MIDPOINTS], dtype=torch.float32)
    vals = torch.cat([lit, torch.nextafter(lit, torch.full_like(lit, 2.0)), torch.nextafter(lit, torch.full_like(lit, -2.0)),
                      cpu_midpoints()])
    block = torch.cat([torch.tensor([1.0]), vals, torch.zeros(64 - 1 - vals.numel())])[:64]
    t['ties.f32'] = torch.stack([block, -block.flip(0), block * 2, torch.roll(block, 7)])
    z = torch.zeros(4, 64)
    z[1, ::3] = 0.5
    z[2, 5] = -0.0
    z[3, :] = -0.0
    t['zeros.f32'] = z
    tiny = torch.finfo(torch.float32).tiny
    d = torch.zeros(3, 64)
    d[0] = torch.linspace(-1, 1, 64) * tiny * 0.25          # a block of denormals only: 1/absmax overflows to inf
    d[1] = torch.linspace(-1, 1, 64) * tiny * 3              # normal but tiny absmax
    d[2] = torch.linspace(-1, 1, 64) * 1e-3
    d[2, ::5] = tiny * 0.5                                   # denormal elements in a normal block
    t['denormals.f32'] = d
    t['partial.f32'] = torch.randn(3, 50, generator=g)     # 150 elements: the last block has 22
    t['odd.f32'] = torch.randn(1, 15, generator=g)         # an odd count: the last byte's low nibble is padding
    big = torch.randn(2, 64, generator=g) * 1e30
    big[1, 3] = 3.0e38
    t['extreme.f32'] = big
    return t


# bnb's dQuantizeNF4 compares against these decimal literals, compiled as fp32 (`...f`):
# docs/reference/nf4.md#code-table.
CUDA_MIDPOINTS = ['-0.8480964004993439', '-0.6106329262256622', '-0.4599952697753906', '-0.33967943489551544',
                  '-0.23460740596055984', '-0.13791173323988914', '-0.045525018125772476', '0.03979014977812767',
                  '0.1202552504837513', '0.2035212516784668', '0.2920137718319893', '0.3893125355243683',
                  '0.5016634166240692', '0.6427869200706482', '0.8614784181118011']


def f32_literal(text):
    """The fp32 value a C/CUDA compiler gives the literal `text` + 'f': the decimal rounded once, not via a double."""
    from fractions import Fraction
    q, f = Fraction(text), np.float32(float(text))
    return min([np.nextafter(f, np.float32(-2)), f, np.nextafter(f, np.float32(2))], key=lambda c: abs(Fraction(float(c)) - q))


def cpu_midpoints():
    """The midpoints bnb's CPU quantize_4bit uses: (code[i] + code[i+1]) / 2 in fp32."""
    import bitsandbytes.functional as F
    code = F.get_4bit_type('nf4', device='cpu').float()
    return (code[:-1] + code[1:]) / 2


def real_inputs(model_dirs):
    t = {}
    for name, d in model_dirs.items():
        w = load_file(f'{d}/model.safetensors')
        for k, v in w.items():
            if v.dim() == 2 and any(f'.{kind}.' in k for kind in LINEAR_KINDS):
                t[f'{name}.{k}'] = v.contiguous()
                if v.dtype == torch.float32:  # the notebook quantizes fp16-cast weights (docs/reference/precision.md)
                    t[f'{name}-as-f16.{k}'] = v.half()
    return t


def unpack(p, n):
    p = p.flatten().to(torch.int32)
    c = torch.stack([p >> 4, p & 15], dim=1).flatten()
    return c[:n]


def nearest_set(x, code):
    """Per x, the distance to the nearest code value (float64 arithmetic on fp32 values)."""
    d = (x.double()[:, None] - code.double()[None, :]).abs()
    return d.min(dim=1).values, d


def compare_tensor(name, w, ours, dynamic_map):
    import bitsandbytes.functional as F
    global DIFFERING_MIDPOINTS
    lit = [f32_literal(m) for m in CUDA_MIDPOINTS]
    cpu = cpu_midpoints().tolist()
    DIFFERING_MIDPOINTS = {float(v) for a, b in zip(lit, cpu) if float(a) != b for v in (float(a), b)}
    n, blocks = w.numel(), -(-w.numel() // 64)
    packed_b, state_b = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type='nf4')
    _, raw = F.quantize_4bit(w, blocksize=64, compress_statistics=False, quant_type='nf4')
    raw_absmax = raw.absmax.float()
    r = {'name': name, 'dtype': str(w.dtype).replace('torch.', ''), 'elements': n, 'blocks': blocks}

    # 1. packed nibbles
    cb, co = unpack(packed_b, n), unpack(ours[name], n)
    bad = (cb != co).nonzero().flatten()
    wf = w.float().flatten()
    causes = {}
    for e in bad.tolist():
        b = e // 64
        a = raw_absmax[b].item()
        inv = f32(1.0) / f32(a)
        last_partial = b == blocks - 1 and n % 64 != 0
        if a == 0.0:
            cause = 'zero-block'  # CUDA and ours: 0 * inf = NaN -> code 0; bnb CPU clamps absmax to 1e-38 -> code 7
        elif np.isinf(inv):
            cause = 'reciprocal-overflow'  # absmax below 2^-128: 1/absmax = inf; bnb CPU clamps absmax to 1e-38
        elif float(f32(wf[e].item()) * inv) in DIFFERING_MIDPOINTS:
            cause = 'midpoint-ulp'  # x lies on a midpoint whose CUDA literal and CPU-computed fp32 value differ by an ulp
        elif last_partial and f32(wf[e].item()) / f32(a) != f32(wf[e].item()) * inv:
            cause = 'partial-block-division'  # bnb CPU divides in the last partial block; CUDA multiplies by 1/absmax
        else:
            cause = 'unexplained'
        causes.setdefault(cause, []).append(e)
    r['codeMismatches'] = {k: len(v) for k, v in causes.items()}
    r['unexplainedCodes'] = [{'element': e, 'w': wf[e].item(), 'ours': int(co[e]), 'bnb': int(cb[e])} for e in causes.get('unexplained', [])[:5]]
    r['zeroBlocks'] = int((raw_absmax == 0).sum())

    # 2. offset = mean of the first-level absmax: ours must be the correctly rounded mean; bnb's is torch's fp32 mean.
    state_json = json.loads(bytes(ours[name + '.quant_state.bitsandbytes__nf4'].tolist()))
    off_ours = f32(state_json['nested_offset'])
    exact = f32(raw_absmax.double().mean().item())
    off_bnb = f32(state_b.offset.item())
    r['offset'] = {'ours': float(off_ours), 'bnb': float(off_bnb), 'correctlyRounded': float(exact),
                   'oursIsCorrectlyRounded': bool(off_ours == exact),
                   'bnbUlpsFromCorrect': int(abs(int(np.array(off_bnb).view(np.int32)) - int(np.array(exact).view(np.int32))))}

    # 3. nested stage, with the same inputs on both sides: bnb's 8-bit blockwise quantizer on (absmax - our offset)
    #    with our map. Its nested absmax is an fp32 max (must be bit-equal); its codes come from a 65536-bin lookup
    #    table on the CPU, so each code that differs must be one where ours is the nearer map entry.
    shifted = raw_absmax - torch.tensor(off_ours)
    q_b, st2 = F.quantize_blockwise(shifted, code=dynamic_map, blocksize=256)
    nested_ours = ours[name + '.nested_absmax']
    r['nestedAbsmaxEqual'] = bool(torch.equal(st2.absmax.float().view(torch.int32), nested_ours.view(torch.int32)))
    codes_o = ours[name + '.absmax'].to(torch.int64)
    codes_b = q_b.to(torch.int64)
    x = shifted * (1.0 / nested_ours).repeat_interleave(256)[:blocks]  # fp32: a * (1/absmax2), as the kernel does
    best, dist = nearest_set(x, dynamic_map)
    d_o = dist[torch.arange(blocks), codes_o]
    d_b = dist[torch.arange(blocks), codes_b]
    # A nested block whose absmax is 0 (one block, or all absmax equal): x = 0 * (1/0) = NaN, and every code
    # dequantizes to code * 0 + offset = offset, so the code chosen is immaterial.
    zero_nested = (nested_ours == 0).repeat_interleave(256)[:blocks]
    diff = (codes_o != codes_b) & ~zero_nested
    r['oursAlwaysNearest'] = bool((d_o <= best)[~zero_nested].all())
    r['absmaxCodeMismatches'] = {'bnb-lut-farther': int((diff & (d_b > d_o)).sum()), 'tie': int((diff & (d_b == d_o)).sum()),
                                 'unexplained': int((diff & (d_b < d_o)).sum()),
                                 'zero-nested-block': int(((codes_o != codes_b) & zero_nested).sum())}
    # 4. bnb's whole default path (its own offset and map): how many absmax codes end up different.
    r['defaultPathAbsmaxCodeDiffs'] = int((state_b.absmax.to(torch.int64) != codes_o).sum())

    # 5. our layout loads as a bnb QuantState, and dequantizes to within NF4's error of w.
    from bitsandbytes.functional import QuantState
    qs = QuantState.from_dict({k[len(name) + 1:]: v for k, v in ours.items() if k.startswith(name + '.')}, device=torch.device('cpu'))
    r['ourStateLoadsInBnb'] = bool(tuple(qs.shape) == tuple(w.shape) and qs.dtype == w.dtype)
    # Both states dequantized by bnb: the largest difference, relative to the block's absmax (0 where codes agree).
    deq_o = F.dequantize_4bit(ours[name], qs).float().flatten()
    deq_b = F.dequantize_4bit(packed_b, state_b).float().flatten()
    scale = torch.repeat_interleave(raw_absmax.clamp(min=torch.finfo(torch.float32).tiny), 64)[:n]
    r['dequantMaxRelDiff'] = float(((deq_o - deq_b).abs() / scale).max()) if n else 0.0
    return r


def quantize(data):
    import bitsandbytes.functional as F
    inputs = {**constructed_inputs(), **real_inputs(data['models'])}
    src, dst = data['work'] + '/in.safetensors', data['work'] + '/ours.safetensors'
    save_file(inputs, src)
    subprocess.run([data['tool'], 'nf4-quantize', '--in', src, '--out', dst], check=True, capture_output=True)
    ours = load_file(dst)
    our_map = next(v for k, v in ours.items() if k.endswith('.nested_quant_map'))
    bnb_map = F.create_dynamic_map(signed=True)
    bits_o, bits_b = our_map.view(torch.int32), bnb_map.view(torch.int32)
    out = {
        'maps': {'nf4Equal': bool(torch.equal(next(v for k, v in ours.items() if k.endswith('.quant_map')).view(torch.int32),
                                              F.get_4bit_type('nf4', device='cpu').float().view(torch.int32))),
                 'dynamicEntriesDiffering': int((bits_o != bits_b).sum()),
                 'dynamicMaxAbsDiff': float((our_map.double() - bnb_map.double()).abs().max())},
        'tensors': [compare_tensor(k, v, ours, our_map) for k, v in inputs.items()],
    }
    return out


def checkpoint(data):
    """transformers + bnb (CPU) load a model in 4 bit and save it; then score probes two ways."""
    import bitsandbytes.functional as F
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    res = []
    for m in data['models']:
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        # dtype fp16: what transformers gives a 4-bit load when none is asked (docs/reference/precision.md#loading), so
        # QuantState.dtype is fp16.
        qm = AutoModelForCausalLM.from_pretrained(m['dir'], quantization_config=q, device_map='cpu', dtype=torch.float16)
        out = f"{data['work']}/{m['name']}-bnb-4bit"
        qm.save_pretrained(out)
        # The saved file as transformers + bnb reload it: the reference's own forward (bf16 compute, its rounding).
        bnb_model = AutoModelForCausalLM.from_pretrained(out, device_map='cpu', dtype=torch.float32)
        bnb_model.eval()
        # On CPUs with AVX512-BF16, bnb 0.50 repacks 4-bit weights for its own inference kernel, which needs
        # out_features divisible by its tile (stories260K's FFN of 172 is not); bnb's generic path (dequantize, then
        # a bf16 matmul) is the one that matches its CUDA numerics, so the suite uses that one on every machine.
        for mod in bnb_model.modules():
            if mod.__class__.__name__ == 'Linear4bit':
                mod.support_avx512bf16_for_cpu = False
        # The same checkpoint, dequantized by bnb, in an fp32 model whose linears compute bf16(x) . bf16(W) in fp32:
        # the engine's stated numerics (docs/reference-parity.md) on bnb's weights.
        plain = load_causal_lm(m['dir'])
        row_bug = []
        with torch.no_grad():
            for name, mod in qm.named_modules():
                if mod.__class__.__name__ == 'Linear4bit':
                    w = dequantize_flat(mod.weight.data, mod.weight.quant_state)
                    # bnb 0.50's AVX-512 dequantize_4bit indexes absmax per row: wrong where in_features % 64 != 0.
                    by_rows = F.dequantize_4bit(mod.weight.data, mod.weight.quant_state)
                    row_bug.append({'linear': name, 'cols': int(w.shape[1]), 'rowDequantDiffers': not torch.equal(w, by_rows)})
                    target = plain.get_submodule(name)
                    target.weight.copy_(w.to(torch.bfloat16).float())
                    target.forward = _bf16_input_forward(target)
            for name, p in plain.named_parameters():  # norms, embeddings, lm_head: the fp16 values that were saved
                if not (name.endswith('.weight') and any(f'.{k}.' in name for k in LINEAR_KINDS)):
                    p.copy_(p.half().float())
        res.append({'name': m['name'], 'dir': out, 'exact': score(plain, m['sequences']), 'bnb': score(bnb_model, m['sequences']),
                    'rowDequant': row_bug, 'avx512': torch.backends.cpu.get_cpu_capability() == 'AVX512'})
    return res


def dequantize_flat(packed, state):
    """bnb's dequantize_4bit of the weight as one flat row (its CPU kernel is right for a single row), reshaped."""
    import copy

    import bitsandbytes.functional as F
    flat = copy.copy(state)
    flat.shape = torch.Size([state.shape.numel()])
    return F.dequantize_4bit(packed, flat).view(state.shape)


def _bf16_input_forward(lin):
    def fwd(x):
        y = torch.nn.functional.linear(x.to(torch.bfloat16).float(), lin.weight)
        return y if lin.bias is None else y + lin.bias
    return fwd


def score(model, seqs):
    res = []
    with torch.no_grad():
        for s in seqs:
            logits = model(input_ids=torch.tensor([s['ids']])).logits[0].double()
            lsm = torch.log_softmax(logits, dim=-1)
            res.append({'logps': [float(lsm[t - 1, v]) for t, v in s['probes']], 'logitsMean': float(logits.mean())})
    return res


main(lambda d: quantize(d) if d['op'] == 'quantize' else checkpoint(d))
