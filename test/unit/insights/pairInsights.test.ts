// The pair inspector's files from a training run on the fake engine (HW6 data, notebook defaults): one line per
// pair with TRL's rewards and margin, the ranking before and after, how often training used each pair (as steps.jsonl
// records it), per-token values whose in-order sums are the stored sums bit for bit, one pass with the trained
// adapter and a reference pass only for the pairs no step used. Then reading them back as the app does.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { runAnswerTokens, runPairTokens, runPairs } from '../../../src-main/api/insightsStore'
import {
  loadPreferenceData,
  preferencePairs,
  type PreferencePair,
} from '../../../src-main/services/data/preferenceFile'
import { pairRewards } from '../../../src-main/services/insights/implicitReward'
import type { PairInsightRow, PairTokensRow } from '../../../src-shared/insights/insightTypes'
import { resolveTrainParams } from '../../../src-shared/params/trainParams'
import { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'
import { readCheckpoint } from '../../../src-main/services/training/checkpoint'
import { trainDpo } from '../../../src-main/services/training/trainer'
import { tempDir } from '../../helpers/modelFixtures'
import { sharedPath } from '../../helpers/sharedPath'
import { FakeModel, fakeSession } from '../training/fakeEngine'
import { expectTokenSums, readJsonl } from '../../helpers/insightFiles'

const STORIES = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')

let pairs: PreferencePair[]
let out: string
let native: FakeModel
let rows: PairInsightRow[]
let tokens: PairTokensRow[]

beforeAll(async () => {
  const tok = await TextTokenizer.fromDir(STORIES)
  pairs = preferencePairs(await loadPreferenceData(HW6), { dataSize: 50, supportRatio: 0.1 })
  out = tempDir('dpo-insights-')
  const session = fakeSession(STORIES, tok)
  native = session.native
  await trainDpo(session, pairs, resolveTrainParams(), {
    outDir: out,
    refCacheDir: null,
    engineVersion: 'test',
    cancelTokenFactory: null,
  })
  rows = readJsonl(path.join(out, 'pairs.jsonl'))
  tokens = readJsonl(path.join(out, 'pairs_tokens.jsonl'))
})

describe('pairs.jsonl from a run', () => {
  it('has every training pair in order with its texts and side', () => {
    expect(rows).toHaveLength(50)
    expect(tokens).toHaveLength(50)
    rows.forEach((r, i) => {
      expect(r).toMatchObject({
        index: i,
        id: pairs[i]!.id,
        prompt: pairs[i]!.prompt,
        chosen: pairs[i]!.chosen,
        rejected: pairs[i]!.rejected,
        position: pairs[i]!.position,
      })
      expect(tokens[i]).toMatchObject({ index: i, id: pairs[i]!.id })
    })
  })

  it('counts how often each pair was used, as steps.jsonl records it (pairs 9 and 40 never)', () => {
    const used = new Array(50).fill(0)
    for (const s of readJsonl<{ micro_batches: Array<{ rows: number[] }> }>(path.join(out, 'steps.jsonl')))
      for (const mb of s.micro_batches) for (const i of mb.rows) used[i]++
    expect(rows.map((r) => r.seen)).toEqual(used)
    expect(rows.filter((r) => r.seen === 0).map((r) => r.index)).toEqual([9, 40])
  })

  it('scores once with the trained adapter, and the reference only for the pairs no step used', () => {
    const attach = native.calls.findIndex((c) => c.kind === 'attachLora')
    const after = native.calls.slice(attach).filter((c) => c.kind === 'logps')
    expect(after.filter((c) => !c.useAdapter).reduce((a, c) => a + c.sequences, 0)).toBe(4)
    expect(after.filter((c) => c.useAdapter).reduce((a, c) => a + c.sequences, 0)).toBe(100)
    // Those two got their reference values like the others: the fake's adapter-free log-probs.
    expect(rows[9]!.logratio_ref).toBe(rows[9]!.chosen_logp_ref! - rows[9]!.rejected_logp_ref!)
  })

  it('holds TRL rewards, the margin and the rankings; the fake policy moved chosen up and rejected down', () => {
    // 6 steps at lr 0, 2e-4, ...: 5 real updates; the fake moves chosen +0.5 and rejected −0.25 per update.
    for (const r of rows) {
      const rw = pairRewards(0.1, 'sigmoid', {
        chosenRef: r.chosen_logp_ref!,
        rejectedRef: r.rejected_logp_ref!,
        chosenTrained: r.chosen_logp_trained!,
        rejectedTrained: r.rejected_logp_trained!,
        chosenTokens: r.chosen_tokens,
        rejectedTokens: r.rejected_tokens,
      })
      expect([r.reward_chosen, r.reward_rejected, r.margin]).toEqual([rw.rewardChosen, rw.rewardRejected, rw.margin])
      expect(r.margin!).toBeCloseTo(Math.fround(0.1) * 0.75 * 5, 5)
      expect(r.correct_before).toBe(r.chosen_logp_ref! > r.rejected_logp_ref!)
      expect(r.correct_after).toBe(r.chosen_logp_trained! > r.rejected_logp_trained!)
    }
    expect(rows.some((r) => !r.correct_before && r.correct_after)).toBe(true)
  })

  it('keeps per-token values that add up to the stored sums bit for bit, one per scored answer token', () => {
    rows.forEach((r, i) => {
      const t = tokens[i]!
      expectTokenSums(r, t)
      expect(t.chosen.ids).toHaveLength(r.chosen_tokens)
      expect(t.chosen.text).toHaveLength(r.chosen_tokens)
      // stories260K spells Chinese in byte tokens: joined, the pieces are the answer (and the EOS).
      expect(t.chosen.text.join('')).toBe(`${r.chosen}</s>`)
    })
  })

  it('length-averages the rewards for ipo, as TRL does', () => {
    const r = pairRewards(0.5, 'ipo', {
      chosenRef: -4,
      rejectedRef: -9,
      chosenTrained: -2,
      rejectedTrained: -12,
      chosenTokens: 4,
      rejectedTokens: 3,
    })
    expect(r).toEqual({ rewardChosen: 0.5 * (-0.5 - -1), rewardRejected: 0.5 * (-4 - -3), margin: 0.25 - -0.5 })
  })
})

describe('reading a run for the app (no engine)', () => {
  it('gives the pairs, the run parameters that define the rewards, and one pair or answer by index', async () => {
    const got = await runPairs(out)
    expect(got.pairs).toEqual(rows)
    expect(got.answers).toEqual([])
    expect((await runPairTokens(out, 40)).id).toBe(pairs[40]!.id)
    await expect(runPairTokens(out, 50)).rejects.toMatchObject({
      code: 'E_BAD_INPUT',
      message: expect.stringContaining('no pair 51'),
    })
    await expect(runAnswerTokens(out, 0)).rejects.toMatchObject({
      code: 'E_BAD_INPUT',
      message: expect.stringContaining('responses_tokens.jsonl'),
    })
  })

  it('says when a folder has no pair data, and refuses a folder that is not a run', async () => {
    const empty = tempDir('dpo-norun-')
    await expect(runPairs(empty)).rejects.toMatchObject({
      code: 'E_BAD_INPUT',
      message: expect.stringContaining('is not a run directory'),
    })
    const partial = tempDir('dpo-partial-')
    writeFileSync(path.join(partial, 'config.json'), JSON.stringify({ params: { beta: 0.2, lossType: 'ipo' } }))
    expect(await runPairs(partial)).toMatchObject({ pairs: null, beta: 0.2, lossType: 'ipo', answers: [] })
  })
})

describe('a cancel during the end-of-training pass', () => {
  it('stops like a cancel in the last step; resuming goes straight to the pass and writes the same pairs.jsonl', async () => {
    const tok = await TextTokenizer.fromDir(STORIES)
    const few = pairs.slice(0, 16)
    const params = resolveTrainParams({ dataSize: 16 })
    const train = (dir: string, native: FakeModel, extra: Partial<Parameters<typeof trainDpo>[3]> = {}) =>
      trainDpo(fakeSession(STORIES, tok, native), few, params, {
        outDir: dir,
        refCacheDir: null,
        engineVersion: 'test',
        cancelTokenFactory: null,
        ...extra,
      })
    const whole = tempDir('dpo-whole-')
    await train(whole, new FakeModel())

    // The engine call with the adapter (the pass) is interrupted, as a cancel token would interrupt it.
    const dir = tempDir('dpo-stop-')
    const ac = new AbortController()
    const stopping = new FakeModel()
    const logps = stopping.logps.bind(stopping)
    stopping.logps = async (batch, pad, cancel, useAdapter = true) => {
      if (useAdapter) {
        ac.abort()
        throw Object.assign(new Error('cancelled'), { code: 'E_CANCELLED' })
      }
      return logps(batch, pad, cancel, useAdapter)
    }
    expect(await train(dir, stopping, { signal: ac.signal })).toMatchObject({
      status: 'cancelled',
      steps: 2,
      maxSteps: 2,
    })
    expect(existsSync(path.join(dir, 'pairs.jsonl'))).toBe(false)
    const checkpoint = readCheckpoint(dir)
    expect(checkpoint?.state.global_step).toBe(2)

    const again = new FakeModel()
    expect(await train(dir, again, { resume: { checkpoint } })).toMatchObject({ status: 'completed', steps: 2 })
    expect(again.callsOf('dpoAccumulate')).toHaveLength(0)
    expect(readFileSync(path.join(dir, 'pairs.jsonl'), 'utf8')).toBe(
      readFileSync(path.join(whole, 'pairs.jsonl'), 'utf8'),
    )
    expect(readFileSync(path.join(dir, 'pairs_tokens.jsonl'), 'utf8')).toBe(
      readFileSync(path.join(whole, 'pairs_tokens.jsonl'), 'utf8'),
    )
  })
})
