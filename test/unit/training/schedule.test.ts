// HF Trainer step math (docs/reference/trainer.md): step counts, linear warmup/decay, logged epochs, and which
// micro-batches make each optimizer step, including the carry-over across epochs and the tail rule for short epochs.
import { describe, expect, it } from 'vitest'
import { randperm } from '../../../src-main/services/training/dataOrder'
import {
  linearLambda,
  planSchedule,
  scheduleCounts,
  scheduleTotals,
  type ScheduleInput,
} from '../../../src-main/services/training/schedule'

const HW6: ScheduleInput = {
  numPairs: 50,
  batchSize: 1,
  gradAccum: 8,
  epochs: 1,
  warmupRatio: 0.1,
  learningRate: 2e-4,
  seed: 42,
}

const flat = (s: ReturnType<typeof planSchedule>['plan'][number]) => s.microBatches.flatMap((mb) => mb.pairs)

describe('HW6 defaults: 50 pairs, batch 1, grad-accum 8, 1 epoch, warmup 0.1', () => {
  const s = planSchedule(HW6)

  it('takes 6 steps with 1 warmup step', () => {
    expect(s.microBatchesPerEpoch).toBe(50)
    expect(s.updatesPerEpoch).toBe(6)
    expect(s.maxSteps).toBe(6)
    expect(s.warmupSteps).toBe(1) // ceil(6 * 0.1) = ceil(0.6000000000000001)
    expect(s.steps).toBe(6)
    expect(s.plan).toHaveLength(6)
  })

  it('uses lr 0, 2e-4, 1.6e-4, 1.2e-4, 8e-5, 4e-5 and logs 2e-4 ... 0', () => {
    const used = s.plan.map((p) => p.lr)
    const logged = s.plan.map((p) => p.loggedLr)
    ;[0, 2e-4, 1.6e-4, 1.2e-4, 8e-5, 4e-5].forEach((v, i) => expect(used[i]).toBeCloseTo(v, 15))
    ;[2e-4, 1.6e-4, 1.2e-4, 8e-5, 4e-5, 0].forEach((v, i) => expect(logged[i]).toBeCloseTo(v, 15))
    expect(used[0]).toBe(0)
    expect(logged[5]).toBe(0)
    // The same doubles the Python computes: 2e-4 * (4 / 5).
    expect(used[2]).toBe(2e-4 * (4 / 5))
  })

  it('logs epochs 0.16 ... 0.96', () => {
    expect(s.plan.map((p) => p.epoch)).toEqual([0.16, 0.32, 0.48, 0.64, 0.8, 0.96])
  })

  it('step 1 uses rows [42,17,30,34,20,25,0,8] one per micro-batch; pairs 40 and 9 are never used', () => {
    expect(flat(s.plan[0]!)).toEqual([42, 17, 30, 34, 20, 25, 0, 8])
    expect(s.plan[0]!.microBatches.map((mb) => mb.pairs.length)).toEqual([1, 1, 1, 1, 1, 1, 1, 1])
    const order = randperm(50, 42)
    s.plan.forEach((p, k) => expect(flat(p)).toEqual(order.slice(8 * k, 8 * k + 8)))
    expect(s.unusedPairs).toEqual([9, 40])
    expect(s.pairs).toBe(48)
    expect(scheduleTotals(HW6)).toMatchObject({ steps: 6, microBatches: 48, pairs: 48 })
  })
})

describe('linearLambda (get_linear_schedule_with_warmup)', () => {
  it('ramps up over the warmup steps then decays to 0', () => {
    expect([0, 1, 2, 3, 4].map((k) => linearLambda(k, 2, 4))).toEqual([0, 0.5, 1, 0.5, 0])
    expect(linearLambda(0, 0, 5)).toBe(1)
    expect(linearLambda(7, 1, 6)).toBe(0) // never negative
  })
})

