// Grouping the reference pass into engine calls: in order, within the padded-token budget, every pair once.
import { describe, expect, it } from 'vitest'
import { REFERENCE_BATCH_MAX_PAIRS, referenceBatches } from '../../../src-main/services/training/referenceBatches'

describe('referenceBatches', () => {
  it('packs pairs in order while 2 x pairs x longest fits the budget', () => {
    const len = [100, 90, 120, 80, 300, 50]
    const batches = referenceBatches([0, 1, 2, 3, 4, 5], (i) => len[i]!, 1000)
    expect(batches).toEqual([[0, 1, 2, 3], [4], [5]])
    for (const b of batches) {
      const longest = Math.max(...b.map((i) => len[i]!))
      if (b.length > 1) expect(2 * b.length * longest).toBeLessThanOrEqual(1000)
    }
  })

  it('gives a pair longer than the budget a call of its own, and caps the pairs per call', () => {
    expect(referenceBatches([7, 8], () => 5000, 1000)).toEqual([[7], [8]])
    const many = Array.from({ length: 150 }, (_, i) => i)
    const batches = referenceBatches(many, () => 1, 1_000_000)
    expect(batches.map((b) => b.length)).toEqual([
      REFERENCE_BATCH_MAX_PAIRS,
      REFERENCE_BATCH_MAX_PAIRS,
      150 - 2 * REFERENCE_BATCH_MAX_PAIRS,
    ])
    expect(batches.flat()).toEqual(many)
  })

  it('returns nothing for no pairs', () => {
    expect(referenceBatches([], () => 10)).toEqual([])
  })
})
