// The training loop against a fake engine (docs/reference/dpo-loss.md, docs/reference/trainer.md,
// docs/reference/hw6-run.md#the-run-in-order): the exact dpoAccumulate / optimizerStep sequence for the HW6 defaults,
// metrics.jsonl and steps.jsonl contents, the reference cache, clean cancellation and failures.
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  loadPreferenceData,
  preferencePairs,
  type PreferencePair,
} from '../../../src-main/services/data/preferenceFile'
import { promptText } from '../../../src-main/services/session/promptText'
import { resolveTrainParams, type TrainParamsInput } from '../../../src-shared/params/trainParams'
import { dpoTokenize } from '../../../src-main/services/tokenizer/dpoTokenize'
import { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'
import { loadAdapter } from '../../../src-main/services/training/adapterFiles'
import { randperm } from '../../../src-main/services/training/dataOrder'
import { round4 } from '../../../src-main/services/training/stepMetrics'
import { trainDpo, type TrainOptions } from '../../../src-main/services/training/trainer'
import type { MetricsRow, RunPhase, TrainProgress } from '../../../src-shared/run/runTypes'
import { tempDir } from '../../helpers/modelFixtures'
import { sharedPath } from '../../helpers/sharedPath'
import { FakeCancelToken, FakeModel, fakeLogp, fakeSession } from './fakeEngine'

const STORIES = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')
const METRIC_KEYS = [
  'step',
  'epoch',
  'loss',
  'grad_norm',
  'learning_rate',
  'rewards/chosen',
  'rewards/rejected',
  'rewards/accuracies',
  'rewards/margins',
  'logps/chosen',
  'logps/rejected',
  'logits/chosen',
  'logits/rejected',
  'elapsed_s',
  'pairs_per_s',
]

let tok: TextTokenizer
let hw6Pairs: PreferencePair[]

beforeAll(async () => {
  tok = await TextTokenizer.fromDir(STORIES)
  hw6Pairs = preferencePairs(await loadPreferenceData(HW6), { dataSize: 50, supportRatio: 0.1 })
})

const params = (input: TrainParamsInput = {}) => resolveTrainParams(input)

/** chosen ids (as the fake records them) -> pair index, by tokenizing exactly as the trainer does. */
function indexByChosen(pairs: PreferencePair[], p = params()): Map<string, number> {
  const m = new Map<string, number>()
  pairs.forEach((pair, i) => {
    const t = dpoTokenize(tok, promptText(tok, pair.prompt, { system: p.systemMessage }), pair.chosen, pair.rejected, {
      maxLength: p.maxLength,
      maxPromptLength: p.maxPromptLength,
    })
    m.set(t.chosen.ids.join(','), i)
  })
  expect(m.size).toBe(pairs.length)
  return m
}

interface Recorded {
  phases: RunPhase[]
  rows: MetricsRow[]
  progress: TrainProgress[]
  logs: string[]
}

function recorder(onRow?: (row: MetricsRow) => void): Recorded & { events: TrainOptions['events'] } {
  const r: Recorded = { phases: [], rows: [], progress: [], logs: [] }
  return {
    ...r,
    events: {
      phase: (p) => r.phases.push(p),
      metrics: (row) => {
        r.rows.push(row)
        onRow?.(row)
      },
      progress: (p) => r.progress.push(p),
      log: (l) => r.logs.push(l),
    },
  }
}

/** The logps calls of the reference pass: those before the adapter is attached. */
function referenceCalls(native: FakeModel) {
  const firstAttach = native.calls.findIndex((c) => c.kind === 'attachLora')
  return native.calls.slice(0, firstAttach < 0 ? undefined : firstAttach).filter((c) => c.kind === 'logps')
}

const readLines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l))

/** The fake's loss for a pair after `updates` real optimizer updates (beta 0.1): softplus(-0.1 * 0.75 * updates). */
const fakeLoss = (updates: number) => Math.log1p(Math.exp(-0.1 * 0.75 * updates))

