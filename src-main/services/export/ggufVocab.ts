// The tokenizer as llama.cpp reads it from GGUF metadata (tokenizer.ggml.*; docs/gguf.md): a SentencePiece-style
// BPE vocabulary with byte fallback ("llama": Llama 2, Mistral, Breeze, stories260K) with token scores and types, or
// a byte-level BPE vocabulary ("gpt2": Llama 3, Qwen2.5, Qwen3) with its merges and the name of its pre-tokenizer.
// Facts from llama.cpp's convert_hf_to_gguf.py and gguf-py (vocab.py, constants.py); the code is ours.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { StudioError } from '../errors'
import { pickChatTemplate } from '../tokenizer/chatTemplate'
import type { TextTokenizer } from '../tokenizer/textTokenizer'
import { kv, type GgufValue } from './ggufFile'

/** llama.cpp's token types (llama_token_type / gguf TokenType). */
export enum TokenType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

interface TokenizerJson {
  model: {
    type?: string
    vocab?: Record<string, number>
    merges?: Array<string | [string, string]>
    byte_fallback?: boolean
    unk_token?: string | null
  }
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>
  normalizer?: unknown
  pre_tokenizer?: unknown
  decoder?: unknown
}

/** The byte-level pre-tokenizers llama.cpp knows by name, told apart by their split regex (digits 1-3 vs 1). */
const GPT2_PRE: Array<{ name: string; test: (regex: string) => boolean; families: string }> = [
  { name: 'llama-bpe', test: (r) => r.includes('\\p{N}{1,3}'), families: 'Llama 3.x' },
  {
    name: 'qwen2',
    test: (r) => /\\p\{N\}\|/.test(r) && !r.includes('\\p{N}{1,3}'),
    families: 'Qwen2 / Qwen2.5 / Qwen3',
  },
]

function collectRegexes(node: unknown, out: string[]): void {
  if (Array.isArray(node)) node.forEach((n) => collectRegexes(n, out))
  else if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>
    const p = o.pattern as { Regex?: unknown } | undefined
    if (o.type === 'Split' && typeof p?.Regex === 'string') out.push(p.Regex)
    for (const v of Object.values(o)) if (typeof v === 'object') collectRegexes(v, out)
  }
}

function mentions(node: unknown, type: string, extra?: (o: Record<string, unknown>) => boolean): boolean {
  if (Array.isArray(node)) return node.some((n) => mentions(n, type, extra))
  if (!node || typeof node !== 'object') return false
  const o = node as Record<string, unknown>
  if (o.type === type && (!extra || extra(o))) return true
  return Object.values(o).some((v) => typeof v === 'object' && mentions(v, type, extra))
}

export interface VocabMetadata {
  kind: 'llama' | 'gpt2'
  entries: Array<[string, GgufValue]>
  /** The token strings as written (for tests and the Modelfile's stop words). */
  tokens: string[]
}

/**
 * tokenizer.ggml.* for the model in `dir`, padded to `vocabSize` (config.json's vocab_size) with unused "[PAD{i}]"
 * tokens, as llama.cpp expects one token per embedding row.
 */