describe('several epochs', () => {
  const s = planSchedule({ ...HW6, epochs: 2 })

  it('has 12 steps; leftover micro-batches of epoch 0 open step 7 (gradients are zeroed only after an update)', () => {
    expect(s.maxSteps).toBe(12)
    expect(s.warmupSteps).toBe(2) // ceil(1.2000000000000002)
    expect(s.plan).toHaveLength(12)
    const step7 = s.plan[6]!
    expect(step7.microBatches.map((mb) => [mb.epoch, mb.index])).toEqual([
      [0, 48],
      [0, 49],
      [1, 0],
      [1, 1],
      [1, 2],
      [1, 3],
      [1, 4],
      [1, 5],
    ])
    const e0 = randperm(50, 42)
    const e1 = randperm(50, 43)
    expect(flat(step7)).toEqual([...e0.slice(48), ...e1.slice(0, 6)])
    expect(step7.epoch).toBeCloseTo(1 + 6 / 50, 15)
    expect(s.plan[5]!.epoch).toBe(0.96)
    expect(s.plan[11]!.epoch).toBe(1 + 46 / 50)
    expect(s.unusedPairs).toEqual([]) // every pair is seen in one of the epochs
    expect(s.pairs).toBe(96)
  })

  it('uses warmup 2 of 12 steps', () => {
    expect(s.plan.slice(0, 3).map((p) => p.lr)).toEqual([0, 1e-4, 2e-4])
    expect(s.plan[11]!.loggedLr).toBe(0)
  })
})

describe('batch size > 1', () => {
  it('50 pairs, batch 4, grad-accum 2: 13 micro-batches (the last has 2 pairs), 6 steps, micro-batch 13 never runs', () => {
    const s = planSchedule({ ...HW6, batchSize: 4, gradAccum: 2 })
    expect(s.microBatchesPerEpoch).toBe(13)
    expect(s.maxSteps).toBe(6)
    const order = randperm(50, 42)
    expect(s.plan[0]!.microBatches.map((mb) => mb.pairs)).toEqual([order.slice(0, 4), order.slice(4, 8)])
    expect(s.plan[5]!.microBatches.map((mb) => mb.index)).toEqual([10, 11])
    expect(s.plan[5]!.epoch).toBe(12 / 13)
    expect(s.unusedPairs.sort((a, b) => a - b)).toEqual(order.slice(48).sort((a, b) => a - b))
  })

  it('a batch larger than the data gives one micro-batch with every pair', () => {
    const s = planSchedule({ ...HW6, numPairs: 5, batchSize: 8 })
    expect(s.microBatchesPerEpoch).toBe(1)
    expect(s.plan).toHaveLength(1)
    expect(s.plan[0]!.microBatches[0]!.pairs).toEqual(randperm(5, 42))
    expect(s.plan[0]!.epoch).toBe(1)
  })
})

describe('epochs shorter than grad-accum (is_last_step_and_steps_less_than_grad_acc)', () => {
  it('5 pairs, grad-accum 8, 2 epochs: step 1 = all of epoch 0, step 2 = the first 3 of epoch 1 (total % 8 == 0), then stop', () => {
    const input = { ...HW6, numPairs: 5, epochs: 2 }
    expect(scheduleCounts(input)).toEqual({ microBatchesPerEpoch: 5, updatesPerEpoch: 1, maxSteps: 2, warmupSteps: 1 })
    const s = planSchedule(input)
    expect(s.plan.map((p) => p.microBatches.map((mb) => `${mb.epoch}:${mb.index}`))).toEqual([
      ['0:0', '0:1', '0:2', '0:3', '0:4'],
      ['1:0', '1:1', '1:2'],
    ])
    expect(s.plan.map((p) => p.epoch)).toEqual([1, 1 + 3 / 5])
    expect(s.plan.map((p) => p.lr)).toEqual([0, 2e-4])
  })
})

describe('input checks', () => {
  it('rejects impossible inputs', () => {
    expect(() => planSchedule({ ...HW6, numPairs: 0 })).toThrow(/numPairs/)
    expect(() => planSchedule({ ...HW6, gradAccum: 1.5 })).toThrow(/gradAccum/)
    expect(() => planSchedule({ ...HW6, epochs: 0 })).toThrow(/epochs/)
  })
})
