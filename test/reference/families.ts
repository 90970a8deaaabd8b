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

const SMALL = { hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 384, max_position_embeddings: 256, rms_norm_eps: 1e-5, bos_token_id: 1, eos_token_id: 2 }

export const TINY_FAMILIES: TinyFamily[] = [
  { name: 'llama', config: { architectures: ['LlamaForCausalLM'], model_type: 'llama', ...SMALL, rope_theta: 10000.0, tie_word_embeddings: false } },
  // Mistral v0.2+ style: rope_theta 1e6, no sliding window.
  { name: 'mistral', config: { architectures: ['MistralForCausalLM'], model_type: 'mistral', ...SMALL, rope_theta: 1000000.0, sliding_window: null, tie_word_embeddings: false } },
  // Qwen2: q/k/v biases, tied embeddings (as Qwen2-0.5B), rope_theta 1e6.
  { name: 'qwen2', config: { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', ...SMALL, rope_theta: 1000000.0, tie_word_embeddings: true, use_sliding_window: false } },
]

export const STORIES_DIR = sharedPath('models/stories260K')

/**
 * The families' tiny checkpoints, written by one Python call and kept in the temp folder under a hash of their
 * config, so the suite's files share them. Returns the folders in the order of `families`.
 */
export function makeTinyModels(families: readonly TinyFamily[] = TINY_FAMILIES, seed = 1234): string[] {
  const dirs = families.map((f) => {
    const key = createHash('sha256').update(JSON.stringify({ config: f.config, seed })).digest('hex').slice(0, 12)
    return path.join(os.tmpdir(), `dpo-ref-tiny-${f.name}-${key}`)
  })
  const todo = families.map((f, i) => ({ f, dir: dirs[i]! })).filter((x) => !existsSync(path.join(x.dir, 'config.json')))
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
