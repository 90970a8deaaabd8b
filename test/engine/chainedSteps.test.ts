// A training step's micro-batches in one engine call (model.dpoAccumulateGroup, docs/performance.md#chained-training-steps),
// through the real addon on the CPU: the same per-pair metrics as one dpoAccumulate call per micro-batch, bit for bit,
// and the same gradients up to float summation order (the step's gradient norm); malformed input names the
// micro-batch.
import { afterAll, describe, expect, it } from 'vitest'
import { loadAddon } from '../../src-main/addon/loadAddon'
import type { DpoPairInput, NativeModel } from '../../src-main/addon/addonTypes'
import { seeded } from '../helpers/exportFixtures'
import { sharedPath } from '../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')
const OPTIONS = { beta: 0.1, lossType: 'sigmoid' as const, labelSmoothing: 0, gradScale: 1 / 4 }

/** Four micro-batches of one pair: a common start (BOS and a shared instruction), then a prompt and two answers. */
function step(seed: number): DpoPairInput[][] {
  const rnd = seeded(seed)
  const ids = (n: number) => Array.from({ length: n }, () => 3 + Math.floor(rnd() * 509))
  const template = [1, ...ids(6)]
  return Array.from({ length: 4 }, (_, k) => {
    const prompt = [...template, ...ids(3 + k)]
    const seq = (answer: number[]) => {
      const all = [...prompt, ...answer, 2]
      return { ids: all, labels: all.map((id, i) => (i < prompt.length ? -100 : id)) }
    }
    return [{ chosen: seq(ids(4 + k)), rejected: seq(ids(7 - k)), refChosen: -30 - k, refRejected: -31 + k }]
  })
}

const models: NativeModel[] = []

async function fresh(): Promise<NativeModel> {
  const m = await loadAddon().loadModel(STORIES, { quant: 'nf4', backend: 'cpu' })
  m.attachLora({ targets: ['q_proj', 'v_proj'], r: 8, alpha: 16, dropout: 0, seed: 3 })
  // lora_B drawn away from zero, so that both factors get gradients.
  const rnd = seeded(9)
  m.setLoraTensors(
    m
      .loraTensors()
      .map((t) =>
        t.name.includes('lora_B') ? { ...t, data: Float32Array.from(t.data, () => (rnd() - 0.5) * 0.2) } : t,
      ),
  )
  models.push(m)
  return m
}

afterAll(() => models.forEach((m) => m.dispose()))

describe('dpoAccumulateGroup', () => {
  it('gives each micro-batch the metrics of its own call, and the same step', async () => {
    const micro = step(4)
    const one = await fresh()
    expect(one.info().chainedScoring).toBe(true)
    const want = []
    for (const mb of micro) want.push(await one.dpoAccumulate(mb, 0, OPTIONS))
    const group = await fresh()
    const got = await group.dpoAccumulateGroup(micro, 0, OPTIONS)
    expect(got).toEqual(want)
    const step1 = {
      kind: 'adamw' as const,
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
      maxGradNorm: 0,
    }
    const a = await one.optimizerStep(step1)
    const b = await group.optimizerStep(step1)
    expect(b.gradNorm).toBeGreaterThan(0)
    expect(Math.abs(b.gradNorm - a.gradNorm)).toBeLessThan(1e-3 * a.gradNorm)
  })

  it('names the micro-batch of a malformed pair', async () => {
    const m = await fresh()
    const micro = step(5)
    const bad = [micro[0]!, [{ ...micro[1]![0]!, refRejected: undefined as unknown as number }]]
    // Checked before the call starts, as dpoAccumulate's input is.
    expect(() => m.dpoAccumulateGroup(bad, 0, OPTIONS)).toThrow(/micro-batch 1 pair 0 needs refChosen and refRejected/)
    expect(() => m.dpoAccumulateGroup([micro[0]!, {} as unknown as DpoPairInput[]], 0, OPTIONS)).toThrow(
      /micro-batch 1 is not an array of pairs/,
    )
  })
})
