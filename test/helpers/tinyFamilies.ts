// Tiny random checkpoints with a real tokenizer from ../shared/tokenizers and the family's config fields (sizes
// shrunk, vocab_size kept), written as bf16 safetensors: enough for the GGUF checks to meet each tokenizer kind and
// architecture llama.cpp distinguishes (SentencePiece-style and byte-level vocabularies, Qwen2's biases and tied
// embeddings). Replaced by the families' own generator (dpo-tool make-model) once it is on main.
import { copyFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { encodeSafetensors } from '../../src-main/services/training/adapterFiles'
import { seeded } from './exportFixtures'
import { tempDir } from './modelFixtures'
import { sharedPath } from './sharedPath'

export interface TinyFamily {
  name: string
  tokenizer: string
  config: Record<string, unknown>
}

const SMALL = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512, torch_dtype: 'bfloat16' }

export const TINY_FAMILIES: TinyFamily[] = [
  { name: 'qwen2.5', tokenizer: 'qwen2.5', config: { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', ...SMALL, vocab_size: 151936, rms_norm_eps: 1e-6, rope_theta: 1000000, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151645 } },
  { name: 'llama-3.1', tokenizer: 'llama-3.1', config: { architectures: ['LlamaForCausalLM'], model_type: 'llama', ...SMALL, vocab_size: 128256, rms_norm_eps: 1e-5, rope_theta: 500000, tie_word_embeddings: false, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009] } },
  { name: 'mistral-v0.1', tokenizer: 'mistral-v0.1', config: { architectures: ['MistralForCausalLM'], model_type: 'mistral', ...SMALL, vocab_size: 32000, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, sliding_window: 4096, bos_token_id: 1, eos_token_id: 2 } },
]

export function makeTinyFamily(f: TinyFamily, seed = 3): string {
  const dir = tempDir(`dpo-tiny-${f.name}-`)
  const c = f.config as { hidden_size: number; intermediate_size: number; num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number; vocab_size: number; tie_word_embeddings: boolean; model_type: string }
  const rnd = seeded(seed)
  const normal = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd())
  const mat = (rows: number, cols: number, gain = 1) => Float32Array.from({ length: rows * cols }, () => (gain * normal()) / Math.sqrt(cols))
  const vec = (n: number, base: number, scale: number) => Float32Array.from({ length: n }, () => base + scale * normal())
  const C = c.hidden_size, F = c.intermediate_size, hd = C / c.num_attention_heads, kv = c.num_key_value_heads * hd
  const t: Array<{ name: string; shape: number[]; data: Float32Array; dtype: 'BF16' }> = []
  const add = (name: string, shape: number[], data: Float32Array) => t.push({ name, shape, data, dtype: 'BF16' })
  // Embeddings and lm_head at 4x scale: peaked next-token distributions, so greedy decoding meets no near-ties.
  add('model.embed_tokens.weight', [c.vocab_size, C], mat(c.vocab_size, C, 4))
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}`
    add(`${p}.input_layernorm.weight`, [C], vec(C, 1, 0.1))
    add(`${p}.post_attention_layernorm.weight`, [C], vec(C, 1, 0.1))
    add(`${p}.self_attn.q_proj.weight`, [C, C], mat(C, C))
    add(`${p}.self_attn.k_proj.weight`, [kv, C], mat(kv, C))
    add(`${p}.self_attn.v_proj.weight`, [kv, C], mat(kv, C))
    add(`${p}.self_attn.o_proj.weight`, [C, C], mat(C, C))
    if (c.model_type === 'qwen2') {
      add(`${p}.self_attn.q_proj.bias`, [C], vec(C, 0, 0.1))
      add(`${p}.self_attn.k_proj.bias`, [kv], vec(kv, 0, 0.1))
      add(`${p}.self_attn.v_proj.bias`, [kv], vec(kv, 0, 0.1))
    }
    add(`${p}.mlp.gate_proj.weight`, [F, C], mat(F, C))
    add(`${p}.mlp.up_proj.weight`, [F, C], mat(F, C))
    add(`${p}.mlp.down_proj.weight`, [C, F], mat(C, F))
  }
  add('model.norm.weight', [C], vec(C, 1, 0.1))
  if (!c.tie_word_embeddings) add('lm_head.weight', [c.vocab_size, C], mat(c.vocab_size, C, 4))
  writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(t))
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(f.config, null, 2))
  for (const file of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(sharedPath('tokenizers', f.tokenizer, file), path.join(dir, file))
  return dir
}
