// Tokenization and chat templates against HF tokenizers / transformers / TRL (docs/reference-parity.md,
// "Tokenization"): for every real tokenizer in ../shared/tokenizers (Breeze = Mistral's vocabulary with Breeze's
// template) and stories260K, the HW6 prompts and answers: the templated prompt text, its ids, plain encodes, the
// answers' ids; then our DPO pair tokenization (TRL 0.9 semantics) beside the current TRL's, every difference named.
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { promptText } from '../../src-main/services/session/promptText'
import { DEFAULT_SYSTEM_MESSAGE, promptIds } from '../../src-main/services/tokenizer/chatTemplate'
import { dpoTokenize } from '../../src-main/services/tokenizer/dpoTokenize'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { familyModel } from '../helpers/familyModels'
import { sharedPath } from '../helpers/sharedPath'
import { runPy } from './refstack'

interface TrlRow {
  inputIds: number[][]
  attentionMask: number[][]
  completionMask: number[][]
}
interface HfTok {
  name: string
  today: string
  texts: string[]
  templateIds: Array<number[] | null>
  plainIds: number[][]
  specialIds: number[][]
  answerIds: number[][]
  rawPlainIds: number[][]
  rawSpecialIds: number[][]
  rawAnswerIds: number[][]
  trl: TrlRow[]
}

const pairs = JSON.parse(readFileSync(sharedPath('datasets/genai-hw6/labelled_data.json'), 'utf8')) as Array<{
  prompt: string
  support: string
  oppose: string
}>
const tests = JSON.parse(readFileSync(sharedPath('datasets/genai-hw6/test_prompt.json'), 'utf8')) as Array<{
  prompt: string
}>
const questions = [...pairs.map((p) => p.prompt), ...tests.map((t) => t.prompt)]
const answers = pairs.flatMap((p) => [p.support, p.oppose])

/**
 * Mistral's vocabulary with Breeze-7B-Instruct's chat template (docs/reference/model.md#architecture: Breeze extends
 * exactly this vocabulary).
 */
function breezeDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dpo-ref-breeze-'))
  const mistral = sharedPath('tokenizers/mistral-v0.1')
  copyFileSync(path.join(mistral, 'tokenizer.json'), path.join(dir, 'tokenizer.json'))
  const cfg = JSON.parse(readFileSync(path.join(mistral, 'tokenizer_config.json'), 'utf8'))
  const breeze = JSON.parse(readFileSync(sharedPath('tokenizers/breeze-7b-instruct/chat_templates.json'), 'utf8'))
  const entry = Object.entries(breeze).find(([k]) =>
    k.startsWith('MediaTek-Research/Breeze-7B-Instruct'),
  )![1] as Record<string, string>
  writeFileSync(
    path.join(dir, 'tokenizer_config.json'),
    JSON.stringify({ ...cfg, chat_template: entry.chat_template, pad_token: entry.pad_token }),
  )
  return dir
}

const TOKENIZERS: Array<{ name: string; dir: string; templateKwargs?: { enable_thinking: boolean } }> = [
  { name: 'stories260K', dir: sharedPath('models/stories260K') },
  { name: 'mistral-v0.1', dir: sharedPath('tokenizers/mistral-v0.1') },
  { name: 'breeze (mistral vocabulary)', dir: '' },
  { name: 'minimind', dir: sharedPath('tokenizers/minimind') },
  { name: 'llama-3.1', dir: sharedPath('tokenizers/llama-3.1') },
  { name: 'qwen2.5', dir: sharedPath('tokenizers/qwen2.5') },
  { name: 'qwen3', dir: sharedPath('tokenizers/qwen3') },
  // Meta's Llama 3.2 template, which prints today's date through strftime_now (the family twin carries it).
  { name: 'llama-3.2 (strftime_now date)', dir: '' },
  {
    name: 'qwen3 (enable_thinking off)',
    dir: sharedPath('tokenizers/qwen3'),
    templateKwargs: { enable_thinking: false },
  },
]

/** Templates with a space right after a special token, which transformers 5 tokenizes differently (see the test). */
const METASPACE_AFFECTED = new Set(['breeze (mistral vocabulary)'])

let hf: HfTok[]
const ours = new Map<string, TextTokenizer>()

beforeAll(async () => {
  const at = (name: string) => TOKENIZERS.find((t) => t.name === name)!
  at('breeze (mistral vocabulary)').dir = breezeDir()
  at('llama-3.2 (strftime_now date)').dir = familyModel('llama-3.2-1b-instruct')
  for (const t of TOKENIZERS) ours.set(t.name, await TextTokenizer.fromDir(t.dir))
  hf = runPy<HfTok[]>('hf_tokenize.py', {
    tokenizers: TOKENIZERS,
    system: DEFAULT_SYSTEM_MESSAGE,
    questions,
    answers,
    rows: pairs.map((p) => ({ chosen: p.support, rejected: p.oppose })),
  })
}, 900_000)