describe('trainDpo with the HW6 defaults (50 pairs, batch 1, grad-accum 8, 1 epoch)', () => {
  let out: string
  let cache: string
  let native: FakeModel
  let rec: ReturnType<typeof recorder>
  let result: Awaited<ReturnType<typeof trainDpo>>

  beforeAll(async () => {
    out = tempDir('dpo-run-')
    cache = tempDir('dpo-cache-')
    const session = fakeSession(STORIES, tok)
    native = session.native
    rec = recorder()
    result = await trainDpo(session, hw6Pairs, params(), {
      outDir: out,
      events: rec.events,
      refCacheDir: cache,
      engineVersion: 'test',
      cancelTokenFactory: null,
    })
  })

  it('computes reference log-probs once per used pair with the adapter disabled, before attaching LoRA', () => {
    const logps = referenceCalls(native)
    expect(logps.every((c) => c.useAdapter === false)).toBe(true)
    // Nothing downstream reads the reference pass's logitsMean: the engine may skip its padding rows.
    expect(logps.every((c) => c.withLogitsMean === false)).toBe(true)
    expect(logps.reduce((a, c) => a + c.sequences, 0)).toBe(2 * 48) // pairs 40 and 9 are never used, so not scored here
    const firstAttach = native.calls.findIndex((c) => c.kind === 'attachLora')
    expect(native.calls.slice(0, firstAttach).every((c) => c.kind === 'logps')).toBe(true)
    expect(result.refComputed).toBe(48)
    expect(result.refCached).toBe(0)
  })

  it('attaches a fresh LoRA from the params: TRL disables dropout, the seed seeds A', () => {
    expect(native.callsOf('attachLora').map((c) => c.options)).toEqual([
      { targets: ['q_proj', 'v_proj'], r: 64, alpha: 16, dropout: 0, seed: 42 },
    ])
  })

  it('accumulates the micro-batches of randperm(50, 42) in order, 8 per optimizer step, with gradScale 1/8', () => {
    const byChosen = indexByChosen(hw6Pairs)
    const acc = native.callsOf('dpoAccumulate')
    expect(acc).toHaveLength(48)
    expect(acc.map((c) => byChosen.get(c.chosenIds[0]!))).toEqual(randperm(50, 42).slice(0, 48))
    expect(acc.slice(0, 8).map((c) => byChosen.get(c.chosenIds[0]!))).toEqual([42, 17, 30, 34, 20, 25, 0, 8])
    for (const c of acc) {
      expect(c.chosenIds).toHaveLength(1)
      expect(c.options).toEqual({ beta: 0.1, lossType: 'sigmoid', labelSmoothing: 0, gradScale: 1 / 8 })
    }
    // Reference values handed over are the adapter-disabled log-probs of the same sequences.
    const tk = dpoTokenize(tok, promptText(tok, hw6Pairs[42]!.prompt, {}), hw6Pairs[42]!.chosen, hw6Pairs[42]!.rejected)
    expect(acc[0]!.refs[0]).toEqual([fakeLogp(tk.chosen), fakeLogp(tk.rejected)])
    // The call pattern: 8 accumulates, then a step.
    const kinds = native.calls
      .filter((c) => c.kind === 'dpoAccumulate' || c.kind === 'optimizerStep')
      .map((c) => c.kind[0])
    expect(kinds.join('')).toBe('ddddddddo'.repeat(6))
  })

  it('sends a step in one call where the engine chains micro-batches, with the same results', async () => {
    const chained = new FakeModel()
    chained.chainedScoring = true
    const chainedOut = tempDir('dpo-chained-')
    await trainDpo(fakeSession(STORIES, tok, chained), hw6Pairs, params(), {
      outDir: chainedOut,
      refCacheDir: null,
      engineVersion: 'test',
      cancelTokenFactory: null,
    })
    expect(chained.callsOf('dpoAccumulateGroup').map((c) => c.microBatches)).toEqual([8, 8, 8, 8, 8, 8])
    const kinds = chained.calls
      .filter((c) => c.kind === 'dpoAccumulateGroup' || c.kind === 'optimizerStep')
      .map((c) => c.kind[0])
    expect(kinds.join('')).toBe('do'.repeat(6))
    // The fake runs a group as its micro-batches in turn: the same accumulates, losses and adapter as one call each.
    expect(chained.callsOf('dpoAccumulate')).toEqual(native.callsOf('dpoAccumulate'))
    const strip = (rows: Array<Record<string, unknown>>) =>
      rows.map(({ elapsed_s: _e, pairs_per_s: _p, ...rest }) => rest)
    const metrics = (dir: string) =>
      readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(strip(metrics(chainedOut))).toEqual(strip(metrics(out)))
  })

  it('steps the optimizer with the warmup/decay learning rates and the notebook AdamW settings', () => {
    const steps = native.callsOf('optimizerStep').map((c) => c.options)
    expect(steps.map((s) => s.lr)).toEqual([0, 2e-4, 2e-4 * 0.8, 2e-4 * 0.6, 2e-4 * 0.4, 2e-4 * 0.2])
    for (const s of steps)
      expect(s).toMatchObject({
        kind: 'paged_adamw_8bit',
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
        maxGradNorm: 1,
      })
  })

  it('writes one metrics.jsonl line per step with TRL names, rounded loss, logged lr and epoch', () => {
    const rows = readLines(path.join(out, 'metrics.jsonl')) as MetricsRow[]
    expect(rows).toHaveLength(6)
    expect(rows).toEqual(rec.rows)
    for (const r of rows) expect(Object.keys(r).sort()).toEqual([...METRIC_KEYS].sort())
    expect(rows.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6])
    expect(rows.map((r) => r.epoch)).toEqual([0.16, 0.32, 0.48, 0.64, 0.8, 0.96])
    expect(rows.map((r) => r.learning_rate)).toEqual([2e-4, 2e-4 * 0.8, 2e-4 * 0.6, 2e-4 * 0.4, 2e-4 * 0.2, 0])
    // Steps 1-2: the policy equals the reference (B = 0, and step 1 ran at lr 0): loss ln 2, zero rewards, accuracy 0.
    expect(rows[0]!.loss).toBe(0.6931)
    expect(rows[1]!.loss).toBe(0.6931)
    expect(rows[0]!['rewards/accuracies']).toBe(0)
    expect(rows[0]!['rewards/margins']).toBe(0)
    // Step k >= 3 ran after k-2 real updates.
    for (let k = 3; k <= 6; k++) {
      const r = rows[k - 1]!
      expect(r.loss).toBe(round4(fakeLoss(k - 2)))
      expect(r['rewards/accuracies']).toBe(1)
      expect(r['rewards/chosen']).toBeCloseTo(0.1 * 0.5 * (k - 2), 12)
      expect(r['rewards/rejected']).toBeCloseTo(-0.1 * 0.25 * (k - 2), 12)
      expect(r['rewards/margins']).toBeCloseTo(0.1 * 0.75 * (k - 2), 12)
    }
    expect(rows[0]!.grad_norm).toBe(1.08) // the fake's norm: 1 + micro-batches / 100
    expect(rows.every((r) => r.elapsed_s >= 0 && r.pairs_per_s > 0)).toBe(true)
  })

  it('averages per-micro-batch logps and logits means', () => {
    const acc = native.callsOf('dpoAccumulate').slice(0, 8)
    const meanRefChosen = acc.reduce((a, c) => a + c.refs[0]![0], 0) / 8
    expect(rec.rows[0]!['logps/chosen']).toBeCloseTo(meanRefChosen, 12)
    const meanLen = acc.reduce((a, c) => a + c.chosenIds[0]!.split(',').length, 0) / 8
    expect(rec.rows[0]!['logits/chosen']).toBeCloseTo(meanLen / 100, 12)
  })

  it('writes steps.jsonl: the pair ids and rows each step used', () => {
    const steps = readLines(path.join(out, 'steps.jsonl'))
    expect(steps).toHaveLength(6)
    const order = randperm(50, 42)
    expect(steps[0]).toMatchObject({ step: 1, epoch: 0.16, lr: 0 })
    steps.forEach((s, k) => {
      const rows = order.slice(8 * k, 8 * k + 8)
      expect(s.micro_batches.map((mb: { rows: number[] }) => mb.rows)).toEqual(rows.map((r) => [r]))
      expect(s.pair_ids).toEqual(rows.map((r) => hw6Pairs[r]!.id))
    })
  })

  it('saves the adapter in PEFT format with a training state, and a summary with TRL train_loss', () => {
    const a = loadAdapter(path.join(out, 'adapter'))
    expect(a.settings).toMatchObject({
      r: 64,
      alpha: 16,
      dropout: 0.1,
      targets: ['q_proj', 'v_proj'],
      baseModel: 'stories260K',
    })
    const b = a.tensors.find((t) => t.name.endsWith('q_proj.lora_B.weight'))!
    expect(b.data[0]).toBeCloseTo(2e-4 * 3, 9) // the fake adds each step's lr to B
    const state = JSON.parse(readFileSync(path.join(out, 'adapter', 'training_state.json'), 'utf8'))
    expect(state).toMatchObject({ status: 'completed', global_step: 6, max_steps: 6, epoch: 0.96 })
    const summary = JSON.parse(readFileSync(path.join(out, 'train_summary.json'), 'utf8'))
    const losses = [0, 0, 1, 2, 3, 4].map(fakeLoss)
    const trainLoss = losses.reduce((x, y) => x + y, 0) / 6
    expect(summary).toMatchObject({
      status: 'completed',
      global_step: 6,
      max_steps: 6,
      epoch: 0.96,
      adapter: 'adapter',
      pairs: 50,
      pairs_trained: 48,
    })
    expect(summary.train_loss).toBeCloseTo(trainLoss, 12)
    expect(summary.reference).toMatchObject({ pairs: 48, cached: 0, computed: 48 })
    expect(summary.peak_memory_bytes).toBe(4096)
    expect(result).toMatchObject({ status: 'completed', steps: 6, maxSteps: 6, adapterDir: path.join(out, 'adapter') })
    expect(result.trainLoss).toBeCloseTo(trainLoss, 12)
  })

  it('reports phases and progress with an ETA; leaves no temp files', () => {
    expect(rec.phases).toEqual(['reference', 'train', 'save'])
    const train = rec.progress.filter((p) => p.stage === 'train')
    expect(train.at(-1)).toMatchObject({ step: 6, totalSteps: 6, pairsDone: 48, pairsTotal: 48, etaS: 0 })
    expect(train.some((p) => p.etaS > 0)).toBe(true)
    const ref = rec.progress.filter((p) => p.stage === 'reference')
    expect(ref.at(-1)).toMatchObject({ pairsDone: 48, pairsTotal: 48 })
    expect(readdirSync(out).sort()).toEqual([
      '.dpo-studio-run',
      'adapter',
      'metrics.jsonl',
      'pairs.jsonl',
      'pairs_tokens.jsonl',
      'steps.jsonl',
      'train_summary.json',
    ])
  })

  it('serves the reference log-probs from the cache on a second run with the same data', async () => {
    const session = fakeSession(STORIES, tok)
    const out2 = tempDir('dpo-run-')
    const r2 = await trainDpo(session, hw6Pairs, params(), {
      outDir: out2,
      refCacheDir: cache,
      engineVersion: 'test',
      cancelTokenFactory: null,
    })
    expect(referenceCalls(session.native)).toHaveLength(0)
    expect(r2).toMatchObject({ refCached: 48, refComputed: 0, steps: 6 })
    expect(session.native.callsOf('dpoAccumulate').map((c) => c.refs)).toEqual(
      native.callsOf('dpoAccumulate').map((c) => c.refs),
    )
    expect(readFileSync(path.join(out2, 'metrics.jsonl'), 'utf8').split('\n').length).toBe(7)
    // The same pairs with chosen and rejected swapped (another support_ratio) are served too, sides exchanged back.
    const s3 = fakeSession(STORIES, tok)
    const swapped = hw6Pairs.slice(0, 8).map((p) => ({ ...p, chosen: p.rejected, rejected: p.chosen }))
    const r3 = await trainDpo(s3, swapped, params(), {
      outDir: tempDir(),
      refCacheDir: cache,
      engineVersion: 'test',
      cancelTokenFactory: null,
    })
    expect(referenceCalls(s3.native)).toHaveLength(0)
    expect(r3).toMatchObject({ refCached: 8, refComputed: 0 })
    const tk = dpoTokenize(tok, promptText(tok, swapped[0]!.prompt, {}), swapped[0]!.chosen, swapped[0]!.rejected)
    const acc = s3.native.callsOf('dpoAccumulate')
    const k = acc.flatMap((c) => c.chosenIds).indexOf(tk.chosen.ids.join(','))
    expect(acc.flatMap((c) => c.refs)[k]).toEqual([fakeLogp(tk.chosen), fakeLogp(tk.rejected)])
    // Other data misses the cache.
    const s4 = fakeSession(STORIES, tok)
    const other = hw6Pairs.slice(0, 4).map((p) => ({ ...p, chosen: `${p.chosen}!` }))
    await trainDpo(s4, other, params(), {
      outDir: tempDir(),
      refCacheDir: cache,
      engineVersion: 'test',
      cancelTokenFactory: null,
    })
    expect(referenceCalls(s4.native).reduce((a, c) => a + c.sequences, 0)).toBe(8)
  })
})

