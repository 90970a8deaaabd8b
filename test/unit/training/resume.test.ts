// Resume against a fake engine (docs/resume.md): a run cancelled mid-step continues from its checkpoint with exactly
// the calls, learning rates, metrics and adapter of the run that never stopped; the checkpoint file round-trips and
// refuses damage; logs are cut back to the checkpoint; and resuming refuses changed data, parameters and models.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import type { TrainingState } from '../../../src-main/addon/addonTypes'
import {
  loadPreferenceData,
  preferencePairs,
  type PreferencePair,
} from '../../../src-main/services/data/preferenceFile'
import { resolveTrainParams, type TrainParamsInput } from '../../../src-shared/params/trainParams'
import { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'
import { encodeSafetensors } from '../../../src-main/services/training/adapterFiles'
import {
  CHECKPOINT_FILE,
  decodeCheckpoint,
  encodeCheckpoint,
  readCheckpoint,
  readCheckpointState,
  writeCheckpoint,
  type Checkpoint,
} from '../../../src-main/services/training/checkpoint'
import { resumeNotebook, runNotebook, type NotebookDeps } from '../../../src-main/services/training/notebookRun'
import { planResume, resumeInfo } from '../../../src-main/services/training/resume'
import { truncateStepLog } from '../../../src-main/services/training/stepLog'
import { trainDpo } from '../../../src-main/services/training/trainer'
import { copyStories, tempDir } from '../../helpers/modelFixtures'
import { sharedPath } from '../../helpers/sharedPath'
import { FakeCancelToken, FakeModel, fakeSession } from './fakeEngine'

const STORIES = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')
let tok: TextTokenizer
let pairs: PreferencePair[]

beforeAll(async () => {
  tok = await TextTokenizer.fromDir(STORIES)
  pairs = preferencePairs(await loadPreferenceData(HW6), { dataSize: 20, supportRatio: 0.1 })
})

// 20 pairs, grad-accum 2: 10 steps; checkpoints every 3.
const params = (extra: TrainParamsInput = {}) =>
  resolveTrainParams({ dataSize: 20, gradAccum: 2, checkpointEvery: 3, ...extra })
const readText = (...p: string[]) => readFileSync(path.join(...p), 'utf8')
const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
/** metrics rows without the wall-clock fields (elapsed_s, pairs_per_s), which no two runs share. */
const numbers = (file: string) => lines(file).map(({ elapsed_s: _e, pairs_per_s: _p, ...rest }) => rest)

function train(
  out: string,
  native: FakeModel,
  opts: { signal?: AbortSignal; resume?: { checkpoint: Checkpoint | null }; p?: ReturnType<typeof params> } = {},
) {
  return trainDpo(fakeSession(STORIES, tok, native), pairs, opts.p ?? params(), {
    outDir: out,
    refCacheDir: null,
    engineVersion: 'test',
    cancelTokenFactory: null,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.resume ? { resume: opts.resume } : {}),
  })
}

