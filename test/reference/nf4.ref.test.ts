// NF4 against bitsandbytes (docs/reference-parity.md, "NF4"): our quantizer (`dpo-tool nf4-quantize`) beside
// bitsandbytes.functional.quantize_4bit (nf4, blocksize 64, double quantization, CPU) on real weights (stories260K,
// each family's tiny checkpoint, fp32 and fp16-cast) and constructed ones (random, ties, zeros, denormals, partial
// blocks), stage by stage; every difference must fall under a documented cause. Then a checkpoint that transformers
// + bitsandbytes save in 4 bit loads in our engine and scores as bnb's dequantized weights do.
import { mkdtempSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { repoRoot } from '../helpers/sharedPath'
import {
  maxScaledDiff,
  openEngine,
  probeSequences,
  scoreProbes,
  type ProbeScores,
  type ProbeSequence,
} from './engineSide'
import { STORIES_DIR, TINY_FAMILIES, makeTinyModels } from './families'
import { runPy } from './refstack'

interface TensorReport {
  name: string
  dtype: string
  elements: number
  blocks: number
  codeMismatches: Record<string, number>
  unexplainedCodes: unknown[]
  zeroBlocks: number
  offset: { oursIsCorrectlyRounded: boolean; bnbUlpsFromCorrect: number }
  nestedAbsmaxEqual: boolean
  oursAlwaysNearest: boolean
  absmaxCodeMismatches: Record<string, number>
  defaultPathAbsmaxCodeDiffs: number
  ourStateLoadsInBnb: boolean
  dequantMaxRelDiff: number
}
interface QuantizeReport {
  maps: { nf4Equal: boolean; dynamicEntriesDiffering: number; dynamicMaxAbsDiff: number }
  tensors: TensorReport[]
}

const MODELS = [{ name: 'stories260K', dir: STORIES_DIR }]
let report: QuantizeReport
const sum = (rs: TensorReport[], f: (r: TensorReport) => number) => rs.reduce((a, r) => a + f(r), 0)

beforeAll(() => {
  const tiny = makeTinyModels()
  MODELS.push(...TINY_FAMILIES.map((f, i) => ({ name: f.name, dir: tiny[i]! })))
  report = runPy<QuantizeReport>('nf4_check.py', {
    op: 'quantize',
    models: Object.fromEntries(MODELS.map((m) => [m.name, m.dir])),
    work: mkdtempSync(path.join(os.tmpdir(), 'dpo-ref-nf4-')),
    tool: path.join(repoRoot, 'build/native/dpo-tool'),
  })
}, 900_000)

describe('quantize_4bit beside our quantizer', () => {
  const pick = (prefix: string) => report.tensors.filter((t) => t.name.startsWith(prefix))
  const real = () => report.tensors.filter((t) => MODELS.some((m) => t.name.startsWith(m.name)))

  it('uses the same NF4 table; the 8-bit map differs only in last bits (torch linspace, docs/reference/nf4.md)', () => {
    expect(report.maps.nf4Equal).toBe(true)
    expect(report.maps.dynamicMaxAbsDiff).toBeLessThan(1e-7)
  })

  it('packs real and random weights into the same bytes, bit for bit', () => {
    const rs = [...real(), ...pick('random.')]
    expect(rs.length).toBeGreaterThan(30)
    for (const t of rs) expect(t.codeMismatches, t.name).toEqual({})
  })

  it('differs on constructed weights only where a documented cause explains it', () => {
    for (const t of report.tensors) {
      expect(t.unexplainedCodes, t.name).toEqual([])
      for (const cause of Object.keys(t.codeMismatches))
        expect(['zero-block', 'reciprocal-overflow', 'midpoint-ulp', 'partial-block-division'], t.name).toContain(cause)
    }
    // Each constructed case hits its cause, and only that one.
    expect(Object.keys(pick('ties.')[0]!.codeMismatches)).toEqual(['midpoint-ulp'])
    expect(Object.keys(pick('zeros.')[0]!.codeMismatches)).toEqual(['zero-block'])
    expect(Object.keys(pick('denormals.')[0]!.codeMismatches)).toEqual(['reciprocal-overflow'])
    expect(pick('partial.')[0]!.codeMismatches).toEqual({})
    expect(pick('odd.')[0]!.codeMismatches).toEqual({})
    expect(pick('extreme.')[0]!.codeMismatches).toEqual({})
  })

  it("offset: ours is the correctly rounded mean; torch's fp32 mean is at most 1 ulp away", () => {
    for (const t of report.tensors) {
      expect(t.offset.oursIsCorrectlyRounded, t.name).toBe(true)
      expect(t.offset.bnbUlpsFromCorrect, t.name).toBeLessThanOrEqual(1)
    }
  })

  it("nested absmax bit for bit; absmax codes always a nearest entry, bnb's lookup table never nearer", () => {
    for (const t of report.tensors) {
      expect(t.nestedAbsmaxEqual, t.name).toBe(true)
      expect(t.oursAlwaysNearest, t.name).toBe(true)
      expect(t.absmaxCodeMismatches.unexplained, t.name).toBe(0)
    }
    const blocks = sum(report.tensors, (t) => t.blocks)
    const lut = sum(report.tensors, (t) => t.absmaxCodeMismatches['bnb-lut-farther']!)
    console.log(
      `nf4: ${report.tensors.length} tensors, ${sum(report.tensors, (t) => t.elements)} weights, ${blocks} blocks; ` +
        `packed-code differences by cause: ${JSON.stringify(mergeCounts(report.tensors.map((t) => t.codeMismatches)))}; ` +
        `absmax codes where bnb's CPU lookup table is farther: ${lut}/${blocks}; ` +
        `offsets 1 ulp off in torch: ${report.tensors.filter((t) => t.offset.bnbUlpsFromCorrect > 0).length}/${report.tensors.length}; ` +
        `dynamic-map entries differing: ${report.maps.dynamicEntriesDiffering}/256 (max ${report.maps.dynamicMaxAbsDiff.toExponential(2)})`,
    )
  })

  it('our bytes load as a bitsandbytes QuantState (QuantState.from_dict)', () => {
    for (const t of report.tensors) expect(t.ourStateLoadsInBnb, t.name).toBe(true)
  })
})

function mergeCounts(xs: Array<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const x of xs) for (const [k, v] of Object.entries(x)) out[k] = (out[k] ?? 0) + v
  return out
}

