// TextTokenizer against the real tokenizers in ../shared: Mistral-v0.1 (Breeze's base vocabulary), stories260K,
// MiniMind (ChatML); special-token rules, decode quirks, streaming, and bad model directories.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { StudioError } from '../../src-main/services/errors'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { sharedPath } from '../helpers/sharedPath'

const MISTRAL = sharedPath('tokenizers', 'mistral-v0.1')
const STORIES = sharedPath('models', 'stories260K')
const MINIMIND = sharedPath('tokenizers', 'minimind')

async function readJson(file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>
}

describe('TextTokenizer: Mistral v0.1 (sentencepiece BPE, legacy normalizer, byte fallback)', () => {
  let tok: TextTokenizer
  beforeAll(async () => {
    tok = await TextTokenizer.fromDir(MISTRAL)
  })

  it('encodes known ids, with BOS from add_bos_token', () => {
    expect(tok.encode('Hello world')).toEqual([1, 22557, 1526])
    expect(tok.encode('Hello world', { addSpecialTokens: false })).toEqual([22557, 1526])
    // Mistral-Instruct's markers, as transformers tokenizes them.
    expect(tok.encode('[INST] hi [/INST]', { addSpecialTokens: false })).toEqual([
      733, 16289, 28793, 12014, 733, 28748, 16289, 28793,
    ])
  })

  it('maps special-token text to its id even without add_special_tokens (docs/reference/chat-template.md)', () => {
    expect(tok.encode('<s>Hello world', { addSpecialTokens: false })).toEqual([1, 22557, 1526])
    expect(tok.encode('Hello</s>', { addSpecialTokens: false })).toEqual([22557, 2])
    // legacy: the text after a special token gets its own "▁" prefix, so a space after <s> becomes a lone "▁".
    expect(tok.encode('<s> Hello', { addSpecialTokens: false })).toEqual([1, 28705, 22557])
    // ...and text that starts with <s> gets a second BOS when add_special_tokens is true (the notebook's double BOS).
    expect(tok.encode('<s>Hello')).toEqual([1, 1, 22557])
  })

  it('keeps a trailing space as a lone "▁" piece', () => {
    expect(tok.encode('Question: hi ', { addSpecialTokens: false })).toEqual([22478, 28747, 12014, 28705])
    expect(tok.idToToken(28705)).toBe('▁')
  })

  it('exposes special ids: bos 1, eos 2, pad falls back to eos (docs/reference/model.md#special-tokens)', () => {
    expect(tok.bosId).toBe(1)
    expect(tok.eosId).toBe(2)
    expect(tok.padId).toBe(2)
    expect(tok.bosToken).toBe('<s>')
    expect(tok.eosToken).toBe('</s>')
    expect(tok.addBosToken).toBe(true)
    expect(tok.addEosToken).toBe(false)
    expect([...tok.specialIds].sort()).toEqual([0, 1, 2])
    expect(tok.eosIds).toEqual([2])
    expect(tok.vocabSize).toBe(32000)
  })

  it('decodes like transformers', () => {
    expect(tok.decode([1, 22557, 1526])).toBe('<s> Hello world')
    expect(tok.decode([1, 22557, 1526, 2], { skipSpecialTokens: true })).toBe('Hello world')
    expect(tok.decode([])).toBe('')
    expect(tok.decode([1, 2], { skipSpecialTokens: true })).toBe('')
    // Ids outside the vocabulary are dropped (the Rust library does; @huggingface/tokenizers would print <unk>).
    expect(tok.decode([99999, 22557])).toBe('Hello')
    const zh = '日本動漫真人化'
    expect(tok.decode(tok.encode(zh), { skipSpecialTokens: true })).toBe(zh)
  })

  it('decodes an incomplete byte-fallback run as one U+FFFD per byte, like the Rust ByteFallback decoder', () => {
    // 漫 = <0xE6><0xBC><0xAB> = ids 233, 191, 174 in this vocabulary.
    expect(tok.encode('漫', { addSpecialTokens: false })).toEqual([28705, 233, 191, 174])
    expect(tok.decode([233, 191, 174])).toBe('漫')
    expect(tok.decode([233, 191])).toBe('\uFFFD\uFFFD')
  })

  it('streams text without splitting multi-byte characters', () => {
    const text = '真人化能夠呈現更真實的角色形象，提升原作魅力。漫畫 ok'
    const ids = tok.encode(text, { addSpecialTokens: false })
    const stream = tok.createStreamDecoder({ skipSpecialTokens: true })
    const deltas: string[] = []
    for (let i = 1; i <= ids.length; i++) deltas.push(stream.next(ids.slice(0, i)))
    deltas.push(stream.flush())
    for (const d of deltas) expect(d).not.toContain('\uFFFD')
    expect(deltas.join('')).toBe(text)
    expect(stream.text).toBe(text)
    // While 漫's bytes arrive, nothing is emitted for it.
    const start = ids.indexOf(233)
    expect(start).toBeGreaterThan(0)
    expect(deltas[start]).toBe('')
    expect(deltas[start + 1]).toBe('')
    expect(deltas[start + 2]).toBe('漫')
  })

  it('flush releases a trailing U+FFFD that never completes', () => {
    const stream = tok.createStreamDecoder()
    expect(stream.next([22557, 233])).toBe('Hello')
    expect(stream.flush()).toBe('\uFFFD')
  })

  it('follows explicit add_bos_token / add_eos_token over tokenizer.json (LlamaTokenizerFast rebuilds its post-processor)', async () => {
    const json = await readJson(path.join(MISTRAL, 'tokenizer.json'))
    const config = await readJson(path.join(MISTRAL, 'tokenizer_config.json'))
    const noBos = TextTokenizer.fromObjects(json, { ...config, add_bos_token: false, add_eos_token: true })
    expect(noBos.encode('Hello world')).toEqual([22557, 1526, 2])
    expect(noBos.encode('Hello world', { addSpecialTokens: false })).toEqual([22557, 1526])
    // Without the flags, the tokenizer.json post-processor (adds <s>) decides.
    const { add_bos_token: _a, add_eos_token: _b, ...bare } = config
    const probe = TextTokenizer.fromObjects(json, bare)
    expect(probe.addBosToken).toBe(true)
    expect(probe.addEosToken).toBe(false)
    expect(probe.encode('Hello world')).toEqual([1, 22557, 1526])
  })
})

