// The bench:peers arithmetic: medians/ranges, the FLOP and byte floors at the issue-16 shapes, the log-prob check.
import { describe, expect, it } from 'vitest'
import {
  againstTarget,
  coldWarmRates,
  decodeBytesNf4,
  decodeBytesQ4_0,
  fastestThreadCount,
  forwardFlops,
  greedyParting,
  linearWeights,
  logpsAgree,
  roundRatios,
  spread,
  trainingFlops,
  trlRates,
} from '../../scripts/bench/peersMath'

const llama042b = { hidden: 896, layers: 24, heads: 14, kvHeads: 2, ffn: 4864, vocab: 32000 }

describe('bench:peers arithmetic', () => {
  it('takes medians and ranges of odd and even run counts', () => {
    expect(spread([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, runs: 3 })
    expect(spread([4, 1, 2, 3]).median).toBe(2.5)
    expect(() => spread([])).toThrow()
  })

  it("reads TRL's one run as pairs per second, and refuses a missing time", () => {
    expect(trlRates({ train_s: 4, reference_s: 2 }, 8)).toEqual({ train: 2, reference: 4 })
    expect(() => trlRates({ train_s: 4 }, 8)).toThrow(/peer_trl_dpo.py: reference_s is undefined/)
    expect(() => trlRates({ train_s: 0, reference_s: 2 }, 8)).toThrow(/train_s is 0/)
  })

  it('pairs the rounds of two engines', () => {
    expect(roundRatios([4, 3, 5], [2, 2, 2.5])).toEqual([2, 1.5, 2])
    expect(spread(roundRatios([4, 3, 5], [2, 2, 2.5])).median).toBe(2)
    expect(() => roundRatios([1, 2], [1])).toThrow(/2 rounds of ours, 1 of the peer/)
  })

  it("picks each engine's fastest thread count by median, the fewer threads on a tie", () => {
    // llama.cpp on the 2-core VM (BENCHMARKS.md, "Issue 16 where it ends"): slower on 2 threads than on 1
    const peer = new Map([
      [2, [44.0, 61.0, 55.6]],
      [1, [64.1, 65.1, 66.1]],
    ])
    expect(fastestThreadCount(peer)).toBe(1)
    expect(
      fastestThreadCount(
        new Map([
          [2, [87.4, 94.1, 89.9]],
          [1, [62.3, 58.6, 58.4]],
        ]),
      ),
    ).toBe(2)
    expect(
      fastestThreadCount(
        new Map([
          [4, [10, 30]],
          [2, [20, 20]],
        ]),
      ),
    ).toBe(2)
    expect(() => fastestThreadCount(new Map())).toThrow(/no thread counts/)
  })

  it('counts the 0.42B Llama weights and floors', () => {
    // per layer: q, o 896^2; k, v 896 x 128; gate, up, down 896 x 4864
    expect(linearWeights(llama042b)).toBe(24 * (2 * 896 * 896 + 2 * 896 * 128 + 3 * 896 * 4864))
    const p = { tokens: 150, scored: 60 }
    expect(forwardFlops(llama042b, p)).toBe(2 * linearWeights(llama042b) * 150 + 2 * 32000 * 896 * 60)
    expect(trainingFlops(llama042b, p)).toBe(2 * forwardFlops(llama042b, p))
    expect(decodeBytesNf4(llama042b) / 1e6).toBeCloseTo(241.9, 0)
    // llama.cpp's Q4_0 file: 18 bytes per 32 linear weights, the output matrix in Q8_0 (34 bytes per 32)
    expect(decodeBytesQ4_0(llama042b)).toBe(linearWeights(llama042b) * 0.5625 + 32000 * 896 * 1.0625)
  })

  it('compares greedy tokens, letting ours stop at an end token', () => {
    expect(greedyParting([5, 6, 7], [5, 6, 7], [2])).toBe(-1)
    expect(greedyParting([5, 9, 7], [5, 6, 7], [2])).toBe(1)
    expect(greedyParting([5, 2], [5, 2, 8, 8], [2])).toBe(-1)
    expect(greedyParting([5, 6], [5, 6, 8, 8], [2])).toBe(2)
    expect(greedyParting([], [5], [2])).toBe(0)
  })

  it('says whether a ratio meets its target', () => {
    expect(againstTarget(1.25, 1.1)).toBe('1.25 >= 1.1')
    expect(againstTarget(0.38, 1.1)).toBe('0.38 < 1.1')
    expect(againstTarget(null, 2)).toBe('-')
    expect(againstTarget(0.5, null)).toBe('0.50 (no target)')
    expect(againstTarget(null, null)).toBe('-')
  })

  it('reads the cold and warm pass rates, naming a missing or bad field', () => {
    const j = { train_s: 4, train_cold_s: 8, reference_s: 1, reference_cold_s: 2.5 }
    expect(coldWarmRates(j, 8, 'ours')).toEqual({ train: 2, trainCold: 1, reference: 8, referenceCold: 3.2 })
    const { train_cold_s: _, ...old } = j
    expect(() => coldWarmRates(old, 8, 'ours')).toThrow('ours: train_cold_s is undefined')
    expect(() => coldWarmRates({ ...j, reference_s: 0 }, 8, 'peer')).toThrow('peer: reference_s is 0')
    expect(() => coldWarmRates({ ...j, reference_cold_s: '2' }, 8, 'peer')).toThrow('reference_cold_s')
  })

  it('accepts equal log-probs and rejects a pair that differs', () => {
    const a = [
      [-315.3411865, -396.7592163],
      [-402.343994, -351.928009],
    ]
    expect(
      logpsAgree(a, [
        [-315.341166, -396.759244],
        [-402.343985, -351.928057],
      ]).ok,
    ).toBe(true)
    expect(
      logpsAgree(a, [
        [-315.341166, -396.759244],
        [-402.2, -351.928057],
      ]).ok,
    ).toBe(false)
    expect(logpsAgree(a, a.slice(0, 1)).ok).toBe(false)
    expect(logpsAgree([], []).ok).toBe(false)
  })
})
