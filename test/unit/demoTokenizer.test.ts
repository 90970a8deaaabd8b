// The embedded demo's data and tokenizer: the sample dataset (zh + English twin) loads in the HW6 layout, and the
// character-level tokenizer built from it loads with TextTokenizer, round-trips any text and renders its chat template.
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadPreferenceData, type PreferenceRow } from '../../src-main/services/data/preferenceFile'
import { loadPromptsFile, type PromptRow } from '../../src-main/services/data/promptsFile'
import { answerText } from '../../src-main/services/tokenizer/answerText'
import {
  DEFAULT_SYSTEM_MESSAGE,
  promptIds,
  renderMessages,
  renderPrompt,
} from '../../src-main/services/tokenizer/chatTemplate'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import {
  BYTE_TOKEN_OFFSET,
  CHAR_TOKEN_OFFSET,
  DEMO_CHAT_TEMPLATE,
  buildDemoTokenizer,
} from '../../scripts/demo-model/buildTokenizer'

const SAMPLE = fileURLToPath(new URL('../../resources/sample-dataset/', import.meta.url))
const ZH = `${SAMPLE}zh`
const EN = `${SAMPLE}en`

interface Sample {
  rows: PreferenceRow[]
  prompts: PromptRow[]
}

async function loadSample(dir: string): Promise<Sample> {
  const data = await loadPreferenceData(dir)
  expect(data.format).toBe('hw6')
  expect(data.conversational).toBe(false)
  return { rows: data.rows, prompts: await loadPromptsFile(`${dir}/test_prompt.json`) }
}

/** Every string of a sample: questions, both answers, held-out prompts. */
function sampleTexts(s: Sample): string[] {
  return [...s.rows.flatMap((r) => [r.prompt as string, r.support!, r.oppose!]), ...s.prompts.map((p) => p.prompt)]
}

/** Length in characters (code points), not UTF-16 units. */
const charLength = (s: string) => [...s].length

let zh: Sample
let en: Sample
beforeAll(async () => {
  zh = await loadSample(ZH)
  en = await loadSample(EN)
})

describe('sample dataset (resources/sample-dataset)', () => {
  it('has 60 questions and 10 held-out prompts in each language, with unique ids', () => {
    for (const s of [zh, en]) {
      expect(s.rows).toHaveLength(60)
      expect(s.prompts).toHaveLength(10)
      expect(new Set(s.rows.map((r) => r.id)).size).toBe(60)
      expect(new Set(s.prompts.map((p) => p.id)).size).toBe(10)
    }
  })

  it('has short, non-empty answers whose two sides differ', () => {
    for (const [s, max] of [
      [zh, 40],
      [en, 100],
    ] as const) {
      for (const r of s.rows) {
        for (const answer of [r.support!, r.oppose!]) {
          expect(answer.trim().length).toBeGreaterThan(0)
          expect(charLength(answer)).toBeLessThanOrEqual(max)
        }
        expect(r.support).not.toBe(r.oppose)
      }
    }
    // The Chinese answers are one sentence of 12-30 characters, short enough for a tiny model to learn.
    for (const r of zh.rows) {
      for (const answer of [r.support!, r.oppose!]) {
        expect(charLength(answer)).toBeGreaterThanOrEqual(12)
        expect(charLength(answer)).toBeLessThanOrEqual(30)
      }
    }
  })

  it('states each stance in its wording (support says 能, oppose says 可能), so a nearest-answer check can tell them apart', () => {
    for (const r of zh.rows) {
      expect(r.support).toMatch(/(?<!可)能/)
      expect(r.oppose).toContain('可能')
    }
  })

  it('keeps the held-out prompts out of the training questions', () => {
    const train = new Set(zh.rows.map((r) => r.prompt))
    for (const p of zh.prompts) expect(train.has(p.prompt)).toBe(false)
  })

  it('has an English twin with the same ids', () => {
    expect(en.rows.map((r) => r.id)).toEqual(zh.rows.map((r) => r.id))
    expect(en.prompts.map((p) => p.id)).toEqual(zh.prompts.map((p) => p.id))
    // A translation, not a copy.
    expect(en.rows[0]!.prompt).not.toBe(zh.rows[0]!.prompt)
  })

  it('uses a compact Chinese vocabulary', () => {
    const chars = new Set(sampleTexts(zh).join(''))
    console.log(`sample dataset (zh): ${chars.size} distinct characters`)
    expect(chars.size).toBeLessThan(700)
  })

  it('is valid JSON in the HW6 4-space layout', async () => {
    const text = await readFile(`${ZH}/labelled_data.json`, 'utf8')
    expect(Object.keys(JSON.parse(text)[0])).toEqual(['id', 'prompt', 'support', 'oppose'])
  })
})

