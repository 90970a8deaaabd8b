// The reference pass's engine call (src-main/services/training/stages/referencePass.ts): model.logps with the adapter
// disabled and withLogitsMean=false chains the call's pairs into one unpadded row after their common start (here
// the BOS token) and runs its last block at the scored rows only (docs/performance.md#chained-rows-without-the-logits-metric,
// #last-layer-only-where-scored). Through the real addon: the same log-probs and token log-probs, bit for bit, as the
// call that computes the metric; logitsMean NaN; the CPU model says it chains (the reference grouping reads that).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadAddon } from '../../src-main/addon/loadAddon'
import type { NativeModel, ScoredSequence } from '../../src-main/addon/addonTypes'
import { seeded } from '../helpers/exportFixtures'
import { sharedPath } from '../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')

/** Pairs as the reference pass sends them (chosen, rejected, ...): a shared prompt, answers of different lengths. */
function pairs(count: number, seed: number): ScoredSequence[] {
  const rnd = seeded(seed)
  const ids = (n: number) => Array.from({ length: n }, () => 3 + Math.floor(rnd() * 509))
  const out: ScoredSequence[] = []
  for (let p = 0; p < count; p++) {
    const prompt = [1, ...ids(4 + 3 * p)]
    for (const answer of [ids(5 + p), ids(9 - p)]) {
      const all = [...prompt, ...answer, 2]
      out.push({ ids: all, labels: all.map((id, i) => (i < prompt.length ? -100 : id)) })
    }
  }
  return out
}

let model: NativeModel

beforeAll(async () => {
  model = await loadAddon().loadModel(STORIES, { quant: 'nf4', backend: 'cpu' })
})

afterAll(() => model.dispose())

describe('reference log-probs without the logits metric', () => {
  it('gives the bits of the call with the metric, and a NaN logitsMean', async () => {
    expect(model.info().chainedScoring).toBe(true)
    const seqs = pairs(4, 5)
    const want = await model.logps(seqs, 0, undefined, false)
    const got = await model.logps(seqs, 0, undefined, false, false)
    expect(got.length).toBe(want.length)
    got.forEach((g, i) => {
      expect(g.logp).toBe(want[i]!.logp)
      expect(g.tokens).toBe(want[i]!.tokens)
      expect(Array.from(g.tokenLogps)).toEqual(Array.from(want[i]!.tokenLogps))
      expect(g.logitsMean).toBeNaN()
      expect(Number.isFinite(want[i]!.logitsMean)).toBe(true)
    })
  })
})
