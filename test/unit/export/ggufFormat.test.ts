// The GGUF container and the model mapping (docs/exports.md, "GGUF"): a file written here reads back with every
// metadata type, tensor description and 32-byte-aligned data; the q/k permutation is llama.cpp's reshape-swap-reshape
// written out as indices; Llama 3's rope_freqs follow the published rule; tensor types follow the file type.
import { describe, expect, it } from 'vitest'
import { GgmlType, kv, readGguf, readGgufTensor, writeGguf } from '../../../src-main/services/export/ggufFile'
import {
  archInfo,
  ggufName,
  permuteRotaryRows,
  ropeFreqs,
  tensorType,
} from '../../../src-main/services/export/ggufModel'
import { tempDir } from '../../helpers/modelFixtures'
import path from 'node:path'

describe('GGUF container', () => {
  it('writes v3 with typed metadata and aligned tensors, and reads it back', () => {
    const file = path.join(tempDir('dpo-gguf-'), 't.gguf')
    const meta = new Map([
      ['general.architecture', kv.str('llama')],
      ['a.u32', kv.u32(7)],
      ['a.f32', kv.f32(0.5)],
      ['a.bool', kv.bool(true)],
      ['a.i32', kv.i32(-3)],
      ['a.strs', kv.strs(['▁a', '<0x0A>', '中'])],
      ['a.f32s', kv.f32s([-1, 0.25])],
      ['a.i32s', kv.i32s([1, 6])],
    ])
    const t1 = { name: 'x', dims: [3], type: GgmlType.F32 }
    const t2 = { name: 'y', dims: [32, 2], type: GgmlType.F16 }
    const data = new Map([
      ['x', new Uint8Array(new Float32Array([1, 2, 3]).buffer)],
      ['y', Uint8Array.from({ length: 128 }, (_, i) => i)],
    ])
    writeGguf(file, meta, [t1, t2], (t) => data.get(t.name)!)
    const r = readGguf(file)
    expect(r.version).toBe(3)
    expect(Object.fromEntries(r.metadata)).toEqual({
      'general.architecture': 'llama',
      'a.u32': 7,
      'a.f32': 0.5,
      'a.bool': true,
      'a.i32': -3,
      'a.strs': ['▁a', '<0x0A>', '中'],
      'a.f32s': [-1, 0.25],
      'a.i32s': [1, 6],
    })
    expect(r.tensors.map((t) => [t.name, t.dims, t.type, t.offset])).toEqual([
      ['x', [3], 0, 0],
      ['y', [32, 2], 1, 32],
    ])
    expect(r.dataStart % 32).toBe(0)
    expect([...readGgufTensor(file, r, 'y')]).toEqual([...data.get('y')!])
  })
})

describe('GGUF model mapping', () => {
  it('permutes q/k rows as reshape(heads, 2, d/2, cols).swapaxes(1, 2) does', () => {
    const heads = 3,
      d = 6,
      cols = 2
    const w = Float32Array.from({ length: heads * d * cols }, (_, i) => i)
    const got = permuteRotaryRows(w, heads, cols)
    // out[h][i][j][c] = in[h][j][i][c] with in viewed as (heads, 2, d/2, cols) and out as (heads, d/2, 2, cols).
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < d / 2; i++)
        for (let j = 0; j < 2; j++)
          for (let c = 0; c < cols; c++) {
            expect(got[((h * (d / 2) + i) * 2 + j) * cols + c]).toBe(w[((h * 2 + j) * (d / 2) + i) * cols + c])
          }
  })

  it('computes Llama 3 rope_freqs: 1 for short wavelengths, the factor for long ones, smooth between', () => {
    const a = archInfo({
      model_type: 'llama',
      num_attention_heads: 32,
      hidden_size: 2048,
      head_dim: 64,
      num_hidden_layers: 2,
      rope_theta: 500000,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 32,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    })
    const f = ropeFreqs(a)!
    expect(f.length).toBe(32)
    expect(f[0]).toBe(1)
    expect(f[31]).toBe(32)
    for (let i = 1; i < 32; i++) expect(f[i]!).toBeGreaterThanOrEqual(f[i - 1]!)
    // wavelength 2 pi / base^(-2i/d) between 2048 and 8192 tokens: 1 / ((1 - s) / factor + s), s = (8192 / wl - 1) / 3
    const i = f.findIndex((x) => x > 1 && x < 32)
    const wl = 2 * Math.PI * 500000 ** ((2 * i) / 64)
    const s = (8192 / wl - 1) / 3
    expect(f[i]).toBeCloseTo(1 / ((1 - s) / 32 + s), 5)
    expect(
      ropeFreqs(archInfo({ model_type: 'qwen2', num_attention_heads: 2, hidden_size: 8, num_hidden_layers: 1 })),
    ).toBeNull()
  })

  it('names tensors as llama.cpp does and gives norms F32, ragged rows F16, the logits matrix Q8_0 in Q4_0 files', () => {
    const tied = archInfo({
      model_type: 'qwen3',
      num_attention_heads: 2,
      hidden_size: 64,
      num_hidden_layers: 1,
      tie_word_embeddings: true,
    })
    expect(ggufName('model.layers.3.self_attn.k_norm.weight', tied)).toBe('blk.3.attn_k_norm.weight')
    expect(ggufName('model.layers.0.self_attn.q_proj.bias', tied)).toBe('blk.0.attn_q.bias')
    expect(ggufName('lm_head.weight', tied)).toBeNull()
    expect(tensorType('blk.0.attn_q.weight', [64, 64], 'Q4_0', tied)).toBe(GgmlType.Q4_0)
    expect(tensorType('token_embd.weight', [64, 100], 'Q4_0', tied)).toBe(GgmlType.Q8_0)
    expect(tensorType('blk.0.ffn_down.weight', [172, 64], 'Q8_0', tied)).toBe(GgmlType.F16)
    expect(tensorType('blk.0.attn_norm.weight', [64], 'F16', tied)).toBe(GgmlType.F32)
    expect(tensorType('blk.0.attn_q.bias', [64], 'Q4_0', tied)).toBe(GgmlType.F32)
    expect(() => archInfo({ model_type: 'gpt2' })).toThrow(/supports Llama, Mistral, Qwen2 and Qwen3/)
  })
})
