// The tested families' tiny twins (`dpo-tool make-model --family`: each family's published config.json and
// generation_config.json with the sizes shrunk, real vocabulary) in transformers itself (docs/reference-parity.md,
// "Families"): they load with no tensor missing, unexpected or mismatched, and our fp32 log-probs, mean logit and
// greedy tokens equal transformers'. Then every RoPE scaling the engine computes, on the Llama 3.2 and Qwen2.5 twins,
// each beside a control (the same weights without the scaling) that must be far off, so the comparison can fail.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { FAMILIES, familyModel, type Family } from '../helpers/familyModels'
import {
  maxScaledDiff,
  openEngine,
  probeSequences,
  scoreProbes,
  seededRandom,
  type ProbeScores,
  type ProbeSequence,
} from './engineSide'
import { runPy } from './refstack'

const TOL = 1e-4
const MAX_NEW = 24
/** Long enough that the low RoPE frequencies turn and dynamic NTK (max_position_embeddings 16 below) grows. */
const LENGTH = 40

interface Case {
  name: string
  family: Family
  config?: Record<string, unknown>
  /** transformers' rope_type for this config (checked, so a scaling transformers ignored cannot pass). */
  ropeType: string
}

const TWINS: Case[] = FAMILIES.map((family) => ({
  name: family,
  family,
  ropeType: family.startsWith('llama-3') ? 'llama3' : 'default',
}))

const llama3 = { rope_type: 'llama3', factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0 }
/** RoPE scalings beside their controls: the published ones, and others at contexts shrunk to the suite's lengths. */
const SCALINGS: Case[] = [
  {
    name: 'llama3, original context 32',
    family: 'llama-3.2-1b-instruct',
    ropeType: 'llama3',
    config: { rope_scaling: { ...llama3, original_max_position_embeddings: 32 } },
  },
  {
    name: 'llama3 as rope_parameters (transformers 5)',
    family: 'llama-3.2-1b-instruct',
    ropeType: 'llama3',
    config: {
      rope_scaling: null,
      rope_theta: null,
      rope_parameters: { ...llama3, rope_theta: 500000.0, original_max_position_embeddings: 24 },
    },
  },
  {
    name: 'linear 4',
    family: 'llama-3.2-1b-instruct',
    ropeType: 'linear',
    config: { rope_scaling: { rope_type: 'linear', factor: 4.0 } },
  },
  {
    name: 'dynamic 3, context 16',
    family: 'llama-3.2-1b-instruct',
    ropeType: 'dynamic',
    config: { rope_scaling: { rope_type: 'dynamic', factor: 3.0 }, max_position_embeddings: 16 },
  },
  {
    name: 'yarn 4, original context 32',
    family: 'llama-3.2-1b-instruct',
    ropeType: 'yarn',
    config: { rope_scaling: { rope_type: 'yarn', factor: 4.0, original_max_position_embeddings: 32 } },
  },
  {
    name: 'yarn 8, mscale ratio, beta_fast 8',
    family: 'llama-3.2-1b-instruct',
    ropeType: 'yarn',
    config: {
      rope_scaling: {
        rope_type: 'yarn',
        factor: 8.0,
        mscale: 1.0,
        mscale_all_dim: 0.5,
        beta_fast: 8,
        original_max_position_embeddings: 16,
      },
    },
  },
  {
    name: 'yarn, truncate false',
    family: 'llama-3.2-1b-instruct',
    ropeType: 'yarn',
    config: { rope_scaling: { rope_type: 'yarn', factor: 4.0, truncate: false, original_max_position_embeddings: 24 } },
  },
  // Qwen2.5's documented long-context block (its README), as users add it to config.json.
  {
    name: 'Qwen2.5 yarn 4 (README block)',
    family: 'qwen2.5-0.5b-instruct',
    ropeType: 'yarn',
    config: { rope_scaling: { type: 'yarn', factor: 4.0, original_max_position_embeddings: 32768 } },
  },
]

/** The same weights (same seed, same shapes) with no RoPE scaling. */
function controlOf(c: Case): Case {
  return {
    ...c,
    name: `${c.name} (control)`,
    ropeType: 'default',
    config: {
      ...c.config,
      rope_scaling: null,
      rope_parameters: null,
      rope_theta: c.family.startsWith('llama-3') ? 500000.0 : 1000000.0,
    },
  }
}

interface HfResult {
  name: string
  architecture: string
  missing: string[]
  unexpected: string[]
  mismatched: string[]
  ropeType: string
  attentionScaling: number
  scores: ProbeScores[]
  tokens: number[][]
}

interface Prepared {
  c: Case
  dir: string
  seqs: ProbeSequence[]
  prompts: number[][]
  eosIds: number[]
}

const prepared = new Map<string, Prepared>()
const hf = new Map<string, HfResult>()
const worst: Record<string, number> = {}

