// Greedy generation against transformers (docs/reference-parity.md, "Generation"): fp32, stories260K with the HW6
// test prompts as our TypeScript path makes their ids (and BOS alone, whose continuation the model's README gives),
// and random prompts on each family's tiny checkpoint. The tokens must be the same.
import { readFileSync } from 'node:fs'
import { beforeAll, describe, expect, it } from 'vitest'
import { promptText } from '../../src-main/services/session/promptText'
import { promptIds } from '../../src-main/services/tokenizer/chatTemplate'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { sharedPath } from '../helpers/sharedPath'
import { openEngine, seededRandom } from './engineSide'
import { STORIES_DIR, TINY_FAMILIES, makeTinyModels } from './families'
import { runPy } from './refstack'

const MAX_NEW = 48
interface Case {
  name: string
  dir: string
  prompts: number[][]
  eosIds: number[]
}
const cases: Case[] = []
let reference: Array<{ name: string; tokens: number[][] }>

beforeAll(async () => {
  const tok = await TextTokenizer.fromDir(STORIES_DIR)
  const hw6 = JSON.parse(readFileSync(sharedPath('datasets/genai-hw6/test_prompt.json'), 'utf8')) as Array<{
    prompt: string
  }>
  const english = ['Once upon a time', 'The little dog ran to the park and', 'Lily and Ben were friends. One day']
  const prompts = [[1], ...[...hw6.map((p) => p.prompt), ...english].map((q) => promptIds(tok, promptText(tok, q, {})))]
  cases.push({ name: 'stories260K', dir: STORIES_DIR, prompts, eosIds: tok.eosIds as number[] })
  const tiny = makeTinyModels()
  TINY_FAMILIES.forEach((f, i) => {
    const rnd = seededRandom(300 + i)
    const vocab = f.config.vocab_size as number
    cases.push({
      name: f.name,
      dir: tiny[i]!,
      eosIds: [2],
      prompts: [4, 9, 17].map((n) => [1, ...Array.from({ length: n }, () => 3 + Math.floor(rnd() * (vocab - 3)))]),
    })
  })
  reference = runPy('hf_generate.py', {
    max_new_tokens: MAX_NEW,
    models: cases.map((c) => ({ name: c.name, dir: c.dir, prompts: c.prompts, eos_ids: c.eosIds })),
  })
}, 900_000)

describe.each(['stories260K', ...TINY_FAMILIES.map((f) => f.name)])('%s', (name) => {
  it("greedy tokens equal transformers' generate (fp32)", async () => {
    const c = cases.find((x) => x.name === name)!
    const theirs = reference.find((x) => x.name === name)!.tokens
    const model = await openEngine(c.dir)
    try {
      const r = await model.generate(c.prompts, { maxNewTokens: MAX_NEW, eosIds: c.eosIds })
      const ours = r.tokens.map((t) => [...t])
      let total = 0
      ours.forEach((t, i) => {
        expect(t, `${name} prompt ${i}`).toEqual(theirs[i])
        total += t.length
      })
      if (name === 'stories260K')
        expect(ours[0]!.slice(0, 19)).toEqual([
          403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267,
        ])
      console.log(`generation ${name}: ${ours.length} prompts, ${total} tokens, all equal`)
    } finally {
      model.dispose()
    }
  })
})
