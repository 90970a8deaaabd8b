// Adapters against PEFT (docs/reference-parity.md, "Adapters"), on stories260K and a tiny checkpoint per family:
// our saved adapter loads with PeftModel.from_pretrained and gives our log-probs and mean logit (fp32, 1e-4), and
// adapters that PEFT initialises and saves itself (each init_lora_weights variant we load) give PEFT's numbers in
// our engine.
import { mkdtempSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import type { LoraTensor } from '../../src-main/addon/addonTypes'
import { LINEAR_TARGETS } from '../../src-shared/params/trainParams'
import { loadAdapter, saveAdapter } from '../../src-main/services/training/adapterFiles'
import { STORIES_DIR, TINY_FAMILIES, makeTinyModels } from './families'
import {
  maxAbsDiff,
  maxScaledDiff,
  openEngine,
  probeSequences,
  scoreProbes,
  seededRandom,
  type ProbeScores,
  type ProbeSequence,
} from './engineSide'
import { runPy } from './refstack'

const R = 8
const ALPHA = 16
const TARGETS = [...LINEAR_TARGETS]
/** fp32 against fp32: 1e-4, relative where a value is larger than 1 (log-probs of unlikely tokens reach -20). */
const TOL = 1e-4
/** PEFT variants we load: init_lora_weights True and 'gaussian' (B = 0), False (A and B random), and rsLoRA scaling. */
const VARIANTS = [
  { name: 'init-true', init_lora_weights: true },
  { name: 'init-gaussian', init_lora_weights: 'gaussian' },
  { name: 'init-false', init_lora_weights: false },
  { name: 'init-false-rslora', init_lora_weights: false, use_rslora: true },
]

interface PyScore {
  base: ProbeScores[]
  adapters: Array<{ dir: string; tensors: number; held: number; maxTensorDiff: number; scores: ProbeScores[] }>
}

interface ModelCase {
  name: string
  dir: string
  vocab: number
  seqs: ProbeSequence[]
  ours: string
  peft: Array<{ variant: string; dir: string }>
}

const cases: ModelCase[] = []
const py = new Map<string, PyScore>()
const worst: Record<string, number> = {}

function note(key: string, v: number): void {
  worst[key] = Math.max(worst[key] ?? 0, v)
}

beforeAll(async () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'dpo-ref-adapters-'))
  const tiny = makeTinyModels()
  const models = [
    { name: 'stories260K', dir: STORIES_DIR },
    ...TINY_FAMILIES.map((f, i) => ({ name: f.name, dir: tiny[i]! })),
  ]
  const made = runPy<Array<{ model: string; variant: string; dir: string }>>('peft_adapters.py', {
    op: 'make',
    models,
    variants: VARIANTS,
    r: R,
    alpha: ALPHA,
    targets: TARGETS,
    seed: 7,
    out_root: root,
  })
  for (const [k, m] of models.entries()) {
    const model = await openEngine(m.dir)
    const vocab = model.info().config.vocab
    // Our adapter: a fresh LoRA on every linear kind, B drawn at random so that it changes the logits.
    model.attachLora({ targets: TARGETS, r: R, alpha: ALPHA, dropout: 0, seed: 11 })
    const rnd = seededRandom(100 + k)
    const tensors: LoraTensor[] = model
      .loraTensors()
      .map((t) =>
        t.name.includes('lora_B') ? { ...t, data: Float32Array.from(t.data, () => (rnd() - 0.5) * 0.2) } : t,
      )
    const ours = path.join(root, `${m.name}-ours`)
    saveAdapter(ours, tensors, { r: R, alpha: ALPHA, dropout: 0.1, targets: TARGETS, baseModel: m.dir })
    model.dispose()
    cases.push({
      name: m.name,
      dir: m.dir,
      vocab,
      seqs: probeSequences(vocab, 3, 20, 40 + k),
      ours,
      peft: made.filter((x) => x.model === m.name).map((x) => ({ variant: x.variant, dir: x.dir })),
    })
  }
  const scored = runPy<Array<{ name: string } & PyScore>>('peft_adapters.py', {
    op: 'score',
    models: cases.map((c) => ({
      name: c.name,
      dir: c.dir,
      sequences: c.seqs,
      adapters: [c.ours, ...c.peft.map((p) => p.dir)],
    })),
  })
  for (const s of scored) py.set(s.name, s)
}, 900_000)

async function ourScores(c: ModelCase, adapterDir: string | null): Promise<ProbeScores[]> {
  const model = await openEngine(c.dir)
  try {
    if (adapterDir) {
      const a = loadAdapter(adapterDir)
      model.attachLora({ targets: a.settings.targets, r: a.settings.r, alpha: a.settings.alpha, dropout: 0, seed: 0 })
      model.setLoraTensors(a.tensors)
    }
    return await scoreProbes(model, c.seqs)
  } finally {
    model.dispose()
  }
}

function compare(key: string, ours: ProbeScores[], theirs: ProbeScores[]): void {
  const lp = Math.max(...ours.map((o, i) => maxScaledDiff(o.logps, theirs[i]!.logps)))
  const lm = Math.max(...ours.map((o, i) => maxScaledDiff([o.logitsMean], [theirs[i]!.logitsMean])))
  note(`${key} logp`, lp)
  note(`${key} logits mean`, lm)
  expect(lp, `${key}: largest log-prob difference`).toBeLessThan(TOL)
  expect(lm, `${key}: mean-logit difference`).toBeLessThan(TOL)
}

describe.each(['stories260K', ...TINY_FAMILIES.map((f) => f.name)])('%s', (name) => {
  const get = () => cases.find((c) => c.name === name)!

  it("the bare model: our fp32 log-probs and mean logit equal transformers'", async () => {
    const c = get()
    compare('base', await ourScores(c, null), py.get(name)!.base)
  })

  it('our saved adapter loads with PeftModel.from_pretrained, every tensor as saved, and gives our numbers', async () => {
    const c = get()
    const theirs = py.get(name)!.adapters[0]!
    expect(theirs.dir).toBe(c.ours)
    expect(theirs.held, 'LoRA tensors PEFT holds').toBe(theirs.tensors)
    expect(theirs.maxTensorDiff).toBe(0)
    const ours = await ourScores(c, c.ours)
    // The adapter must matter, or this would only compare the base model again.
    expect(maxAbsDiff(ours[0]!.logps, py.get(name)!.base[0]!.logps)).toBeGreaterThan(1e-3)
    compare('ours->peft', ours, theirs.scores)
  })

  it.each(VARIANTS.map((v) => v.name))(
    "a PEFT-saved adapter (%s) loads in our engine and gives PEFT's numbers",
    async (variant) => {
      const c = get()
      const i = c.peft.findIndex((p) => p.variant === variant)
      const theirs = py.get(name)!.adapters[1 + i]!
      compare(`peft(${variant})->ours`, await ourScores(c, c.peft[i]!.dir), theirs.scores)
    },
  )
})

describe('report', () => {
  it('prints the largest differences', () => {
    console.log(
      'adapters: largest |ours - reference| / max(1, |reference|) per check\n' +
        Object.entries(worst)
          .map(([k, v]) => `  ${k}: ${v.toExponential(2)}`)
          .join('\n'),
    )
    expect(Object.keys(worst).length).toBeGreaterThan(0)
  })
})