describe('TextTokenizer: stories260K (tiny Llama, add_bos_token true)', () => {
  it('adds BOS and decodes the known greedy output', async () => {
    const tok = await TextTokenizer.fromDir(STORIES)
    expect(tok.bosId).toBe(1)
    expect(tok.eosId).toBe(2)
    expect(tok.addBosToken).toBe(true)
    expect(tok.vocabSize).toBe(512)
    expect(tok.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378])
    expect(tok.encode('Once upon a time', { addSpecialTokens: false })).toEqual([403, 407, 261, 378])
    // First 20 greedy ids from BOS (models/stories260K/README.md).
    const greedy = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267]
    expect(tok.decode(greedy, { skipSpecialTokens: true })).toMatch(
      /^Once upon a time, there was a little girl named Lily\. She/,
    )
    expect(tok.chatTemplateSource).toBeNull()
  })
})

describe('TextTokenizer: MiniMind (byte-level BPE, ChatML specials)', () => {
  it('uses the ChatML tokens as bos/eos/pad and adds no BOS', async () => {
    const tok = await TextTokenizer.fromDir(MINIMIND)
    expect(tok.bosToken).toBe('<|im_start|>')
    expect(tok.bosId).toBe(1)
    expect(tok.eosId).toBe(2)
    expect(tok.padId).toBe(0)
    expect(tok.addBosToken).toBe(false)
    const ids = tok.encode('<|im_start|>user\n你好<|im_end|>')
    expect(ids[0]).toBe(1)
    expect(ids[ids.length - 1]).toBe(2)
    expect(tok.decode(ids)).toBe('<|im_start|>user\n你好<|im_end|>')
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('user\n你好')
    expect(typeof tok.chatTemplateSource).toBe('string')
  })
})

describe('TextTokenizer: bad model directories', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'dpo-tok-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('names the directory and the missing tokenizer.json', async () => {
    const err = await TextTokenizer.fromDir(dir).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StudioError)
    expect((err as StudioError).code).toBe('E_BAD_MODEL')
    expect((err as StudioError).message).toBe(`model directory ${dir} has no tokenizer.json`)
  })

  it('names the missing tokenizer_config.json', async () => {
    await writeFile(path.join(dir, 'tokenizer.json'), await readFile(path.join(STORIES, 'tokenizer.json')))
    await expect(TextTokenizer.fromDir(dir)).rejects.toThrow(`model directory ${dir} has no tokenizer_config.json`)
  })

  it('reports unparsable JSON with the file name', async () => {
    await writeFile(path.join(dir, 'tokenizer_config.json'), '{ not json')
    await expect(TextTokenizer.fromDir(dir)).rejects.toThrow(/tokenizer_config\.json is not valid JSON/)
  })

  it('falls back to config.json for EOS, never for BOS (a tokenizer without bos_token has none)', async () => {
    const json = await readJson(path.join(STORIES, 'tokenizer.json'))
    const tok = TextTokenizer.fromObjects(json, {}, { modelConfig: { bos_token_id: 1, eos_token_id: [2, 0] } })
    expect(tok.bosId).toBeNull()
    expect(tok.bosToken).toBeNull()
    expect(tok.eosId).toBe(2)
    expect(tok.eosIds).toEqual([2, 0])
  })
})