describe('demo tokenizer (scripts/demo-model/buildTokenizer.ts)', () => {
  let texts: string[]
  let tok: TextTokenizer
  beforeAll(() => {
    texts = [...sampleTexts(zh), ...sampleTexts(en)]
    const { tokenizerJson, tokenizerConfig } = buildDemoTokenizer(texts)
    // Through JSON, as the files on disk will be read.
    tok = TextTokenizer.fromObjects(
      JSON.parse(JSON.stringify(tokenizerJson)),
      JSON.parse(JSON.stringify(tokenizerConfig)),
      {
        source: 'demo tokenizer',
      },
    )
  })

  it('has <unk>=0, <s>=1, </s>=2, then the 256 byte tokens', () => {
    expect([tok.tokenToId('<unk>'), tok.tokenToId('<s>'), tok.tokenToId('</s>')]).toEqual([0, 1, 2])
    expect([tok.bosId, tok.eosId, tok.padId]).toEqual([1, 2, 2])
    expect(tok.tokenToId('<0x00>')).toBe(BYTE_TOKEN_OFFSET)
    expect(tok.tokenToId('<0xFF>')).toBe(BYTE_TOKEN_OFFSET + 255)
    expect([...tok.specialIds].sort()).toEqual([0, 1, 2])
    expect(tok.addBosToken).toBe(false)
    expect(tok.addEosToken).toBe(false)
  })

  it('has a small vocabulary', () => {
    console.log(`demo tokenizer vocabulary: ${tok.vocabSize} tokens`)
    expect(tok.vocabSize).toBeLessThan(1200)
  })

  it('encodes every character of the data as one token, never as bytes', () => {
    const chars = new Set(texts.join(''))
    for (const ch of chars) {
      const ids = tok.encode(ch, { addSpecialTokens: false })
      expect(ids, ch).toHaveLength(1)
      expect(ids[0]!, ch).toBeGreaterThanOrEqual(CHAR_TOKEN_OFFSET)
    }
    for (const text of texts) expect(tok.encode(text, { addSpecialTokens: false })).toHaveLength(charLength(text))
  })

  it('adds no BOS or EOS on its own (the chat template writes <s>)', () => {
    expect(tok.encode('禁車')).toEqual(tok.encode('禁車', { addSpecialTokens: false }))
  })

  it.each([
    ['Chinese', '市中心禁車是否能改善空氣品質？'],
    ['English', 'Can a downtown car ban improve air quality?'],
    ['mixed', '禁車 car ban 2025年，OK!'],
    ['spaces', '  leading and trailing  , and " ." kept '],
    ['newlines', '第一行\n\n第二行\r\n'],
    ['unseen CJK via bytes', '龘靐'],
    ['emoji via bytes', '禁車🚗🚲好'],
    ['byte-token look-alike text', '<0x41> is not A'],
    ['special-token text', '<s>問：禁車？\n答：能。</s>'],
  ])('round-trips %s text', (_, text) => {
    expect(tok.decode(tok.encode(text, { addSpecialTokens: false }))).toBe(text)
  })

  it('spells an emoji as its four UTF-8 bytes', () => {
    const ids = tok.encode('🚗', { addSpecialTokens: false })
    expect(tok.idsToTokens(ids)).toEqual(['<0xF0>', '<0x9F>', '<0x9A>', '<0x97>'])
  })

  it('renders the system message and the question, and the prompt starts with exactly one BOS', () => {
    const question = zh.prompts[0]!.prompt
    const rendered = renderPrompt(tok, question)
    expect(rendered.mode).toBe('template')
    expect(rendered.text).toBe(`<s>${DEFAULT_SYSTEM_MESSAGE}\n問：${question}\n答：`)
    const ids = promptIds(tok, rendered.text)
    expect(ids[0]).toBe(tok.bosId)
    expect(ids.filter((id) => id === tok.bosId)).toHaveLength(1)
    // No byte fallback anywhere in a templated prompt: markers and system message are whole characters.
    expect(ids.slice(1).every((id) => id >= CHAR_TOKEN_OFFSET)).toBe(true)
    expect(ids).toHaveLength(1 + charLength(rendered.text) - '<s>'.length)
  })

  it('renders without a system message, and the prompt is a prefix of the full conversation', () => {
    expect(renderPrompt(tok, '禁車好嗎？', { system: null }).text).toBe('<s>問：禁車好嗎？\n答：')
    const row = zh.rows[0]!
    const messages = [
      { role: 'system', content: DEFAULT_SYSTEM_MESSAGE },
      { role: 'user', content: row.prompt as string },
    ]
    const prompt = renderMessages(tok, messages)
    const full = renderMessages(tok, [...messages, { role: 'assistant', content: row.support! }], {
      addGenerationPrompt: false,
    })
    expect(full).toBe(`${prompt}${row.support}</s>`)
    expect(tok.chatTemplateSource).toBe(DEMO_CHAT_TEMPLATE)
  })

  it('cuts the answer out of generated ids (no [/INST] marker: the generated ids alone)', () => {
    const row = zh.rows[1]!
    const prompt = promptIds(tok, renderPrompt(tok, row.prompt as string).text)
    const generated = [...tok.encode(row.oppose!, { addSpecialTokens: false }), tok.eosId!]
    expect(answerText(tok, prompt, generated)).toBe(row.oppose)
  })

  it('is deterministic: the same characters in any order give the same files', () => {
    const a = buildDemoTokenizer(texts)
    const b = buildDemoTokenizer([...texts].reverse())
    expect(JSON.stringify(b)).toBe(JSON.stringify(a))
  })
})
