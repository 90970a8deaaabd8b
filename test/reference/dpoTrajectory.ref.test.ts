// The DPO trajectory against TRL's DPOTrainer (docs/reference-parity.md, "DPO trajectory"): our trainer through the
// real CLI on stories260K with the HW6 pairs (fp32, fp32 AdamW, LoRA r/alpha/targets as the notebook's, our initial
// adapter), and the current TRL with PEFT started from that same adapter, fed the same tokenized pairs in the same
// order. Per step: loss, grad_norm, rewards/chosen, rewards/rejected, rewards/margins; then the final adapters.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { preferencePairs, loadPreferenceData } from '../../src-main/services/data/preferenceFile'
import { resolveTrainParams } from '../../src-shared/params/trainParams'
import { loadAdapter, saveAdapter } from '../../src-main/services/training/adapterFiles'
import { tokenizeTrainingPair } from '../../src-main/services/training/tokenizePair'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { tempDir } from '../helpers/modelFixtures'
import { runCli } from '../helpers/runCli'
import { sharedPath } from '../helpers/sharedPath'
import { openEngine } from './engineSide'
import { STORIES_DIR } from './families'
import { runPy } from './refstack'

const HW6 = sharedPath('datasets/genai-hw6')
// 48 pairs = 6 whole steps of 8 per epoch (no partial accumulation at an epoch's end); a learning rate at which
// stories260K moves, so rewards are well away from 0 and relative errors mean something.
const RUN = {
  dataSize: 48,
  epochs: 2,
  learningRate: 5e-3,
  optim: 'adamw' as const,
  quant: 'none' as const,
  backend: 'cpu' as const,
}
const REL = 1e-4

type Row = Record<string, number>
let ours: Row[]
let trl: { logs: Row[]; adapter: string; versions: Record<string, string> }
let runDir: string

beforeAll(async () => {
  const work = tempDir('dpo-ref-trl-')
  process.env.DPO_STUDIO_CACHE = path.join(work, 'cache')
  const params = resolveTrainParams(RUN)
  // Our initial adapter (A from the seed as PEFT would draw it, B = 0), saved so that both sides start from it.
  const init = path.join(work, 'init-adapter')
  const model = await openEngine(STORIES_DIR)
  model.attachLora({ targets: params.targets, r: params.loraR, alpha: params.loraAlpha, dropout: 0, seed: params.seed })
  saveAdapter(init, model.loraTensors(), {
    r: params.loraR,
    alpha: params.loraAlpha,
    dropout: params.loraDropout,
    targets: params.targets,
    baseModel: STORIES_DIR,
  })
  model.dispose()

  runDir = path.join(work, 'run')
  const r = runCli([
    'train',
    '--model',
    STORIES_DIR,
    '--dataset',
    HW6,
    '--init-adapter',
    init,
    '--out',
    runDir,
    '--data-size',
    String(RUN.dataSize),
    '--epochs',
    String(RUN.epochs),
    '--lr',
    String(RUN.learningRate),
    '--optim',
    RUN.optim,
    '--quant',
    RUN.quant,
    '--backend',
    RUN.backend,
  ])
  expect(r.code, r.stderr).toBe(0)
  ours = readJsonl(path.join(runDir, 'metrics.jsonl'))
  const steps = readJsonl(path.join(runDir, 'steps.jsonl')) as unknown as Array<{
    micro_batches: Array<{ rows: number[] }>
  }>

  // The pairs as our trainer tokenized them, in the order it consumed them.
  const tok = await TextTokenizer.fromDir(STORIES_DIR)
  const pairs = preferencePairs(await loadPreferenceData(HW6), {
    dataSize: params.dataSize,
    supportRatio: params.supportRatio,
  })
  const order = steps.flatMap((s) => s.micro_batches.flatMap((mb) => mb.rows))
  const pairsInOrder = order.map((i) => {
    const t = tokenizeTrainingPair(tok, pairs[i]!, params)
    return { chosen: t.chosen.ids, rejected: t.rejected.ids, promptLength: t.chosen.promptLength }
  })
  trl = runPy('trl_dpo.py', {
    model: STORIES_DIR,
    init_adapter: init,
    work,
    pairs_in_order: pairsInOrder,
    steps: steps.length,
    grad_accum: params.gradAccum,
    lr: params.learningRate,
    warmup_steps: Math.ceil(steps.length * params.warmupRatio),
    max_grad_norm: params.maxGradNorm,
    beta: params.beta,
  })
}, 1_200_000)

function readJsonl(file: string): Row[] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Row)
}

/** |a - b| / max(|b|, floor): relative, with a floor for the exact zeros of the first steps (B = 0). */
function rel(a: number, b: number, floor = 1e-6): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), floor)
}

describe(`our trainer beside TRL's DPOTrainer on stories260K (HW6 pairs)`, () => {
  const worst: Record<string, number> = {}

  it('logs the same steps; learning rates one step apart (transformers 5 logs the rate a step used, 4.4x the next)', () => {
    expect(trl.logs.map((x) => x.step)).toEqual(ours.map((x) => x.step))
    expect(trl.logs[0]!.learning_rate).toBe(0) // warmup starts at 0
    for (const [i, o] of ours.slice(0, -1).entries())
      expect(o.learning_rate).toBeCloseTo(trl.logs[i + 1]!.learning_rate!, 12)
    expect(ours[ours.length - 1]!.learning_rate).toBe(0)
  })

  it.each(['grad_norm', 'rewards/chosen', 'rewards/rejected', 'rewards/margins'])(
    '%s per step within 1e-4 relative',
    (key) => {
      for (const [i, o] of ours.entries()) {
        const d = rel(o[key]!, trl.logs[i]![key]!)
        worst[key] = Math.max(worst[key] ?? 0, d)
        expect(d, `step ${o.step}: ours ${o[key]} vs TRL ${trl.logs[i]![key]}`).toBeLessThan(REL)
      }
    },
  )

  it("loss per step: TRL's unrounded mean within 1e-4 relative of ours, which HF <= 4.45 rounded to 4 decimals", () => {
    for (const [i, o] of ours.entries()) {
      const t = trl.logs[i]!.loss!
      const d = Math.abs(o.loss! - t)
      worst.loss = Math.max(worst.loss ?? 0, d)
      expect(d, `step ${o.step}: ours ${o.loss} vs TRL ${t}`).toBeLessThanOrEqual(5e-5 + REL * Math.abs(t))
    }
  })

  it("final adapters agree within 1e-3 (largest difference relative to the tensor's largest value)", () => {
    const a = loadAdapter(path.join(runDir, 'adapter'))
    const b = loadAdapter(trl.adapter)
    expect(a.tensors.map((t) => t.name).sort()).toEqual(b.tensors.map((t) => t.name).sort())
    let w = 0
    for (const t of a.tensors) {
      const u = b.tensors.find((x) => x.name === t.name)!
      let diff = 0
      let scale = 0
      for (let i = 0; i < t.data.length; i++) {
        diff = Math.max(diff, Math.abs(t.data[i]! - u.data[i]!))
        scale = Math.max(scale, Math.abs(u.data[i]!))
      }
      w = Math.max(w, diff / scale)
    }
    worst.adapter = w
    expect(w).toBeLessThan(1e-3)
    console.log(
      `dpo trajectory (${ours.length} steps, TRL ${trl.versions.trl}, torch ${trl.versions.torch}): largest differences ` +
        Object.entries(worst)
          .map(([k, v]) => `${k} ${v.toExponential(2)}`)
          .join(', '),
    )
  })
})
