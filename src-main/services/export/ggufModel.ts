// A Hugging Face decoder as a llama.cpp GGUF model (docs/gguf.md): which architecture, its hyper-parameters as
// metadata, HF tensor names to GGUF names, the q/k row permutation of the "llama" architecture, extra tensors (Llama
// 3's rope_freqs) and the type each tensor gets in an F32 / F16 / Q8_0 / Q4_0 file. Facts from llama.cpp's
// convert_hf_to_gguf.py, llama-arch.cpp and ggml; the code is ours.
import { StudioError } from '../errors'
import { GgmlType, kv, type GgufTensorInfo, type GgufValue } from './ggufFile'

import type { GgufFileType } from '../../../src-shared/params/enumValues'

export type { GgufFileType }
/** general.file_type (llama_ftype): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7. */
const FILE_TYPE_ID: Record<GgufFileType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 }

/** llama.cpp architecture per config.json model_type. */
const ARCH: Record<string, 'llama' | 'qwen2' | 'qwen3'> = {
  llama: 'llama',
  mistral: 'llama',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
}

export interface ArchInfo {
  arch: 'llama' | 'qwen2' | 'qwen3'
  layers: number
  heads: number
  kvHeads: number
  headDim: number
  hidden: number
  tied: boolean
  config: Record<string, unknown>
}

function num(config: Record<string, unknown>, key: string, fallback?: number): number {
  const v = config[key] ?? fallback
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new StudioError('E_BAD_MODEL', `config.json field "${key}" is missing or not a number`)
  return v
}

/** rope_theta, from the field or transformers 5's rope_parameters. */
function ropeTheta(config: Record<string, unknown>): number {
  const p = config.rope_parameters as { rope_theta?: unknown } | undefined
  const v = config.rope_theta ?? p?.rope_theta ?? 10000
  if (typeof v !== 'number') throw new StudioError('E_BAD_MODEL', 'config.json rope_theta is not a number')
  return v
}

function ropeScaling(config: Record<string, unknown>): Record<string, unknown> | null {
  const s = (config.rope_scaling ?? null) as Record<string, unknown> | null
  if (s && typeof s === 'object') return s
  const p = config.rope_parameters as Record<string, unknown> | undefined
  if (p && typeof p.rope_type === 'string' && p.rope_type !== 'default') return p
  return null
}

export function archInfo(config: Record<string, unknown>): ArchInfo {
  const type = String(config.model_type ?? '')
  const arch = ARCH[type]
  if (!arch)
    throw new StudioError(
      'E_BAD_MODEL',
      `GGUF export supports Llama, Mistral, Qwen2 and Qwen3 models; this one is "${type}"`,
    )
  const heads = num(config, 'num_attention_heads')
  const hidden = num(config, 'hidden_size')
  return {
    arch,
    layers: num(config, 'num_hidden_layers'),
    heads,
    kvHeads: num(config, 'num_key_value_heads', heads),
    headDim: num(config, 'head_dim', hidden / heads),
    hidden,
    tied: config.tie_word_embeddings === true,
    config,
  }
}

/** The architecture's metadata entries (general.* apart from the name and file type, and {arch}.*). */
export function archMetadata(a: ArchInfo, fileType: GgufFileType, name: string): Array<[string, GgufValue]> {
  const c = a.config
  const p = a.arch
  const out: Array<[string, GgufValue]> = [
    ['general.architecture', kv.str(p)],
    ['general.type', kv.str('model')],
    ['general.name', kv.str(name)],
    ['general.file_type', kv.u32(FILE_TYPE_ID[fileType])],
    ['general.quantization_version', kv.u32(2)],
    [`${p}.context_length`, kv.u32(num(c, 'max_position_embeddings'))],
    [`${p}.embedding_length`, kv.u32(a.hidden)],
    [`${p}.block_count`, kv.u32(a.layers)],
    [`${p}.feed_forward_length`, kv.u32(num(c, 'intermediate_size'))],
    [`${p}.attention.head_count`, kv.u32(a.heads)],
    [`${p}.attention.head_count_kv`, kv.u32(a.kvHeads)],
    [`${p}.attention.layer_norm_rms_epsilon`, kv.f32(num(c, 'rms_norm_eps'))],
    [`${p}.rope.freq_base`, kv.f32(ropeTheta(c))],
    [`${p}.rope.dimension_count`, kv.u32(a.headDim)],
    [`${p}.attention.key_length`, kv.u32(a.headDim)],
    [`${p}.attention.value_length`, kv.u32(a.headDim)],
    [`${p}.vocab_size`, kv.u32(num(c, 'vocab_size'))],
  ]
  const s = ropeScaling(c)
  const kind = s ? String(s.rope_type ?? s.type ?? '') : ''
  if (kind === 'linear') {
    out.push([`${p}.rope.scaling.type`, kv.str('linear')], [`${p}.rope.scaling.factor`, kv.f32(num(s!, 'factor'))])
  } else if (kind === 'yarn') {
    out.push(
      [`${p}.rope.scaling.type`, kv.str('yarn')],
      [`${p}.rope.scaling.factor`, kv.f32(num(s!, 'factor'))],
      [`${p}.rope.scaling.original_context_length`, kv.u32(num(s!, 'original_max_position_embeddings'))],
    )
  } else if (kind !== '' && kind !== 'llama3' && kind !== 'default') {
    throw new StudioError(
      'E_BAD_MODEL',
      `rope scaling "${kind}" has no GGUF equivalent here (supported: llama3, linear, yarn)`,
    )
  }
  return out
}

