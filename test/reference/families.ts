// The model families the reference suite checks, one table entry each: the real stories260K, and a tiny random
// checkpoint per supported family that transformers itself writes (py/make_tiny.py) from real config fields of that
// family. A new family is one more entry here.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { sharedPath } from '../helpers/sharedPath'
import { runPy } from './refstack'

export interface TinyFamily {
  name: string
  /** config.json fields as the family's transformers config class takes them (model_type picks the class). */
  config: Record<string, unknown>
}

const SMALL = {
  hidden_size: 64,
  intermediate_size: 160,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 384,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  bos_token_id: 1,
  eos_token_id: 2,
}

export const TINY_FAMILIES: TinyFamily[] = [
  {
    name: 'llama',
    config: {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      ...SMALL,
      rope_theta: 10000.0,
      tie_word_embeddings: false,
    },
  },
  // Mistral v0.2+ style: rope_theta 1e6, no sliding window.
  {
    name: 'mistral',
    config: {
      architectures: ['MistralForCausalLM'],
      model_type: 'mistral',
      ...SMALL,
      rope_theta: 1000000.0,
      sliding_window: null,
      tie_word_embeddings: false,
    },
  },
  // Qwen2: q/k/v biases, tied embeddings (as Qwen2-0.5B), rope_theta 1e6.
  {
    name: 'qwen2',
    config: {
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      ...SMALL,
      rope_theta: 1000000.0,
      tie_word_embeddings: true,
      use_sliding_window: false,
    },
  },
  // Llama 3.2 (1B/3B): llama3 RoPE scaling (factor 32, low/high 1/4, rope_theta 5e5), a written head_dim (here 32,
  // not hidden/heads = 16), tied embeddings. The original context is shrunk from 8192 to 48 so that at the suite's
  // lengths every llama3 band (kept, blended, divided) turns measurably.
  {
    name: 'llama3.2',
    config: {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      ...SMALL,
      head_dim: 32,
      rope_theta: 500000.0,
      tie_word_embeddings: true,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 32.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 48,
      },
    },
  },
  // Llama 3.1 / 3.3 (8B/70B): llama3 RoPE scaling as published (factor 8, original context 8192), untied.
  {
    name: 'llama3.1',
    config: {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      ...SMALL,
      rope_theta: 500000.0,
      tie_word_embeddings: false,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
      },
    },
  },
  // Qwen2.5: Qwen2's biases and tied head, eps 1e-6, and the sliding-window fields it writes but leaves off.
  {
    name: 'qwen2.5',
    config: {
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      ...SMALL,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000.0,
      tie_word_embeddings: true,
      use_sliding_window: false,
      sliding_window: 32768,
      max_window_layers: 21,
    },
  },
  // Qwen3: per-head q/k RMSNorm before RoPE, head_dim 32 (not hidden/heads = 16), no biases, tied (0.6B-4B).
  {
    name: 'qwen3',
    config: {
      architectures: ['Qwen3ForCausalLM'],
      model_type: 'qwen3',
      ...SMALL,
      head_dim: 32,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000.0,
      tie_word_embeddings: true,
      attention_bias: false,
      use_sliding_window: false,
      sliding_window: null,
      max_window_layers: 28,
    },
  },
]

export const STORIES_DIR = sharedPath('models/stories260K')

/**
 * The families' tiny checkpoints, written by one Python call and kept in the temp folder under a hash of their
 * config, so the suite's files share them. Returns the folders in the order of `families`.
 */
export function makeTinyModels(families: readonly TinyFamily[] = TINY_FAMILIES, seed = 1234): string[] {
  const dirs = families.map((f) => {
    const key = createHash('sha256')
      .update(JSON.stringify({ config: f.config, seed }))
      .digest('hex')
      .slice(0, 12)
    return path.join(os.tmpdir(), `dpo-ref-tiny-${f.name}-${key}`)
  })
  const todo = families
    .map((f, i) => ({ f, dir: dirs[i]! }))
    .filter((x) => !existsSync(path.join(x.dir, 'config.json')))
  if (todo.length > 0) {
    const tmp = todo.map((x) => `${x.dir}.tmp-${process.pid}`)
    for (const t of tmp) mkdirSync(t, { recursive: true })
    runPy('make_tiny.py', { models: todo.map((x, i) => ({ config: x.f.config, out: tmp[i] })), seed })
    todo.forEach((x, i) => {
      rmSync(x.dir, { recursive: true, force: true })
      renameSync(tmp[i]!, x.dir)
    })
  }
  return dirs
}