/** Probes thinned to every 4th position: a real vocabulary makes each labelled copy's logits large. */
function thinProbes(vocab: number, seed: number): ProbeSequence[] {
  return probeSequences(vocab, 2, LENGTH, seed).map((s) => ({
    ids: s.ids,
    probes: s.probes.filter(([t]) => t % 4 === 1),
  }))
}

beforeAll(async () => {
  const cases = [...TWINS, ...SCALINGS, ...SCALINGS.map(controlOf)]
  cases.forEach((c, i) => {
    const dir = familyModel(c.family, c.config ? { config: c.config } : {})
    const vocab = readJson(dir, 'config.json').vocab_size as number
    const rnd = seededRandom(500 + i)
    const prompts = [4, 9, 17].map((n) => [1, ...Array.from({ length: n }, () => 3 + Math.floor(rnd() * (vocab - 3)))])
    prepared.set(c.name, { c, dir, seqs: thinProbes(vocab, 600 + (i % TWINS.length)), prompts, eosIds: eosIdsOf(dir) })
  })
  const results = runPy<HfResult[]>('hf_families.py', {
    max_new_tokens: MAX_NEW,
    models: [...prepared.values()].map((p) => ({
      name: p.c.name,
      dir: p.dir,
      sequences: p.seqs,
      prompts: p.prompts,
      eos_ids: p.eosIds,
    })),
  })
  for (const r of results) hf.set(r.name, r)
}, 900_000)

function readJson(dir: string, file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as Record<string, unknown>
}

/** The stop ids of generation_config.json (a number or a list). */
function eosIdsOf(dir: string): number[] {
  const eos = readJson(dir, 'generation_config.json').eos_token_id as number | number[]
  return Array.isArray(eos) ? eos : [eos]
}

async function ours(p: Prepared): Promise<{ scores: ProbeScores[]; tokens: number[][] }> {
  const model = await openEngine(p.dir)
  try {
    const scores = await scoreProbes(model, p.seqs)
    // One prompt per call, as transformers generates here: with dynamic NTK a batch's longest prompt sets the table
    // for all of its rows (in both stacks).
    const tokens: number[][] = []
    for (const prompt of p.prompts)
      tokens.push([...(await model.generate([prompt], { maxNewTokens: MAX_NEW, eosIds: p.eosIds })).tokens[0]!])
    return { scores, tokens }
  } finally {
    model.dispose()
  }
}

function scoreDiff(a: ProbeScores[], b: ProbeScores[]): number {
  return Math.max(
    ...a.map((o, i) =>
      Math.max(maxScaledDiff(o.logps, b[i]!.logps), maxScaledDiff([o.logitsMean], [b[i]!.logitsMean])),
    ),
  )
}

describe("each family's twin in transformers", () => {
  it.each(TWINS.map((c) => c.name))(
    '%s: loads whole; fp32 log-probs, mean logit and greedy tokens equal ours',
    async (name) => {
      const p = prepared.get(name)!
      const theirs = hf.get(name)!
      expect(theirs.missing, 'tensors transformers did not find').toEqual([])
      expect(theirs.unexpected, 'tensors transformers did not use').toEqual([])
      expect(theirs.mismatched).toEqual([])
      expect(theirs.ropeType).toBe(p.c.ropeType)
      const o = await ours(p)
      const d = scoreDiff(o.scores, theirs.scores)
      worst[`twin ${name}`] = d
      expect(d).toBeLessThan(TOL)
      o.tokens.forEach((t, i) => expect(t, `${name} prompt ${i}`).toEqual(theirs.tokens[i]))
    },
  )
})

describe('RoPE scalings against transformers, each beside a control without it', () => {
  it.each(SCALINGS.map((c) => c.name))('%s', async (name) => {
    const p = prepared.get(name)!
    const theirs = hf.get(name)!
    const control = hf.get(`${name} (control)`)!
    expect(theirs.ropeType).toBe(p.c.ropeType)
    expect(control.ropeType).toBe('default')
    const o = await ours(p)
    const d = scoreDiff(o.scores, theirs.scores)
    const off = scoreDiff(o.scores, control.scores)
    worst[`rope ${name}`] = d
    console.log(
      `rope ${name}: |ours - transformers| ${d.toExponential(2)}, without the scaling ${off.toExponential(2)}, attention factor ${theirs.attentionScaling}`,
    )
    expect(d).toBeLessThan(TOL)
    expect(off, 'the scaling must change the numbers, or this comparison proves nothing').toBeGreaterThan(100 * TOL)
    o.tokens.forEach((t, i) => expect(t, `${name} prompt ${i}`).toEqual(theirs.tokens[i]))
  })
})

describe('report', () => {
  it('prints the largest differences', () => {
    console.log(
      'family twins: largest |ours - transformers| / max(1, |transformers|)\n' +
        Object.entries(worst)
          .map(([k, v]) => `  ${k}: ${v.toExponential(2)}`)
          .join('\n'),
    )
    expect(Object.keys(worst).length).toBe(TWINS.length + SCALINGS.length)
  })
})