/**
 * Llama 3's frequency factors (rope_type llama3) as the rope_freqs tensor llama.cpp multiplies its frequencies by
 * (1 = unchanged, factor = slowed), per pair of head dimensions; null for other models.
 */
export function ropeFreqs(a: ArchInfo): Float32Array | null {
  const s = ropeScaling(a.config)
  if (!s || String(s.rope_type ?? s.type) !== 'llama3') return null
  const base = ropeTheta(a.config)
  const factor = num(s, 'factor', 8)
  const low = num(s, 'low_freq_factor', 1)
  const high = num(s, 'high_freq_factor', 4)
  const oldCtx = num(s, 'original_max_position_embeddings', 8192)
  const lowWavelen = oldCtx / low
  const highWavelen = oldCtx / high
  const out = new Float32Array(a.headDim / 2)
  for (let i = 0; i < out.length; i++) {
    const freq = 1 / base ** ((2 * i) / a.headDim)
    const wavelen = (2 * Math.PI) / freq
    if (wavelen < highWavelen) out[i] = 1
    else if (wavelen > lowWavelen) out[i] = factor
    else {
      const smooth = (oldCtx / wavelen - low) / (high - low)
      out[i] = 1 / ((1 - smooth) / factor + smooth)
    }
  }
  return out
}

const LAYER_MAP: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.v_proj.bias': 'attn_v.bias',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'self_attn.q_norm.weight': 'attn_q_norm.weight',
  'self_attn.k_norm.weight': 'attn_k_norm.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
}

/** The GGUF name of an HF tensor, or null for tensors GGUF leaves out (rotary caches, a tied model's lm_head). */
export function ggufName(hf: string, a: ArchInfo): string | null {
  if (hf === 'model.embed_tokens.weight') return 'token_embd.weight'
  if (hf === 'model.norm.weight') return 'output_norm.weight'
  if (hf === 'lm_head.weight') return a.tied ? null : 'output.weight'
  if (hf.endsWith('rotary_emb.inv_freq')) return null
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf)
  const mapped = m ? LAYER_MAP[m[2]!] : undefined
  if (!m || !mapped)
    throw new StudioError('E_BAD_MODEL', `tensor ${hf} has no GGUF name for the ${a.arch} architecture`)
  return `blk.${m[1]}.${mapped}`
}

/**
 * The "llama" architecture applies RoPE to interleaved pairs (x0, x1), (x2, x3), ...; Hugging Face's q/k weights are
 * laid out for rotating halves (x_i with x_{i + d/2}). Within each head of d rows, GGUF row h*d + 2i + j holds HF row
 * h*d + j*d/2 + i (j = 0, 1), so the same rotation pairs the same numbers. `cols` 1 for a bias. Returns a new array.
 */
export function permuteRotaryRows(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols
  const d = rows / heads
  if (!Number.isInteger(d) || d % 2 !== 0)
    throw new StudioError('E_BAD_MODEL', `cannot split ${rows} rows into ${heads} heads of even size`)
  const out = new Float32Array(w.length)
  const half = d / 2
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * d + j * half + i) * cols
        out.set(w.subarray(src, src + cols), (h * d + 2 * i + j) * cols)
      }
    }
  }
  return out
}

/** How many heads a tensor's rows hold when it must be permuted (llama q/k weights and biases), else 0. */
export function rotaryHeads(gguf: string, a: ArchInfo): number {
  if (a.arch !== 'llama') return 0
  if (/\.attn_q\.(weight|bias)$/.test(gguf)) return a.heads
  if (/\.attn_k\.(weight|bias)$/.test(gguf)) return a.kvHeads
  return 0
}

/**
 * The ggml type of a tensor in a file of `fileType`: norms, biases and other vectors stay F32 (llama.cpp computes
 * them in F32); quantized files fall back to F16 for matrices whose rows are not whole blocks of 32; in Q4_0 files
 * the matrix that produces the logits (output, or token_embd when tied) is Q8_0, as llama.cpp's quantizer keeps it
 * at higher precision.
 */
export function tensorType(gguf: string, dims: number[], fileType: GgufFileType, a: ArchInfo): GgmlType {
  if (dims.length < 2 || gguf.endsWith('_norm.weight') || !gguf.endsWith('.weight')) return GgmlType.F32
  if (fileType === 'F32') return GgmlType.F32
  if (fileType === 'F16') return GgmlType.F16
  if (dims[0]! % 32 !== 0) return GgmlType.F16
  if (fileType === 'Q8_0') return GgmlType.Q8_0
  const logits = gguf === 'output.weight' || (a.tied && gguf === 'token_embd.weight')
  return logits ? GgmlType.Q8_0 : GgmlType.Q4_0
}

/** ggml's dimension order for a row-major PyTorch shape. */
export function ggmlDims(shape: readonly number[]): number[] {
  return [...shape].reverse()
}

export type { GgufTensorInfo }