describe('a checkpoint saved by transformers + bitsandbytes in 4 bit', () => {
  interface Scored {
    name: string
    dir: string
    exact: ProbeScores[]
    bnb: ProbeScores[]
    rowDequant: Array<{ linear: string; cols: number; rowDequantDiffers: boolean }>
    avx512: boolean
  }
  let scored: Scored[]
  const seqs = new Map<string, ProbeSequence[]>()

  beforeAll(() => {
    MODELS.forEach((m, i) => seqs.set(m.name, probeSequences(m.name === 'stories260K' ? 512 : 384, 2, 16, 70 + i)))
    scored = runPy<Scored[]>('nf4_check.py', {
      op: 'checkpoint',
      work: mkdtempSync(path.join(os.tmpdir(), 'dpo-ref-bnb4-')),
      models: MODELS.map((m) => ({ ...m, sequences: seqs.get(m.name) })),
    })
  }, 900_000)

  it.each(['stories260K', ...TINY_FAMILIES.map((f) => f.name)])(
    "%s: loads in our engine with bnb's weights",
    async (name) => {
      const s = scored.find((x) => x.name === name)!
      const model = await openEngine(s.dir, 'nf4')
      try {
        expect(model.info().quantizedLinears).toBe(model.info().config.layers * 7)
        const ours = await scoreProbes(model, seqs.get(name)!)
        // Against bnb's dequantized weights under our stated numerics (bf16 inputs and weights, fp32 sums): equal.
        const exact = Math.max(...ours.map((o, i) => maxScaledDiff(o.logps, s.exact[i]!.logps)))
        const exactMean = Math.max(...ours.map((o, i) => maxScaledDiff([o.logitsMean], [s.exact[i]!.logitsMean])))
        // Against bnb's own forward on the CPU, which rounds each 4-bit matmul's output to bf16 and, in bnb 0.50, mis-
        // dequantizes weights whose rows are not whole 64-blocks (docs/reference-parity.md): reported, not asserted.
        const bnb = Math.max(
          ...ours.map((o, i) => maxScaledDiff([...o.logps, o.logitsMean], [...s.bnb[i]!.logps, s.bnb[i]!.logitsMean])),
        )
        console.log(
          `nf4 checkpoint ${name}: max scaled difference vs bnb's dequantized weights ${exact.toExponential(2)} ` +
            `(mean logit ${exactMean.toExponential(2)}), ` +
            `vs bnb's CPU forward ${bnb.toExponential(2)}`,
        )
        // Both sides round activations to bf16 before each 4-bit matmul; where an activation sits at a bf16 rounding
        // boundary, the last-bit fp32 difference of the two implementations (summation order) rounds it apart, and
        // the positions after it differ by up to ~1e-3 (docs/reference-parity.md). Elsewhere the agreement is 1e-7.
        expect(exact).toBeLessThan(2e-3)
        expect(exactMean).toBeLessThan(1e-4)
        // The bnb CPU bug, pinned: its AVX-512 kernel (taken when in_features is a multiple of 16) indexes the absmax
        // per row, wrong exactly where in_features % 64 != 0. When a bnb release fixes it this fails, and
        // docs/reference-parity.md should say so.
        for (const r of s.rowDequant)
          expect(r.rowDequantDiffers, r.linear).toBe(s.avx512 && r.cols % 64 !== 0 && r.cols % 16 === 0)
      } finally {
        model.dispose()
      }
    },
  )
})