describe('other shapes of run', () => {
  it('batch 4, grad-accum 2: four pairs per call, gradScale 1/2, loss = mean over micro-batches', async () => {
    const pairs = hw6Pairs.slice(0, 20)
    const session = fakeSession(STORIES, tok)
    const out = tempDir()
    const r = await trainDpo(session, pairs, params({ batchSize: 4, gradAccum: 2, epochs: 2 }), {
      outDir: out,
      refCacheDir: null,
      engineVersion: 'test',
      cancelTokenFactory: null,
    })
    // 5 micro-batches per epoch, 2 updates per epoch, 4 steps; the 5th micro-batch of epoch 0 opens step 3.
    expect(r.steps).toBe(4)
    const byChosen = indexByChosen(pairs)
    const acc = session.native.callsOf('dpoAccumulate')
    expect(acc.map((c) => c.chosenIds.length)).toEqual([4, 4, 4, 4, 4, 4, 4, 4])
    expect(acc.every((c) => c.options.gradScale === 0.5)).toBe(true)
    const e0 = randperm(20, 42)
    const e1 = randperm(20, 43)
    expect(acc.map((c) => c.chosenIds.map((k) => byChosen.get(k)))).toEqual([
      e0.slice(0, 4),
      e0.slice(4, 8),
      e0.slice(8, 12),
      e0.slice(12, 16),
      e0.slice(16, 20),
      e1.slice(0, 4),
      e1.slice(4, 8),
      e1.slice(8, 12),
    ])
    const steps = readLines(path.join(out, 'steps.jsonl'))
    expect(steps[2].micro_batches.map((mb: { epoch: number; index: number }) => [mb.epoch, mb.index])).toEqual([
      [0, 4],
      [1, 0],
    ])
    expect(readLines(path.join(out, 'metrics.jsonl')).map((m) => m.epoch)).toEqual([0.4, 0.8, 1.2, 1.6])
    // Reference pass: every pair once, many pairs per call (a token budget, not the training batch size).
    const ref = referenceCalls(session.native).map((c) => (c as { sequences: number }).sequences)
    expect(ref.reduce((x, y) => x + y, 0)).toBe(40)
    expect(ref.length).toBeLessThan(10)
  })

  it('an epoch shorter than grad-accum: the step has 5 micro-batches and logs their loss sum / 8, as HF does', async () => {
    const session = fakeSession(STORIES, tok)
    const out = tempDir()
    const r = await trainDpo(session, hw6Pairs.slice(0, 5), params(), {
      outDir: out,
      refCacheDir: null,
      engineVersion: 'test',
      cancelTokenFactory: null,
    })
    expect(r.steps).toBe(1)
    expect(session.native.callsOf('dpoAccumulate')).toHaveLength(5)
    const [row] = readLines(path.join(out, 'metrics.jsonl'))
    // tr_loss sums L_j / gradient_accumulation_steps (docs/reference/trainer.md#loss-scaling-and-the-logged-loss), so 5
    // micro-batches at ln 2 log 5/8 ln 2.
    expect(row.loss).toBe(round4((5 / 8) * Math.LN2))
    expect(row.epoch).toBe(1)
    expect(row.learning_rate).toBe(0)
  })

  it('continues from an init adapter: attaches with its r/alpha/targets and loads its values', async () => {
    const first = tempDir()
    await trainDpo(fakeSession(STORIES, tok), hw6Pairs.slice(0, 16), params({ loraR: 8, loraAlpha: 32 }), {
      outDir: first,
      refCacheDir: null,
      engineVersion: 'test',
      cancelTokenFactory: null,
    })
    const saved = loadAdapter(path.join(first, 'adapter'))
    const session = fakeSession(STORIES, tok)
    const rec = recorder()
    const out = tempDir()
    await trainDpo(session, hw6Pairs.slice(0, 16), params(), {
      outDir: out,
      events: rec.events,
      initAdapter: path.join(first, 'adapter'),
      refCacheDir: null,
      engineVersion: 'test',
      cancelTokenFactory: null,
    })
    expect(session.native.callsOf('attachLora')[0]!.options).toMatchObject({
      r: 8,
      alpha: 32,
      targets: ['q_proj', 'v_proj'],
      dropout: 0,
    })
    const set = session.native.callsOf('setLoraTensors')
    expect(set).toHaveLength(1)
    expect(set[0]!.tensors.map((t) => Array.from(t.data))).toEqual(saved.tensors.map((t) => Array.from(t.data)))
    expect(rec.logs.some((l) => l.includes('using its r=8'))).toBe(true)
    expect(loadAdapter(path.join(out, 'adapter')).settings.r).toBe(8)
    const state = JSON.parse(readFileSync(path.join(out, 'adapter', 'training_state.json'), 'utf8'))
    expect(state.init_adapter).toBe(path.join(first, 'adapter'))
  })

  it('fails with the engine error code and records the failure', async () => {
    const session = fakeSession(STORIES, tok)
    session.native.beforeAccumulate = (n) => {
      if (n === 3) throw Object.assign(new Error('out of device memory'), { code: 'E_OOM' })
    }
    const out = tempDir()
    await expect(
      trainDpo(session, hw6Pairs.slice(0, 16), params(), {
        outDir: out,
        refCacheDir: null,
        engineVersion: 'test',
        cancelTokenFactory: null,
      }),
    ).rejects.toMatchObject({
      code: 'E_OOM',
      message: 'out of device memory',
    })
    expect(JSON.parse(readFileSync(path.join(out, 'train_summary.json'), 'utf8'))).toMatchObject({
      status: 'failed',
      error: 'out of device memory',
    })
    expect(existsSync(path.join(out, 'adapter'))).toBe(false)
  })

  it('rejects an empty pair list and names a pair that cannot be tokenized', async () => {
    const session = fakeSession(STORIES, tok)
    await expect(trainDpo(session, [], params(), { outDir: tempDir(), refCacheDir: null })).rejects.toThrow(
      /no training pairs/,
    )
    const p = params({ maxLength: 16, maxPromptLength: 8 })
    await expect(
      trainDpo(session, hw6Pairs.slice(0, 2), { ...p, maxPromptLength: 32 }, { outDir: tempDir(), refCacheDir: null }),
    ).rejects.toThrow(/^pair 1 \(id 1\): DPO tokenization option maxPromptLength is invalid/)
  })
})

