// The pair inspector's table logic and the heat map's arithmetic (renderer libs): filters, search, sorting with
// missing values last, the compared run's column, the summary counts, colours on a shared scale.
import { describe, expect, it } from 'vitest'
import type { PairInsightRow, TokenSide } from '../../../src-shared/insights/insightTypes'
import { keepPair, pairOutcome, pairSummary, pairTableRows } from '../../../src-renderer/src/lib/pairTable'
import { heatColor, heatScale, heatTokens, largestChanges, tokenLabel } from '../../../src-renderer/src/lib/tokenHeat'

function pair(
  index: number,
  margin: number | null,
  before: boolean,
  after: boolean,
  seen = 1,
  prompt = `問題 ${index}`,
): PairInsightRow {
  return {
    index,
    id: index + 1,
    prompt,
    chosen: `好 ${index}`,
    rejected: `壞 ${index}`,
    position: index % 2 ? 'oppose' : 'support',
    chosen_tokens: 3,
    rejected_tokens: 3,
    chosen_logp_ref: -1,
    rejected_logp_ref: -1,
    chosen_logp_trained: -1,
    rejected_logp_trained: -1,
    reward_chosen: 0,
    reward_rejected: 0,
    margin,
    logratio_ref: before ? 1 : -1,
    logratio_trained: after ? 1 : -1,
    correct_before: before,
    correct_after: after,
    seen,
  }
}

const A = [
  pair(0, 0.3, false, true),
  pair(1, -0.2, true, false),
  pair(2, null, false, false, 0),
  pair(3, 0.0001, true, true, 2, 'air 空氣'),
  pair(4, 0.5, false, false),
]

describe('pair table', () => {
  it('names each ranking outcome and filters by it', () => {
    expect(A.map(pairOutcome)).toEqual(['flipped', 'got-worse', 'still-wrong', 'stayed-right', 'still-wrong'])
    const by = (f: Parameters<typeof keepPair>[1]) => A.filter((p) => keepPair(p, f)).map((p) => p.index)
    expect(by('flipped')).toEqual([0])
    expect(by('still-wrong')).toEqual([1, 2, 4])
    expect(by('got-worse')).toEqual([1])
    expect(by('already-right')).toEqual([1, 3])
    expect(by('never-seen')).toEqual([2])
    expect(by('no-move')).toEqual([2, 3])
    expect(by('all')).toHaveLength(5)
  })

  it('sorts by margin (largest gain first), missing values last, ties by position; searches text and ids', () => {
    const rows = (o: Partial<Parameters<typeof pairTableRows>[2]>) =>
      pairTableRows(A, null, { filter: 'all', query: '', sortKey: 'margin', sortDir: 'desc', ...o }).map(
        (r) => r.a.index,
      )
    expect(rows({})).toEqual([4, 0, 3, 1, 2])
    expect(rows({ sortDir: 'asc' })).toEqual([1, 3, 0, 4, 2])
    expect(rows({ sortKey: 'seen' })).toEqual([3, 0, 1, 4, 2])
    expect(rows({ query: '空氣' })).toEqual([3])
    expect(rows({ query: '壞 4' })).toEqual([4])
    expect(rows({ filter: 'still-wrong', sortKey: 'index', sortDir: 'asc' })).toEqual([1, 2, 4])
  })

  it('joins the compared run by position and sorts by its margin', () => {
    const B = A.map((p) => ({ ...p, margin: p.index === 2 ? 0.9 : -p.index }))
    const rows = pairTableRows(A, B, { filter: 'all', query: '', sortKey: 'marginB', sortDir: 'desc' })
    expect(rows.map((r) => r.a.index)).toEqual([2, 0, 1, 3, 4])
    expect(rows[0]!.b!.margin).toBe(0.9)
  })

  it('counts what the summary shows', () => {
    expect(pairSummary(A)).toEqual({
      pairs: 5,
      rightBefore: 2,
      rightAfter: 2,
      flipped: 1,
      gotWorse: 1,
      stillWrong: 3,
      neverSeen: 1,
      meanMargin: (0.3 - 0.2 + 0.0001 + 0.5) / 4,
    })
  })
})

describe('token heat', () => {
  const side: TokenSide = {
    ids: [5, 6, 7, 2],
    text: ['能', '', '減', '</s>'],
    ref: [-0.5, -1, -2, null],
    trained: [-0.1, -1.5, -2, -0.3],
  }

  it('gives each token its change, null where a log-prob is −∞', () => {
    expect(heatTokens(side).map((t) => t.delta)).toEqual([-0.1 - -0.5, -0.5, 0, null])
    expect(largestChanges(heatTokens(side), 2).map((t) => t.text)).toEqual(['', '能'])
  })

  it('colours on one scale for the answers shown together: green up, red down, stronger with size', () => {
    const other: TokenSide = { ids: [1], text: ['x'], ref: [-3], trained: [-1] }
    expect(heatScale([side, other, null])).toBe(2)
    expect(heatScale([])).toBe(0.01)
    expect(heatColor(2, 2)).toBe('rgba(15, 157, 107, 0.850)')
    expect(heatColor(-0.5, 2)).toBe('rgba(217, 45, 32, 0.425)')
    expect(heatColor(0, 2)).toBe('rgba(15, 157, 107, 0.000)')
    expect(heatColor(null, 2)).toMatch(/^rgba\(139/)
  })

  it('writes tokens that add no text as a dot and line breaks as ↵', () => {
    expect([tokenLabel(''), tokenLabel('a\nb'), tokenLabel('車')]).toEqual(['·', 'a↵b', '車'])
  })
})