describe.each(TOKENIZERS.map((t) => t.name))('%s', (name) => {
  const get = () => ({ tok: ours.get(name)!, ref: hf.find((h) => h.name === name)! })

  it('prompt text equals apply_chat_template(..., add_generation_prompt=True) for every HW6 question', () => {
    const { tok, ref } = get()
    // The run's chat date is the day transformers rendered on; enable_thinking as the entry passes it.
    const thinking = TOKENIZERS.find((t) => t.name === name)!.templateKwargs?.enable_thinking
    const style = { chatDate: ref.today, ...(thinking === undefined ? {} : { enableThinking: thinking }) }
    questions.forEach((q, i) => expect(promptText(tok, q, style), `question ${i}`).toBe(ref.texts[i]))
    if (name.startsWith('llama-3.2')) expect(ref.texts[0]).toMatch(/Today Date: \d\d [A-Z][a-z]{2} \d{4}\n/)
    if (thinking === false) expect(ref.texts[0]!.endsWith('<think>\n\n</think>\n\n')).toBe(true)
  })

  it("prompt and answer ids equal the tokenizers library's on tokenizer.json, with and without special tokens", () => {
    const { tok, ref } = get()
    questions.forEach((_, i) => {
      const text = ref.texts[i]!
      expect(tok.encode(text, { addSpecialTokens: false }), `question ${i}`).toEqual(ref.rawPlainIds[i])
      expect(tok.encode(text), `question ${i}`).toEqual(ref.rawSpecialIds[i])
    })
    answers.forEach((a, i) =>
      expect(tok.encode(a, { addSpecialTokens: false }), `answer ${i}`).toEqual(ref.rawAnswerIds[i]),
    )
  })

  it('prompt ids equal apply_chat_template(tokenize=True) and tokenizer(text) of transformers 5, but for its Metaspace rebuild', () => {
    const { tok, ref } = get()
    let differ = 0
    questions.forEach((_, i) => {
      const text = ref.texts[i]!
      const ok =
        (!ref.templateIds[i] || same(promptIds(tok, text), ref.templateIds[i]!)) &&
        same(tok.encode(text, { addSpecialTokens: false }), ref.plainIds[i]!) &&
        same(tok.encode(text), ref.specialIds[i]!)
      if (!ok) differ++
    })
    answers.forEach((a, i) =>
      expect(tok.encode(a, { addSpecialTokens: false }), `answer ${i}`).toEqual(ref.answerIds[i]),
    )
    // transformers 5 rebuilds Llama/Mistral tokenizers with Metaspace(prepend_scheme=always) instead of
    // tokenizer.json's Prepend + Replace normalizer: a piece after a special token that starts with a space ("<s> SYS"
    // in Breeze's template) gets one "▁" less. Only that template has such a piece.
    console.log(`tokenization ${name}: prompts whose ids differ from transformers 5: ${differ}/${questions.length}`)
    expect(differ).toBe(METASPACE_AFFECTED.has(name) ? questions.length : 0)
  })

  it('DPO pairs: ours (TRL 0.9) beside the current TRL, every difference a documented one', () => {
    const { tok, ref } = get()
    const kinds: Record<string, number> = {}
    const odd: string[] = []
    pairs.forEach((p, i) => {
      const t = dpoTokenize(tok, ref.texts[i]!, p.support, p.oppose)
      const trl = ref.trl[i]!
      ;[t.chosen, t.rejected].forEach((side, s) => {
        const mask = side.labels.map((l) => (l === -100 ? 0 : 1))
        const ids = trl.inputIds[s]!
        const cm = trl.completionMask[s]!
        let kind: string
        if (same(ids, side.ids) && same(cm, mask)) kind = 'same'
        else if (tok.bosId !== null && ids[0] === tok.bosId && same(ids.slice(1), side.ids) && same(cm.slice(1), mask))
          kind = 'extra-bos'
        else kind = 'other'
        kinds[kind] = (kinds[kind] ?? 0) + 1
        if (kind === 'other' && odd.length < 2)
          odd.push(
            `pair ${i} side ${s}: ours ${JSON.stringify(side.ids.slice(-12))} mask ${mask.slice(-12)}; trl ${JSON.stringify(ids.slice(-12))} mask ${cm.slice(-12)}`,
          )
      })
    })
    console.log(
      `tokenization ${name}: TRL-current vs ours per side ${JSON.stringify(kinds)}${odd.length ? '\n  ' + odd.join('\n  ') : ''}`,
    )
    expect(kinds.other ?? 0, odd.join('\n')).toBe(0)
  })
})

function same(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}
