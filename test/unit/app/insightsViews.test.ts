// @vitest-environment happy-dom
// The pair inspector's pieces in the DOM: the token heat map (one span per token, its change as title and data, the
// largest changes listed), the pairs store fetching both runs' tokens for the selected pair, and the sweep form's
// ratio parsing.
import { mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import type { PairInsightRow, PairTokensRow, RunPairs, TokenSide } from '../../../src-shared/api/contract'
import { setApi } from '../../../src-renderer/src/api/client'
import PairsTokenHeat from '../../../src-renderer/src/components/pairs/PairsTokenHeat.vue'
import { usePairsStore } from '../../../src-renderer/src/stores/pairs'
import { parseRatios } from '../../../src-renderer/src/stores/sweep'
import { fakeApi } from './fakeApi'

const side: TokenSide = {
  ids: [10, 11, 12, 2],
  text: ['禁', '車', '能', '</s>'],
  ref: [-0.01, -0.02, -0.69, -0.001],
  trained: [-0.01, -0.03, -2.09, -0.002],
}

beforeEach(() => setActivePinia(createPinia()))

describe('PairsTokenHeat', () => {
  it('shows each token as split, coloured by its change, with both values in its title', () => {
    const w = mount(PairsTokenHeat, { props: { side, label: 'chosen · support', scale: 1.4 } })
    const toks = w.findAll('[data-testid="heat-token"]')
    expect(toks.map((t) => t.text())).toEqual(['禁', '車', '能', '</s>'])
    expect(Number(toks[2]!.attributes('data-delta'))).toBeCloseTo(-1.4, 12)
    expect(toks[2]!.attributes('title')).toContain('log-prob -0.6900 before, -2.0900 after, change -1.4000')
    expect(toks[2]!.attributes('style')).toContain('rgba(217, 45, 32')
    expect(w.findAll('[data-testid="heat-top"]')[0]!.text()).toContain('“能” -1.4000')
    expect(w.text()).toContain('4 tokens')
  })
})

describe('pairs store', () => {
  it('loads a run, compares with another, and fetches the selected pair of both', async () => {
    const row = {
      index: 0,
      id: 1,
      margin: 0.2,
      prompt: 'p',
      chosen: 'c',
      rejected: 'r',
      correct_before: false,
      correct_after: true,
      seen: 1,
    } as PairInsightRow
    const runs: Record<string, RunPairs> = {
      a: { runId: 'a', dir: '/r/a', beta: 0.1, lossType: 'sigmoid', pairs: [row], answers: [] },
      b: { runId: 'b', dir: '/r/b', beta: 0.1, lossType: 'sigmoid', pairs: [{ ...row, margin: -0.1 }], answers: [] },
    }
    const tokens = (run: string): PairTokensRow => ({
      index: 0,
      id: 1,
      chosen: { ...side, ids: [run === 'a' ? 1 : 2] },
      rejected: side,
    })
    const f = fakeApi({
      runPairs: (i: { run: string }) => runs[i.run],
      runPairTokens: (i: { run: string }) => tokens(i.run),
    })
    setApi(f.api)
    const pairs = usePairsStore()
    await pairs.open('a')
    await pairs.compareWith('b')
    expect(pairs.rows.map((r) => [r.a.margin, r.b?.margin])).toEqual([[0.2, -0.1]])
    await pairs.select(0)
    expect([pairs.tokensA?.chosen.ids, pairs.tokensB?.chosen.ids]).toEqual([[1], [2]])
    expect(pairs.summaryA).toMatchObject({ flipped: 1, pairs: 1 })
    await pairs.compareWith(null)
    expect(pairs.tokensB).toBeNull()
  })
})

describe('sweep ratios', () => {
  it('reads a comma or space separated list into sorted unique ratios, or says what is wrong', () => {
    expect(parseRatios('1, 0,0.5 0.5')).toEqual([0, 0.5, 1])
    expect(parseRatios('0, 2')).toBe('“2” is not a number between 0 and 1.')
    expect(parseRatios('  ')).toBe('Enter at least one support_ratio.')
  })
})
