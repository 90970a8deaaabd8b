// TRL 0.9 DPO tokenization (docs/reference/dpo-data.md#tokenizing-a-row) and pair padding
// (docs/reference/dpo-data.md#collation-and-padding): the real HW6 first pair with the Mistral tokenizer, the
// sentencepiece merge fix, truncation rules, and the chosen/rejected prompt check.
import { readFile } from 'node:fs/promises'
import { beforeAll, describe, expect, it } from 'vitest'
import { StudioError } from '../../src-main/services/errors'
import { dpoTokenize, padPair, type DpoTokenizer } from '../../src-main/services/tokenizer/dpoTokenize'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { sharedPath } from '../helpers/sharedPath'

interface Hw6Row {
  id: number
  prompt: string
  support: string
  oppose: string
}

/**
 * The Breeze v0_1 rendering of docs/reference/chat-template.md#rendering (chatTemplate.test.ts checks the template
 * produces exactly this).
 */
const breezePrompt = (q: string) => `<s>回覆請少於20字   [INST] ${q} [/INST] `

/** A character-level tokenizer (one id per UTF-16 unit, offset past the specials) for exact length arithmetic. */
const charTok: DpoTokenizer = {
  bosId: 1,
  eosId: 2,
  encode: (text: string) => [...text].map((ch) => ch.charCodeAt(0) + 10),
}

let mistral: TextTokenizer
let rows: Hw6Row[]

beforeAll(async () => {
  mistral = await TextTokenizer.fromDir(sharedPath('tokenizers', 'mistral-v0.1'))
  rows = JSON.parse(await readFile(sharedPath('datasets', 'genai-hw6', 'labelled_data.json'), 'utf8')) as Hw6Row[]
})

describe('dpoTokenize on the real HW6 data (Mistral vocabulary)', () => {
  it('tokenizes the first pair: one BOS, prompt labelled -100, answer labelled, EOS last', () => {
    const row = rows[0]!
    const prompt = breezePrompt(row.prompt)
    const pair = dpoTokenize(mistral, prompt, row.support, row.oppose)
    const promptOnly = mistral.encode(prompt, { addSpecialTokens: false })

    expect(promptOnly[0]).toBe(1)
    expect(pair.promptIds).toEqual(promptOnly) // no merge, no truncation: the prompt as tokenized alone
    expect(pair.promptLength).toBe(promptOnly.length)

    for (const [side, answer] of [
      [pair.chosen, row.support],
      [pair.rejected, row.oppose],
    ] as const) {
      const full = mistral.encode(prompt + answer, { addSpecialTokens: false })
      expect(side.promptLength).toBe(promptOnly.length)
      expect(side.ids).toEqual([...full, 2])
      expect(side.ids[0]).toBe(1)
      expect(side.ids[1]).not.toBe(1)
      expect(side.ids[side.ids.length - 1]).toBe(2)
      expect(side.labels).toHaveLength(side.ids.length)
      side.labels.forEach((label, i) => expect(label).toBe(i < side.promptLength ? -100 : side.ids[i]))
      // The answer decodes back to the answer text.
      expect(mistral.decode(side.ids.slice(side.promptLength), { skipSpecialTokens: true })).toBe(answer)
    }
  })

  it('tokenizes all 50 rows within the default lengths', () => {
    for (const row of rows) {
      const pair = dpoTokenize(mistral, breezePrompt(row.prompt), row.support, row.oppose)
      expect(pair.chosen.ids.length).toBeLessThanOrEqual(512)
      expect(pair.chosen.ids[0]).toBe(1)
      expect(pair.rejected.ids[pair.rejected.ids.length - 1]).toBe(2)
    }
  })

  it('pads the pair into a [2, L] batch with pad 2, mask 0, labels -100', () => {
    const row = rows[0]!
    const pair = dpoTokenize(mistral, breezePrompt(row.prompt), row.support, row.oppose)
    const batch = padPair(pair, mistral.padId!)
    const lc = pair.chosen.ids.length
    const lr = pair.rejected.ids.length
    expect(batch.length).toBe(Math.max(lc, lr))
    for (const r of [0, 1] as const) {
      const n = r === 0 ? lc : lr
      const side = r === 0 ? pair.chosen : pair.rejected
      expect(batch.inputIds[r]).toHaveLength(batch.length)
      expect(batch.inputIds[r].slice(0, n)).toEqual(side.ids)
      expect(batch.inputIds[r].slice(n).every((x) => x === 2)).toBe(true)
      expect(batch.attentionMask[r]).toEqual([...new Array(n).fill(1), ...new Array(batch.length - n).fill(0)])
      expect(batch.labels[r].slice(0, n)).toEqual(side.labels)
      expect(batch.labels[r].slice(n).every((x) => x === -100)).toBe(true)
    }
  })
})