describe('cancellation', () => {
  const opts = (out: string, signal: AbortSignal, extra: Partial<TrainOptions> = {}): TrainOptions => ({
    outDir: out,
    signal,
    refCacheDir: null,
    engineVersion: 'test',
    cancelTokenFactory: null,
    ...extra,
  })

  function expectNoPartialFiles(out: string) {
    expect(readdirSync(out).filter((f) => f.startsWith('.') && f !== '.dpo-studio-run')).toEqual([])
    for (const f of ['metrics.jsonl', 'steps.jsonl']) {
      const text = readFileSync(path.join(out, f), 'utf8')
      expect(text === '' || text.endsWith('\n')).toBe(true)
      readLines(path.join(out, f)) // every line parses
    }
    JSON.parse(readFileSync(path.join(out, 'train_summary.json'), 'utf8'))
  }

  it('between steps: keeps 3 complete steps, the adapter as of step 3, and says so', async () => {
    const controller = new AbortController()
    const session = fakeSession(STORIES, tok)
    const out = tempDir()
    const rec = recorder((row) => row.step === 3 && controller.abort())
    const r = await trainDpo(session, hw6Pairs, params(), opts(out, controller.signal, { events: rec.events }))
    expect(r).toMatchObject({ status: 'cancelled', steps: 3, maxSteps: 6, cancelledAtStep: 3, cancelledIn: 'train' })
    expect(session.native.callsOf('dpoAccumulate')).toHaveLength(24)
    expect(session.native.callsOf('optimizerStep')).toHaveLength(3)
    expect(readLines(path.join(out, 'metrics.jsonl')).map((m) => m.step)).toEqual([1, 2, 3])
    expect(readLines(path.join(out, 'steps.jsonl'))).toHaveLength(3)
    const state = JSON.parse(readFileSync(path.join(out, 'adapter', 'training_state.json'), 'utf8'))
    expect(state).toMatchObject({ status: 'cancelled', global_step: 3, cancelled_at_step: 3, max_steps: 6 })
    const b = loadAdapter(path.join(out, 'adapter')).tensors.find((t) => t.name.endsWith('lora_B.weight'))!
    expect(b.data[0]).toBeCloseTo(2e-4 + 1.6e-4, 9) // lrs of steps 1-3: 0, 2e-4, 1.6e-4
    expect(JSON.parse(readFileSync(path.join(out, 'train_summary.json'), 'utf8'))).toMatchObject({
      status: 'cancelled',
      global_step: 3,
      cancelled_at_step: 3,
    })
    expect(rec.logs.at(-1)).toBe('cancelled after 3 of 6 steps')
    expectNoPartialFiles(out)
  })

  it('inside a step: the engine call in flight is cancelled through the token and the unfinished step is dropped', async () => {
    const controller = new AbortController()
    const session = fakeSession(STORIES, tok)
    session.native.beforeAccumulate = (n) => n === 12 && controller.abort()
    const out = tempDir()
    const r = await trainDpo(
      session,
      hw6Pairs,
      params(),
      opts(out, controller.signal, { cancelTokenFactory: () => new FakeCancelToken() }),
    )
    expect(r).toMatchObject({ status: 'cancelled', steps: 1 })
    expect(session.native.callsOf('optimizerStep')).toHaveLength(1)
    expect(session.native.callsOf('dpoAccumulate')).toHaveLength(12)
    expect(readLines(path.join(out, 'metrics.jsonl'))).toHaveLength(1)
    expect(JSON.parse(readFileSync(path.join(out, 'adapter', 'training_state.json'), 'utf8')).cancelled_at_step).toBe(1)
    expectNoPartialFiles(out)
  })

  it('before the first step: no adapter, empty metrics, a cancelled summary; computed reference values are cached', async () => {
    const controller = new AbortController()
    const session = fakeSession(STORIES, tok)
    const cache = tempDir('dpo-cache-')
    const rec = recorder()
    // Abort once the reference pass has scored its first call's pairs.
    let first = 0
    rec.events!.progress = (p) => {
      if (p.stage !== 'reference' || first > 0) return
      first = p.pairsDone
      controller.abort()
    }
    const out = tempDir()
    const r = await trainDpo(
      session,
      hw6Pairs.slice(0, 16),
      params(),
      opts(out, controller.signal, { refCacheDir: cache, events: rec.events }),
    )
    expect(first).toBeGreaterThan(0)
    expect(first).toBeLessThan(16)
    expect(r).toMatchObject({
      status: 'cancelled',
      steps: 0,
      adapterDir: null,
      cancelledIn: 'reference',
      refComputed: first,
    })
    expect(existsSync(path.join(out, 'adapter'))).toBe(false)
    expect(readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')).toBe('')
    expect(session.native.callsOf('attachLora')).toHaveLength(0)
    expectNoPartialFiles(out)
    // The computed pairs are reused by the next run.
    const s2 = fakeSession(STORIES, tok)
    const r2 = await trainDpo(s2, hw6Pairs.slice(0, 16), params(), {
      outDir: tempDir(),
      refCacheDir: cache,
      engineVersion: 'test',
      cancelTokenFactory: null,
    })
    expect(r2).toMatchObject({ refCached: first, refComputed: 16 - first, status: 'completed' })
  })

  it('an already aborted signal stops before any engine work', async () => {
    const controller = new AbortController()
    controller.abort()
    const session = fakeSession(STORIES, tok)
    const r = await trainDpo(session, hw6Pairs, params(), opts(tempDir(), controller.signal))
    expect(r).toMatchObject({ status: 'cancelled', steps: 0 })
    expect(session.native.calls).toEqual([])
  })
})