describe('trainDpo: cancel, then resume from the checkpoint', () => {
  let whole: string
  let stopped: string
  let full: FakeModel
  let first: FakeModel
  let second: FakeModel

  beforeAll(async () => {
    whole = tempDir('dpo-whole-')
    full = new FakeModel()
    await train(whole, full)

    // Cancel in the middle of step 5 (after its first micro-batch): the checkpoint holds step 4.
    stopped = tempDir('dpo-stopped-')
    first = new FakeModel()
    const ac = new AbortController()
    first.beforeAccumulate = (n) => {
      if (n === 9) ac.abort()
    }
    const r = await train(stopped, first, { signal: ac.signal })
    expect(r).toMatchObject({ status: 'cancelled', steps: 4 })
  })

  it('writes a whole checkpoint at the cancel: step, data position, scheduler, optimizer, accumulators', () => {
    const c = readCheckpoint(stopped)!
    expect(c.state).toMatchObject({
      global_step: 4,
      max_steps: 10,
      epoch: 0.4,
      data_position: { epoch: 0, micro_batch: 7, micro_batches_per_epoch: 20 },
      scheduler: { step: 4 },
      optimizer: { kind: 'paged_adamw_8bit', tensors: [{ name: 'fake', layout: 'adamw', step: 4, numel: 1 }] },
      dropout_rng: 'fake-rng 4',
      adapter: { r: 64, alpha: 16, targets: ['q_proj', 'v_proj'] },
      accumulators: { pairs_done: 8 },
      params: params(),
    })
    expect(c.state.accumulators.step_losses).toHaveLength(4)
    expect(c.state.scheduler.next_lr).toBe(lines(path.join(whole, 'metrics.jsonl'))[3]!.learning_rate)
    expect(c.training.tensors[0]!.m).toEqual(Float32Array.of(3)) // 3 real updates (step 1 ran at lr 0)
    expect(c.lora.map((t) => t.name)).toEqual(first.loraTensors().map((t) => t.name))
    expect(lines(path.join(stopped, 'metrics.jsonl'))).toHaveLength(4)
  })

  it('continues with exactly the rest of the uninterrupted run', async () => {
    second = new FakeModel()
    const logs: string[] = []
    const r = await trainDpo(fakeSession(STORIES, tok, second), pairs, params(), {
      outDir: stopped,
      refCacheDir: null,
      engineVersion: 'test',
      cancelTokenFactory: null,
      resume: { checkpoint: readCheckpoint(stopped) },
      events: { log: (l) => logs.push(l) },
    })
    expect(r).toMatchObject({ status: 'completed', steps: 10 })
    expect(logs).toContain('resuming from the checkpoint at step 4 of 10')
    // The engine got the checkpoint's state, then the micro-batches and learning rates of steps 5-10.
    expect(second.callsOf('importTrainingState')).toHaveLength(1)
    const tail = <T>(xs: T[], n: number) => xs.slice(xs.length - n)
    expect(second.callsOf('dpoAccumulate')).toEqual(tail(full.callsOf('dpoAccumulate'), 12))
    expect(second.callsOf('optimizerStep')).toEqual(tail(full.callsOf('optimizerStep'), 6))
    expect(second.loraTensors()).toEqual(full.loraTensors())
    // Same logs (no step twice), same adapter, same summary numbers; the checkpoint is gone once training completed.
    expect(numbers(path.join(stopped, 'metrics.jsonl'))).toEqual(numbers(path.join(whole, 'metrics.jsonl')))
    expect(readText(stopped, 'steps.jsonl')).toBe(readText(whole, 'steps.jsonl'))
    expect(readFileSync(path.join(stopped, 'adapter/adapter_model.safetensors'))).toEqual(
      readFileSync(path.join(whole, 'adapter/adapter_model.safetensors')),
    )
    const [a, b] = [whole, stopped].map((d) => JSON.parse(readText(d, 'train_summary.json')) as Record<string, unknown>)
    for (const k of ['global_step', 'train_loss', 'pairs_trained', 'data_fingerprint', 'epoch'])
      expect(b![k], k).toEqual(a![k])
    expect(existsSync(path.join(stopped, CHECKPOINT_FILE))).toBe(false)
    // elapsed_s continues from the checkpoint's training time instead of starting over.
    const el = lines(path.join(stopped, 'metrics.jsonl')).map((m) => m.elapsed_s as number)
    expect(el[4]).toBeGreaterThanOrEqual(el[3]!)
  })

  it('writes periodic checkpoints every checkpointEvery steps, never after the last step', async () => {
    const out = tempDir('dpo-periodic-')
    const seen: number[] = []
    const native = new FakeModel()
    native.beforeAccumulate = () => {
      const s = readCheckpointState(out)?.global_step
      if (s !== undefined && !seen.includes(s)) seen.push(s)
    }
    await train(out, native)
    expect(seen).toEqual([3, 6, 9])
    expect(existsSync(path.join(out, CHECKPOINT_FILE))).toBe(false)
  })

  it('refuses a checkpoint of other parameters before touching the logs', async () => {
    const out = tempDir('dpo-mismatch-')
    const ac = new AbortController()
    const native = new FakeModel()
    native.beforeAccumulate = (n) => n === 9 && ac.abort()
    await train(out, native, { signal: ac.signal })
    const before = readText(out, 'metrics.jsonl')
    const c = readCheckpoint(out)!
    await expect(
      train(out, new FakeModel(), { resume: { checkpoint: c }, p: params({ beta: 0.2 }) }),
    ).rejects.toMatchObject({
      code: 'E_RESUME_MISMATCH',
      message: expect.stringMatching(
        /checkpoint\.safetensors: it was written with other parameters \(beta: 0\.2 for this run, 0\.1 in the checkpoint\)/,
      ),
    })
    await expect(
      train(out, new FakeModel(), { resume: { checkpoint: c }, p: params({ dataSize: 18 }) }),
    ).rejects.toMatchObject({ code: 'E_RESUME_MISMATCH' })
    expect(readText(out, 'metrics.jsonl')).toBe(before)
  })
})