describe('dpoTokenize: the merge fix (trl 0.9 build_tokenized_answer)', () => {
  it('moves the split back one token when the prompt\'s trailing "▁" merges into the answer', () => {
    const prompt = 'Question: hi '
    const promptOnly = mistral.encode(prompt, { addSpecialTokens: false })
    expect(promptOnly).toEqual([22478, 28747, 12014, 28705]) // ends with the lone "▁"
    const full = mistral.encode(prompt + 'Hello there', { addSpecialTokens: false })
    expect(full).toEqual([22478, 28747, 12014, 22557, 736]) // "▁" + "Hello" became "▁Hello"

    const pair = dpoTokenize(mistral, prompt, 'Hello there', '\nNo')
    // chosen: split moved from 4 to 3, then BOS prepended (the prompt text has none).
    expect(pair.chosen.promptLength).toBe(1 + promptOnly.length - 1)
    expect(pair.chosen.ids).toEqual([1, 22478, 28747, 12014, 22557, 736, 2])
    expect(pair.chosen.ids[pair.chosen.promptLength]).toBe(mistral.tokenToId('▁Hello'))
    expect(pair.chosen.labels).toEqual([-100, -100, -100, -100, 22557, 736, 2]) // the merged token is labelled
    // rejected: "\n" does not merge, so the lone "▁" stays in the prompt part.
    expect(pair.rejected.promptLength).toBe(1 + promptOnly.length)
    expect(pair.rejected.ids).toEqual([1, 22478, 28747, 12014, 28705, 13, 2501, 2])
    // The generation prompt is trimmed to the shorter prompt part.
    expect(pair.promptIds).toEqual([1, 22478, 28747, 12014])
  })

  it('rejects chosen/rejected prompts that differ by more than one token', () => {
    const table: Record<string, number[]> = {
      p: [5, 6, 7],
      pA: [5, 6, 7, 8],
      pB: [9, 9, 7, 8],
    }
    const tok: DpoTokenizer = { bosId: 1, eosId: 2, encode: (t: string) => [...table[t]!] }
    const err = (() => {
      try {
        dpoTokenize(tok, 'p', 'A', 'B')
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(StudioError)
    expect((err as StudioError).message).toMatch(/differ by more than the last token/)
  })

  it('does not add a second EOS or BOS', () => {
    const pair = dpoTokenize(mistral, '<s>Q: why?', ' Because.</s>', ' No.')
    expect(pair.chosen.ids.filter((x) => x === 2)).toHaveLength(1)
    expect(pair.chosen.ids.filter((x) => x === 1)).toHaveLength(1)
    expect(pair.rejected.ids[pair.rejected.ids.length - 1]).toBe(2)
  })
})

describe('dpoTokenize: truncation (max_length 512, max_prompt_length 128)', () => {
  const range = (n: number, base: string) => base.repeat(n)

  it('leaves short pairs alone', () => {
    const pair = dpoTokenize(charTok, range(200, 'p'), range(100, 'c'), range(50, 'r'))
    expect(pair.chosen.ids).toHaveLength(1 + 200 + 100 + 1)
    expect(pair.rejected.ids).toHaveLength(1 + 200 + 50 + 1)
    expect(pair.promptLength).toBe(201)
  })

  it('keep_end keeps the last 128 prompt tokens (BOS dropped) when prompt + longer answer > 512', () => {
    const prompt = 'abcdefghij'.repeat(50) // 500 tokens
    const pair = dpoTokenize(charTok, prompt, range(100, 'c'), range(10, 'r'))
    const fullPrompt = [1, ...charTok.encode(prompt)]
    for (const side of [pair.chosen, pair.rejected]) {
      expect(side.promptLength).toBe(128)
      expect(side.ids.slice(0, 128)).toEqual(fullPrompt.slice(-128))
      expect(side.ids[0]).not.toBe(1)
      expect(side.ids[side.ids.length - 1]).toBe(2) // answer fits: not cut
    }
    expect(pair.chosen.ids).toHaveLength(128 + 101)
    expect(pair.rejected.ids).toHaveLength(128 + 11) // truncated because the *longer* answer does not fit
    expect(pair.promptIds).toEqual(fullPrompt.slice(-128))
  })

  it('keep_start keeps the first 128 prompt tokens (BOS kept)', () => {
    const prompt = 'abcdefghij'.repeat(50)
    const pair = dpoTokenize(charTok, prompt, range(100, 'c'), range(10, 'r'), { truncationMode: 'keep_start' })
    expect(pair.chosen.ids.slice(0, 128)).toEqual([1, ...charTok.encode(prompt)].slice(0, 128))
    expect(pair.chosen.promptLength).toBe(128)
  })

  it('cuts answers to 512 - 128 = 384 tokens when still too long (EOS cut off, as in TRL)', () => {
    const pair = dpoTokenize(charTok, range(300, 'p'), range(600, 'c'), range(5, 'r'))
    expect(pair.chosen.ids).toHaveLength(512)
    expect(pair.chosen.promptLength).toBe(128)
    expect(pair.chosen.ids.slice(128)).toEqual(charTok.encode(range(384, 'c')))
    expect(pair.chosen.ids[511]).not.toBe(2)
    // rejected: prompt truncated (shared `longer`), its short answer kept whole.
    expect(pair.rejected.ids).toHaveLength(128 + 6)
    expect(pair.rejected.labels.filter((x) => x === -100)).toHaveLength(128)
  })

  it('applies the same rules with the real tokenizer on a long synthetic answer', () => {
    const row = rows[0]!
    const prompt = breezePrompt(row.prompt.repeat(12)) // > 128 tokens
    const answer = 'word '.repeat(700)
    const pair = dpoTokenize(mistral, prompt, answer, row.oppose)
    const promptOnly = mistral.encode(prompt, { addSpecialTokens: false })
    expect(promptOnly.length).toBeGreaterThan(128)
    expect(pair.chosen.ids).toHaveLength(512)
    // "word" after the prompt's trailing "▁" merges into "▁word": the chosen prompt part loses its last token.
    expect(pair.chosen.ids[128]).toBe(mistral.tokenToId('▁word'))
    expect(pair.chosen.ids.slice(0, 128)).toEqual(promptOnly.slice(0, -1).slice(-128))
    expect(pair.rejected.ids.slice(0, 128)).toEqual(promptOnly.slice(-128))
    expect(pair.promptIds).toEqual(promptOnly.slice(0, -1).slice(-128))
    expect(pair.chosen.labels.slice(0, 128).every((x) => x === -100)).toBe(true)
    expect(pair.chosen.labels[128]).toBe(pair.chosen.ids[128])
    expect(pair.rejected.promptLength).toBe(128)
    expect(pair.rejected.ids[pair.rejected.ids.length - 1]).toBe(2)
  })

  it('honours custom lengths and rejects nonsense ones', () => {
    const pair = dpoTokenize(charTok, range(20, 'p'), range(30, 'c'), range(5, 'r'), {
      maxLength: 32,
      maxPromptLength: 8,
    })
    expect(pair.chosen.ids).toHaveLength(8 + 24)
    expect(() => dpoTokenize(charTok, 'p', 'c', 'r', { maxLength: 16, maxPromptLength: 32 })).toThrow(/maxPromptLength/)
    expect(() => dpoTokenize({ ...charTok, eosId: null }, 'p', 'c', 'r')).toThrow(/no EOS/)
  })
})