export function vocabMetadata(dir: string, tok: TextTokenizer, vocabSize: number): VocabMetadata {
  let json: TokenizerJson
  try {
    json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as TokenizerJson
  } catch {
    throw new StudioError(
      'E_BAD_MODEL',
      `${dir}/tokenizer.json is missing or not JSON; GGUF export needs it for the vocabulary`,
    )
  }
  const model = json.model
  if (model?.type !== 'BPE' || !model.vocab) {
    throw new StudioError(
      'E_BAD_MODEL',
      `${dir}/tokenizer.json has a ${model?.type ?? 'unknown'} model; GGUF export supports BPE vocabularies (SentencePiece-style or byte-level)`,
    )
  }
  const byId: string[] = []
  for (const [text, id] of Object.entries(model.vocab)) byId[id] = text
  const added = new Map<number, { content: string; special: boolean }>()
  for (const t of json.added_tokens ?? []) added.set(t.id, { content: t.content, special: t.special === true })
  const size = Math.max(vocabSize, byId.length, ...[...added.keys()].map((i) => i + 1))
  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m : (m.split(' ') as [string, string])))

  const tokens: string[] = []
  const types: number[] = []
  const spm = model.byte_fallback === true
  const mergeRank = new Map<string, number>()
  if (spm)
    merges.forEach(([a, b], i) => {
      if (!mergeRank.has(a + b)) mergeRank.set(a + b, i)
    })
  const scores: number[] = []
  for (let id = 0; id < size; id++) {
    const a = added.get(id)
    const text = a?.content ?? byId[id]
    if (text === undefined) {
      tokens.push(`[PAD${id}]`)
      types.push(TokenType.UNUSED)
      scores.push(-1000)
      continue
    }
    let type = TokenType.NORMAL
    if (a) type = a.special ? (text === tok.unkToken ? TokenType.UNKNOWN : TokenType.CONTROL) : TokenType.USER_DEFINED
    else if (spm && /^<0x[0-9A-Fa-f]{2}>$/.test(text)) type = TokenType.BYTE
    // llama.cpp matches user-defined pieces against raw text, where a space is a space, not "▁".
    tokens.push(type === TokenType.USER_DEFINED && spm ? text.replaceAll('\u2581', ' ') : text)
    types.push(type)
    // SentencePiece merges greedily by piece score; a BPE merge list is that order, so a piece scores -(the rank of
    // the first merge that makes it), and pieces no merge makes (single characters, bytes, specials) score 0.
    const rank = type === TokenType.NORMAL ? mergeRank.get(text) : undefined
    scores.push(rank === undefined ? 0 : -rank)
  }

  const entries: Array<[string, GgufValue]> = []
  if (spm) {
    entries.push(['tokenizer.ggml.model', kv.str('llama')], ['tokenizer.ggml.pre', kv.str('default')])
  } else {
    if (!mentions(json.pre_tokenizer, 'ByteLevel') && !mentions(json.decoder, 'ByteLevel')) {
      throw new StudioError(
        'E_BAD_MODEL',
        `${dir}/tokenizer.json is a BPE vocabulary without byte fallback or byte-level pre-tokenizer; GGUF export does not know how llama.cpp should split its text`,
      )
    }
    const regexes: string[] = []
    collectRegexes(json.pre_tokenizer, regexes)
    const pre = GPT2_PRE.find((p) => regexes.some(p.test))
    if (!pre) {
      throw new StudioError(
        'E_BAD_MODEL',
        `${dir}/tokenizer.json splits text with a pre-tokenizer llama.cpp has no name for here (supported: ${GPT2_PRE.map((p) => `${p.name} for ${p.families}`).join('; ')})`,
      )
    }
    entries.push(['tokenizer.ggml.model', kv.str('gpt2')], ['tokenizer.ggml.pre', kv.str(pre.name)])
  }
  entries.push(['tokenizer.ggml.tokens', kv.strs(tokens)])
  if (spm) entries.push(['tokenizer.ggml.scores', kv.f32s(scores)])
  entries.push(['tokenizer.ggml.token_type', kv.i32s(types)])
  if (!spm) entries.push(['tokenizer.ggml.merges', kv.strs(merges.map(([a, b]) => `${a} ${b}`))])

  const ids: Array<[string, number | null]> = [
    ['bos', tok.bosId],
    ['eos', tok.eosId],
    ['unknown', tok.unkToken !== null ? (tok.tokenToId(tok.unkToken) ?? null) : null],
    ['padding', tok.padToken !== null ? (tok.tokenToId(tok.padToken) ?? null) : null],
  ]
  for (const [name, id] of ids)
    if (id !== null && id !== undefined) entries.push([`tokenizer.ggml.${name}_token_id`, kv.u32(id)])
  entries.push(
    ['tokenizer.ggml.add_bos_token', kv.bool(tok.addBosToken)],
    ['tokenizer.ggml.add_eos_token', kv.bool(tok.addEosToken)],
  )
  if (spm) entries.push(['tokenizer.ggml.add_space_prefix', kv.bool(addsSpacePrefix(json))])
  const template = pickChatTemplate(tok.chatTemplateSource)
  if (template) entries.push(['tokenizer.chat_template', kv.str(template)])
  return { kind: spm ? 'llama' : 'gpt2', entries, tokens }
}

/** Whether the tokenizer puts "▁" before the text (a Prepend normalizer, or a Metaspace that prepends). */
function addsSpacePrefix(json: TokenizerJson): boolean {
  if (mentions(json.normalizer, 'Prepend', (o) => o.prepend === '\u2581')) return true
  return mentions(
    json.pre_tokenizer,
    'Metaspace',
    (o) => o.add_prefix_space === true || (typeof o.prepend_scheme === 'string' && o.prepend_scheme !== 'never'),
  )
}