describe('checkpoint file', () => {
  const training: TrainingState = {
    optimizer: 'paged_adamw_8bit',
    dropoutRng: '5489 1 2 3',
    tensors: [
      {
        name: 'a',
        layout: 'bnb8_blockwise',
        step: 7,
        numel: 4096,
        state1: new Uint8Array(4096).map((_, i) => i % 251),
        state2: new Uint8Array(4096).fill(3),
        absmax1: Float32Array.of(0.5, 0.25),
        absmax2: Float32Array.of(1e-9, 2e-9),
      },
      { name: 'b', layout: 'bnb32', step: 7, numel: 3, m: Float32Array.of(1, -2, 3), v: Float32Array.of(4, 5, 6) },
    ],
  }
  const checkpoint = (): Checkpoint => ({
    lora: [
      {
        name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
        shape: [2, 3],
        data: Float32Array.of(1, 2, 3, 4, 5, -6.5),
      },
    ],
    training,
    state: {
      global_step: 7,
      max_steps: 9,
      optimizer: {
        kind: 'paged_adamw_8bit',
        tensors: training.tensors.map(({ name, layout, step, numel }) => ({ name, layout, step, numel })),
      },
      dropout_rng: training.dropoutRng,
    } as Checkpoint['state'],
  })

  it('round-trips LoRA tensors, 8-bit codes with block scales and fp32 state exactly', () => {
    const back = decodeCheckpoint(encodeCheckpoint(checkpoint()), 'c.safetensors')
    expect(back.lora).toEqual(checkpoint().lora)
    expect(back.training).toEqual(training)
    expect(back.state.global_step).toBe(7)
  })

  it('refuses a damaged, truncated or foreign file, naming it', () => {
    const bytes = Buffer.from(encodeCheckpoint(checkpoint()))
    const damaged = Buffer.from(bytes)
    damaged[damaged.length - 5]! ^= 1
    expect(() => decodeCheckpoint(damaged, 'c.safetensors')).toThrow(
      /c\.safetensors: the tensor data does not match the checksum/,
    )
    expect(() => decodeCheckpoint(bytes.subarray(0, bytes.length - 8), 'c.safetensors')).toThrow(
      /c\.safetensors: tensor .* lies outside/,
    )
    const adapter = encodeSafetensors([{ name: 'w', shape: [1], data: Float32Array.of(1) }])
    expect(() => decodeCheckpoint(adapter, 'adapter.safetensors')).toThrow(
      /adapter\.safetensors: not a DPO Studio checkpoint/,
    )
  })

  it('is written whole: a temp name renamed over the old one, stale temps of a killed write removed', () => {
    const dir = tempDir('dpo-ckpt-')
    writeFileSync(path.join(dir, `.${CHECKPOINT_FILE}.tmp-999-1`), 'half a checkpoint')
    writeCheckpoint(dir, checkpoint())
    expect(readCheckpoint(dir)!.training).toEqual(training)
    expect(readCheckpointState(dir)!.global_step).toBe(7)
    expect(existsSync(path.join(dir, `.${CHECKPOINT_FILE}.tmp-999-1`))).toBe(false)
    // A folder where the file cannot be written: the error names the checkpoint file, and nothing is left behind.
    const blocked = path.join(dir, 'blocked')
    mkdirSync(path.join(blocked, CHECKPOINT_FILE), { recursive: true })
    expect(() => writeCheckpoint(blocked, checkpoint())).toThrow(
      new RegExp(`could not write the checkpoint ${blocked}/${CHECKPOINT_FILE}`),
    )
  })
})

