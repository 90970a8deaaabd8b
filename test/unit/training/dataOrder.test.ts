// Data order (docs/reference/trainer.md#data-order): std::mt19937 outputs, torch.randperm with a seeded CPU generator,
// accelerate's per-epoch seed.
import { describe, expect, it } from 'vitest'
import { MT19937, epochOrder, randperm } from '../../../src-main/services/training/dataOrder'

/** randperm(50, seed 42): the HW6 run's order (docs/reference/trainer.md#data-order). */
const HW6_ORDER = [
  42, 17, 30, 34, 20, 25, 0, 8, 36, 18, 28, 39, 3, 2, 41, 1, 37, 6, 14, 12, 11, 32, 43, 16, 5, 38, 31, 44, 26, 45, 15,
  47, 4, 10, 21, 19, 33, 27, 13, 48, 46, 23, 22, 35, 7, 24, 49, 29, 40, 9,
]

describe('MT19937', () => {
  it('matches std::mt19937: the 10000th output for the default seed 5489 is 4123659995 (C++11 [rand.predef])', () => {
    const g = new MT19937(5489)
    let x = 0
    for (let i = 0; i < 10000; i++) x = g.nextUint32()
    expect(x).toBe(4123659995)
  })

  it('gives the first outputs of mt19937(42) (numpy RandomState(42).randint(2**32) agrees)', () => {
    const g = new MT19937(42)
    expect([g.nextUint32(), g.nextUint32(), g.nextUint32()]).toEqual([1608637542, 3421126067, 4083286876])
  })

  it('keeps the low 32 bits of the seed and rejects negative seeds', () => {
    expect(() => new MT19937(-1)).toThrow(RangeError)
    const a = new MT19937(2 ** 32 + 7)
    const b = new MT19937(7)
    expect(a.nextUint32()).toBe(b.nextUint32())
  })
})

describe('randperm (torch randperm_cpu)', () => {
  it('randperm(10, 42) is the well-known torch output', () => {
    expect(randperm(10, 42)).toEqual([2, 6, 1, 8, 4, 5, 0, 9, 3, 7])
  })

  it('randperm(50, 42) is the order of the HW6 run', () => {
    expect(randperm(50, 42)).toEqual(HW6_ORDER)
  })

  it('is a permutation for any size, and trivial for 0 and 1', () => {
    expect(randperm(0, 1)).toEqual([])
    expect(randperm(1, 1)).toEqual([0])
    const p = randperm(1000, 7)
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
  })
})

describe('epochOrder (accelerate SeedableRandomSampler)', () => {
  it('epoch e uses seed + e', () => {
    expect(epochOrder(50, 42, 0)).toEqual(HW6_ORDER)
    expect(epochOrder(50, 42, 1)).toEqual(randperm(50, 43))
    expect(epochOrder(50, 42, 1)).not.toEqual(HW6_ORDER)
  })
})
