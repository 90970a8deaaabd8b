// The pair inspector, token view and support_ratio sweep on the real engine (CPU), demo model + sample dataset:
// pairs.jsonl equals what `dpo-studio logps` computes without and with the run's adapter, bit for bit, and its
// per-token file sums to those values exactly; rows beyond the training pairs get their margin toward support as
// logps computes it; the sweep's stance share rises with support_ratio.
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import type { PairInsightRow, PairTokensRow, SweepFile, TokenSide } from '../../src-shared/insights/insightTypes'
import { loadPreferenceData } from '../../src-main/services/data/preferenceFile'
import { openModel } from '../../src-main/services/session/modelSession'
import { pairRewards } from '../../src-main/services/insights/implicitReward'
import { supportMargins } from '../../src-main/services/insights/supportMargins'
import { resolveTrainParams } from '../../src-shared/params/trainParams'
import { loadAdapter } from '../../src-main/services/training/adapterFiles'
import { RefLogpsCache } from '../../src-main/services/training/refCache'
import { tokenizeTrainingPair } from '../../src-main/services/training/tokenizePair'
import { attachLoadedAdapter } from '../../src-main/services/training/loraAttach'
import { tempDir } from '../helpers/modelFixtures'
import { runCli } from '../helpers/runCli'
import { repoRoot } from '../helpers/sharedPath'
import { expectTokenSums, readJsonl, sumInOrder } from '../helpers/insightFiles'

const DEMO = path.join(repoRoot, 'resources/demo-model')
const SAMPLE = path.join(repoRoot, 'resources/sample-dataset/zh')

beforeAll(() => {
  process.env.DPO_STUDIO_CACHE = tempDir('dpo-cache-')
})

interface LogpsOut {
  chosen_logp: number
  rejected_logp: number
  chosen_token_logps: number[]
  rejected_token_logps: number[]
  chosen_token_text: string[]
  rejected_token_text: string[]
}

describe('pairs.jsonl and pairs_tokens.jsonl', () => {
  const run = path.join(tempDir(), 'run')
  let pairs: PairInsightRow[]
  let tokens: PairTokensRow[]

  beforeAll(() => {
    const r = runCli([
      'train',
      '--model',
      DEMO,
      '--dataset',
      SAMPLE,
      '--data-size',
      '12',
      '--support-ratio',
      '0.5',
      '--grad-accum',
      '2',
      '--epochs',
      '2',
      '--lr',
      '2e-3',
      '--out',
      run,
    ])
    expect(r.code, r.stderr).toBe(0)
    pairs = readJsonl(path.join(run, 'pairs.jsonl'))
    tokens = readJsonl(path.join(run, 'pairs_tokens.jsonl'))
  })

  it('has a line per training pair with the fields of docs/insights.md', () => {
    expect(pairs).toHaveLength(12)
    expect(tokens).toHaveLength(12)
    const sample = JSON.parse(readFileSync(path.join(SAMPLE, 'labelled_data.json'), 'utf8'))
    expect(pairs[0]).toMatchObject({
      index: 0,
      id: 1,
      prompt: sample[0].prompt,
      chosen: sample[0].support,
      rejected: sample[0].oppose,
      position: 'support',
    })
    expect(pairs[11]).toMatchObject({ position: 'oppose', chosen: sample[11].oppose })
    // 12 pairs, batch 1, grad-accum 2, 2 epochs: every pair is seen twice.
    expect(pairs.map((p) => p.seen)).toEqual(new Array(12).fill(2))
    for (const p of pairs) {
      // TRL's implicit rewards (sigmoid loss: sums, beta as the engine's float32) and the margin.
      const beta = Math.fround(0.1)
      expect(p.reward_chosen).toBe(beta * (p.chosen_logp_trained! - p.chosen_logp_ref!))
      expect(p.reward_rejected).toBe(beta * (p.rejected_logp_trained! - p.rejected_logp_ref!))
      expect(p.margin).toBe(p.reward_chosen! - p.reward_rejected!)
      expect(p.correct_before).toBe(p.chosen_logp_ref! > p.rejected_logp_ref!)
      expect(p.correct_after).toBe(p.chosen_logp_trained! > p.rejected_logp_trained!)
    }
    // Training moved the pairs it saw toward their chosen side.
    expect(pairs.filter((p) => p.margin! > 0).length).toBeGreaterThanOrEqual(10)
  })

  it('equals `dpo-studio logps --per-token` without and with the run adapter, bit for bit', () => {
    const dir = tempDir()
    const file = path.join(dir, 'pairs.jsonl')
    writeFileSync(
      file,
      pairs.map((p) => JSON.stringify({ prompt: p.prompt, chosen: p.chosen, rejected: p.rejected })).join('\n'),
    )
    const score = (extra: string[]): LogpsOut[] => {
      const out = path.join(dir, `logps-${extra.length}.json`)
      const r = runCli(['logps', '--model', DEMO, '--pairs', file, '--per-token', '--out', out, ...extra])
      expect(r.code, r.stderr).toBe(0)
      return JSON.parse(readFileSync(out, 'utf8')) as LogpsOut[]
    }
    const ref = score([])
    const trained = score(['--adapter', path.join(run, 'adapter')])
    pairs.forEach((p, i) => {
      expect(p.chosen_logp_ref).toBe(ref[i]!.chosen_logp)
      expect(p.rejected_logp_ref).toBe(ref[i]!.rejected_logp)
      expect(p.chosen_logp_trained).toBe(trained[i]!.chosen_logp)
      expect(p.rejected_logp_trained).toBe(trained[i]!.rejected_logp)
      const t = tokens[i]!
      expect(t.chosen.ref).toEqual(ref[i]!.chosen_token_logps)
      expect(t.rejected.trained).toEqual(trained[i]!.rejected_token_logps)
      expect(t.chosen.text).toEqual(ref[i]!.chosen_token_text)
    })
    // The CLI's per-token values add up to its sums exactly.
    for (const r of [...ref, ...trained]) {
      expect(sumInOrder(r.chosen_token_logps)).toBe(r.chosen_logp)
      expect(sumInOrder(r.rejected_token_logps)).toBe(r.rejected_logp)
    }
  })

  it('stores per-token values whose in-order sums are the pair sums, over the answer text as the tokenizer split it', () => {
    pairs.forEach((p, i) => {
      const t = tokens[i]!
      expectTokenSums(p, t)
      const side = (s: TokenSide, text: string) => {
        expect(s.ids).toHaveLength(s.ref.length)
        // The demo tokenizer splits Chinese per character; the last scored token is EOS.
        expect(s.text.slice(0, -1).join('')).toBe(text)
        expect(s.text.at(-1)).toBe('</s>')
      }
      side(t.chosen, p.chosen)
      side(t.rejected, p.rejected)
    })
  })

  it('gives every labelled row its margin toward support: the 12 pairs from pairs.jsonl, the other 48 rows as logps scores them', async () => {
    const data = await loadPreferenceData(SAMPLE)
    const params = resolveTrainParams({ dataSize: 12, supportRatio: 0.5, gradAccum: 2, epochs: 2, learningRate: 2e-3 })
    const session = await openModel(DEMO, { quant: 'nf4', backend: 'cpu' })
    try {
      attachLoadedAdapter(session, loadAdapter(path.join(run, 'adapter')))
      const cache = RefLogpsCache.open(null, {
        modelDir: DEMO,
        quant: 'nf4',
        backend: session.info.backend,
        engineVersion: 'test',
      })
      const margins = await supportMargins(session, run, data.rows, params, cache)
      expect(margins.slice(0, 12)).toEqual(pairs.map((p) => (p.position === 'support' ? p.margin : -p.margin!)))
      const padId = session.tokenizer.padId ?? session.tokenizer.eosId!
      for (const i of [12, 30, 59]) {
        const row = data.rows[i]!
        const t = tokenizeTrainingPair(
          session.tokenizer,
          { id: row.id, prompt: row.prompt, chosen: row.support!, rejected: row.oppose!, position: 'support' },
          params,
        )
        const seqs = [t.chosen, t.rejected].map((s) => ({ ids: s.ids, labels: s.labels }))
        const [ref, trained] = [
          await session.native.logps(seqs, padId, undefined, false),
          await session.native.logps(seqs, padId),
        ]
        const want = pairRewards(params.beta, params.lossType, {
          chosenRef: ref[0]!.logp,
          rejectedRef: ref[1]!.logp,
          chosenTrained: trained[0]!.logp,
          rejectedTrained: trained[1]!.logp,
          chosenTokens: trained[0]!.tokens,
          rejectedTokens: trained[1]!.tokens,
        })
        expect(margins[i]).toBe(want.margin)
      }
    } finally {
      session.dispose()
    }
  })
})