describe('truncateStepLog', () => {
  const row = (step: number) => JSON.stringify({ step, loss: step / 10 })
  it('keeps steps 1..k, drops later rows and a torn last line', () => {
    const file = path.join(tempDir(), 'metrics.jsonl')
    writeFileSync(file, [row(1), row(2), row(3), row(4)].join('\n') + '\n{"step": 5, "lo')
    truncateStepLog(file, 2)
    expect(readFileSync(file, 'utf8')).toBe(`${row(1)}\n${row(2)}\n`)
    truncateStepLog(file, 0)
    expect(readFileSync(file, 'utf8')).toBe('')
  })
  it('refuses when a step the checkpoint covers is missing', () => {
    const file = path.join(tempDir(), 'steps.jsonl')
    writeFileSync(file, [row(1), row(3)].join('\n') + '\n')
    expect(() => truncateStepLog(file, 3)).toThrow(
      /steps\.jsonl holds steps 1-1 in order, but the checkpoint is at step 3/,
    )
  })
})

describe('resumeNotebook: checks and the remaining phases', () => {
  function deps(native: FakeModel): NotebookDeps {
    return {
      openModel: async (dir) => fakeSession(dir, tok, native),
      engineVersion: 'test-engine',
      refCacheDir: null,
      cancelTokenFactory: () => new FakeCancelToken(),
    }
  }

  /** A `run` on a copy of the model and the data, cancelled during step 5 of 10. */
  async function cancelledRun() {
    const model = copyStories()
    const data = tempDir('dpo-data-')
    for (const f of ['labelled_data.json', 'test_prompt.json']) copyFileSync(path.join(HW6, f), path.join(data, f))
    const out = tempDir('dpo-nbrun-')
    const native = new FakeModel()
    const ac = new AbortController()
    native.beforeAccumulate = (n) => n === 9 && ac.abort()
    const req = {
      modelDir: model,
      datasetPath: data,
      testPromptsPath: path.join(data, 'test_prompt.json'),
      params: params({ maxNewTokens: 4 }),
      outDir: out,
    }
    const r = await runNotebook(req, {}, ac.signal, deps(native))
    expect(r).toMatchObject({ status: 'cancelled', cancelledIn: 'train', steps: 4 })
    return { model, data, out, req }
  }

  it('continues training from step 4 and makes the trained answers and the comparison', async () => {
    const { out } = await cancelledRun()
    expect(resumeInfo(out)).toEqual({ resumable: true, fromStep: 4 })
    const native = new FakeModel()
    const phases: string[] = []
    const r = await resumeNotebook(out, {}, { phase: (p) => phases.push(p) }, undefined, deps(native))
    expect(r).toMatchObject({ status: 'completed', steps: 10 })
    // The original answers were kept: only the trained ones are generated.
    expect(phases).toEqual(['load', 'reference', 'train', 'save', 'trained', 'done'])
    expect(native.callsOf('generate').map((g) => g.hasLora)).toEqual([true])
    expect(native.callsOf('optimizerStep')).toHaveLength(6)
    expect(JSON.parse(readText(out, 'comparison.json'))).toHaveLength(10)
    const config = JSON.parse(readText(out, 'config.json'))
    expect(config.resumes).toEqual([expect.objectContaining({ from_step: 4, engine_version: 'test-engine' })])
    expect(resumeInfo(out)).toEqual({ resumable: false, fromStep: -1 })
    expect(() => planResume(out)).toThrow(/has nothing to resume: its training completed \(10 of 10 steps\)/)
  })

  it('after a cancel during the trained answers, makes only those answers with the saved adapter', async () => {
    const out = tempDir('dpo-nbtrained-')
    const ac = new AbortController()
    const req = {
      modelDir: STORIES,
      datasetPath: HW6,
      testPromptsPath: path.join(HW6, 'test_prompt.json'),
      params: params({ maxNewTokens: 4 }),
      outDir: out,
    }
    const first = await runNotebook(
      req,
      { phase: (p) => p === 'trained' && ac.abort() },
      ac.signal,
      deps(new FakeModel()),
    )
    expect(first).toMatchObject({ status: 'cancelled', cancelledIn: 'trained', steps: 10 })
    expect(existsSync(path.join(out, CHECKPOINT_FILE))).toBe(false)
    expect(resumeInfo(out)).toEqual({ resumable: true, fromStep: -1 })
    expect(() => planResume(out, { trainOnly: true })).toThrow(
      /nothing to resume: its training completed \(10 of 10 steps\); `run --resume` finishes its answers and comparison/,
    )
    const native = new FakeModel()
    const phases: string[] = []
    const r = await resumeNotebook(out, {}, { phase: (p) => phases.push(p) }, undefined, deps(native))
    expect(r).toMatchObject({ status: 'completed', steps: 10, maxSteps: 10 })
    expect(phases).toEqual(['load', 'trained', 'done'])
    expect(native.callsOf('dpoAccumulate')).toHaveLength(0)
    expect(native.callsOf('setLoraTensors')).toHaveLength(1)
    expect(native.callsOf('generate').map((g) => g.hasLora)).toEqual([true])
    expect(JSON.parse(readText(out, 'comparison.json'))).toHaveLength(10)
  })

  it('refuses changed parameters, a changed dataset and a changed model, naming what differs', async () => {
    const { model, data, out } = await cancelledRun()
    expect(() => planResume(out, { params: { learningRate: 1e-3, checkpointEvery: 5 } })).toThrow(
      /learningRate: 0\.001 here, 0\.0002 in the run/,
    )
    expect(planResume(out, { params: { checkpointEvery: 5, learningRate: 2e-4 } }).request.params.checkpointEvery).toBe(
      5,
    )
    expect(() => planResume(out, { modelDir: STORIES })).toThrow(/the model .*stories260K is not the run's/)
    const cfgFile = path.join(out, 'config.json')
    const cfg = readText(out, 'config.json')
    writeFileSync(cfgFile, cfg.replace('"beta": 0.1', '"beta": 0.3'))
    expect(() => planResume(out)).toThrow(
      /its checkpoint was written with other parameters than config\.json \(beta: 0\.3 in config\.json, 0\.1 in the checkpoint\)/,
    )
    writeFileSync(cfgFile, cfg)

    const file = path.join(data, 'labelled_data.json')
    const original = readFileSync(file)
    writeFileSync(file, original.toString('utf8').replace('"support"', '"support" '))
    expect(() => planResume(out)).toThrow(new RegExp(`E?.*dataset file ${file} changed since the run started`))
    writeFileSync(file, original)

    const weights = path.join(model, 'model.safetensors')
    const bytes = readFileSync(weights)
    const changed = Buffer.from(bytes)
    changed[changed.length - 1]! ^= 0x40
    writeFileSync(weights, changed)
    expect(() => planResume(out)).toThrow(
      /the model in .* changed since the run started: model\.safetensors has other contents/,
    )
    writeFileSync(weights, bytes)
    writeFileSync(path.join(model, 'added.safetensors'), 'x')
    expect(() => planResume(out)).toThrow(/added\.safetensors is new/)
    writeFileSync(path.join(model, 'README.md'), 'notes do not matter')
    expect(() => planResume(path.join(out, 'nope'))).toThrow(/is not a run directory \(it has no config\.json\)/)
  })
})
