// Grouping the reference pass by packed length: every pair once, shortest first, within the token budget, the pair
// cap and the padding bound; the packed length as the engine lays a pair out.
import { describe, expect, it } from 'vitest'
import { REFERENCE_BATCH_MAX_PAIRS } from '../../../src-main/services/training/referenceBatches'
import {
  REFERENCE_MAX_PADDING,
  packedRows,
  referenceGroups,
  referenceMaxPadding,
  sharedPrefixLength,
} from '../../../src-main/services/training/referenceGroups'

describe('sharedPrefixLength / packedRows', () => {
  it('counts the leading ids both answers share, leaving each answer a position of its own', () => {
    expect(sharedPrefixLength([1, 2, 3, 4], [1, 2, 9])).toBe(2)
    expect(sharedPrefixLength([5, 6], [7, 6])).toBe(0)
    // One answer a prefix of the other: the shorter keeps its last position.
    expect(sharedPrefixLength([1, 2, 3], [1, 2, 3, 4, 5])).toBe(2)
    expect(sharedPrefixLength([1, 2], [1, 2])).toBe(1)
  })

  it('is both sequences in one tight row, the shared prefix once (no padding inside the row)', () => {
    // Prompt 3, answers 2 and 4 tokens: 5 + 7 - 3.
    expect(packedRows({ chosen: { ids: [1, 2, 3, 8, 9] }, rejected: { ids: [1, 2, 3, 4, 5, 6, 7] } })).toBe(9)
    // Nothing shared: both sequences whole.
    expect(packedRows({ chosen: { ids: [1, 2] }, rejected: { ids: [3, 4, 5] } })).toBe(5)
    // One answer a prefix of the other: the shorter keeps its last position.
    expect(packedRows({ chosen: { ids: [1, 2, 3] }, rejected: { ids: [1, 2, 3, 4, 5] } })).toBe(6)
  })
})

describe('referenceGroups', () => {
  it('sorts by length and closes a call before its padding passes the bound', () => {
    const rows = [120, 100, 104, 131, 109, 100, 200]
    const groups = referenceGroups([0, 1, 2, 3, 4, 5, 6], (i) => rows[i]!, 100_000, 0.1)
    expect(groups).toEqual([[1, 5, 2, 4], [0, 3], [6]])
    for (const g of groups) {
      const r = g.map((i) => rows[i]!)
      expect(Math.max(...r)).toBeLessThanOrEqual(1.1 * Math.min(...r))
    }
    expect(groups.flat().sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6])
  })

  it('keeps pairs x longest row within the budget, gives a longer pair its own call, and caps the pairs', () => {
    const groups = referenceGroups([0, 1, 2, 3, 4], () => 300, 1000)
    expect(groups).toEqual([
      [0, 1, 2],
      [3, 4],
    ])
    expect(referenceGroups([7, 8], () => 5000, 1000)).toEqual([[7], [8]])
    const many = Array.from({ length: 150 }, (_, i) => i)
    expect(referenceGroups(many, () => 1, 1_000_000).map((g) => g.length)).toEqual([
      REFERENCE_BATCH_MAX_PAIRS,
      REFERENCE_BATCH_MAX_PAIRS,
      150 - 2 * REFERENCE_BATCH_MAX_PAIRS,
    ])
  })

  it('groups by the budget alone on an engine that chains a call without padding', () => {
    expect(referenceMaxPadding(true)).toBe(Infinity)
    expect(referenceMaxPadding(false)).toBe(REFERENCE_MAX_PADDING)
    const rows = [120, 100, 104, 131, 109, 100, 200]
    const all = [0, 1, 2, 3, 4, 5, 6]
    expect(referenceGroups(all, (i) => rows[i]!, 100_000, referenceMaxPadding(true))).toEqual([[1, 5, 2, 4, 0, 3, 6]])
    // The budget still closes calls: 4 x 131 > 500.
    expect(referenceGroups(all, (i) => rows[i]!, 500, referenceMaxPadding(true))).toEqual([[1, 5, 2, 4], [0, 3], [6]])
  })

  it('returns nothing for no pairs', () => {
    expect(referenceGroups([], () => 10)).toEqual([])
  })
})