describe('dpo-studio sweep on the demo', () => {
  // Three demo runs of ~10-20 s each on 2 cores.
  it(
    'runs one run per ratio sharing the reference cache; the stance share rises with support_ratio',
    { timeout: 300_000 },
    () => {
      // A fresh cache, so the first run computes every reference log-prob and the others none.
      process.env.DPO_STUDIO_CACHE = tempDir('dpo-cache-')
      const out = path.join(tempDir(), 'sweep')
      const r = runCli(['sweep', '--support-ratio', '1,0,0.5', '--out', out])
      expect(r.code, r.stderr).toBe(0)
      const sweep = JSON.parse(readFileSync(path.join(out, 'sweep.json'), 'utf8')) as SweepFile
      expect(sweep).toMatchObject({ version: 1, status: 'completed', ratios: [0, 0.5, 1], rows: 60 })
      expect(sweep.runs.map((x) => [x.support_ratio, x.run_dir, x.status, x.support_pairs])).toEqual([
        [0, 'ratio-0', 'completed', 0],
        [0.5, 'ratio-0.5', 'completed', 30],
        [1, 'ratio-1', 'completed', 60],
      ])
      // Runs after the first take every reference log-prob from the cache (the same pairs, sides swapped).
      const reference = sweep.runs.map(
        (x) => JSON.parse(readFileSync(path.join(out, x.run_dir, 'train_summary.json'), 'utf8')).reference,
      )
      expect(reference.map((x) => x.computed)).toEqual([60, 0, 0])
      const share = sweep.runs.map((x) => x.stance!.share_support)
      const margin = sweep.runs.map((x) => x.mean_margin_support!)
      expect(share[0]).toBeLessThanOrEqual(share[1]!)
      expect(share[1]).toBeLessThanOrEqual(share[2]!)
      expect(share[2]! - share[0]!).toBeGreaterThanOrEqual(0.5)
      expect(margin[0]).toBeLessThan(margin[1]!)
      expect(margin[1]).toBeLessThan(margin[2]!)
      // The mean margin toward support is the mean of the rows' margins, each its pair's margin signed by the side it
      // prefers (all 60 rows are training pairs here).
      const run = sweep.runs[1]!
      const pairs = readJsonl<PairInsightRow>(path.join(out, run.run_dir, 'pairs.jsonl'))
      expect(run.row_margins).toEqual(pairs.map((p) => (p.position === 'support' ? p.margin : -p.margin!)))
      expect(run.mean_margin_support).toBeCloseTo(sumInOrder(run.row_margins) / 60, 12)
      // The base model's answers are the same in every run.
      expect(new Set(sweep.runs.map((x) => JSON.stringify(x.stance_original))).size).toBe(1)
    },
  )
})
