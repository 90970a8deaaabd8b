// The support_ratio sweep on the fake engine: one loaded model for every run (its adapter detached before the next
// run's training), the original answers generated once (later runs write the same bytes) and the reference cache
// shared across ratios, sweep.json with per ratio the mean margin toward support over every labelled row (rows beyond
// data_size scored after the run) and the test answers' sides; a stop keeps what finished; data without
// support/oppose and bad ratios are refused. Also the app's sweep reader, and a sweep.json left "running" by a
// crashed engine marked as ended.
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { listSweeps, markSweepEnded, openSweep } from '../../../src-main/api/sweepStore'
import type { ModelSession } from '../../../src-main/services/session/modelSession'
import type { PairInsightRow, SweepFile } from '../../../src-shared/insights/insightTypes'
import { runSweep, sweepRatios } from '../../../src-main/services/insights/sweep'
import { runNotebook } from '../../../src-main/services/training/notebookRun'
import { resolveTrainParams } from '../../../src-shared/params/trainParams'
import { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'
import { tempDir } from '../../helpers/modelFixtures'
import { sharedPath } from '../../helpers/sharedPath'
import { FakeCancelToken, FakeModel, fakeSession } from '../training/fakeEngine'
import { readJsonl } from '../../helpers/insightFiles'

const STORIES = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')
const PROMPTS = path.join(HW6, 'test_prompt.json')
let tok: TextTokenizer

beforeAll(async () => {
  tok = await TextTokenizer.fromDir(STORIES)
})

function deps(native: FakeModel, opened: ModelSession[]) {
  return {
    openModel: async (dir: string) => {
      const s = fakeSession(dir, tok, native)
      opened.push(s)
      return s
    },
    engineVersion: 'test-engine',
    refCacheDir: tempDir('dpo-cache-'),
    cancelTokenFactory: () => new FakeCancelToken(),
  }
}

describe('runSweep', () => {
  let out: string
  let native: FakeModel
  let sweep: SweepFile
  const opened: ModelSession[] = []

  beforeAll(async () => {
    out = path.join(tempDir('dpo-sweep-'), 'sweep')
    native = new FakeModel()
    const params = resolveTrainParams({ dataSize: 16, maxNewTokens: 4 })
    sweep = await runSweep(
      { modelDir: STORIES, datasetPath: HW6, testPromptsPath: PROMPTS, params, ratios: [1, 0], outDir: out },
      {},
      undefined,
      deps(native, opened),
    )
  })

  it('makes one run per ratio, in ascending order, on one loaded model', () => {
    expect(opened).toHaveLength(1)
    expect(sweep).toMatchObject({
      version: 1,
      status: 'completed',
      ratios: [0, 1],
      rows: 50,
      model_dir: STORIES,
      dataset: HW6,
      test_prompts: PROMPTS,
    })
    expect(sweep.params).not.toHaveProperty('supportRatio')
    expect(sweep.runs.map((r) => [r.support_ratio, r.run_dir, r.status, r.pairs, r.support_pairs, r.steps])).toEqual([
      [0, 'ratio-0', 'completed', 16, 0, 2],
      [1, 'ratio-1', 'completed', 16, 16, 2],
    ])
    expect(JSON.parse(readFileSync(path.join(out, 'sweep.json'), 'utf8'))).toEqual(sweep)
    // The original answers are generated once, by the base model (no adapter yet); the second run reuses them and
    // generates only its trained answers.
    expect(native.callsOf('generate').map((g) => g.hasLora)).toEqual([false, true, true])
    expect(native.callsOf('attachLora')).toHaveLength(2)
    expect(JSON.parse(readFileSync(path.join(out, 'ratio-1', 'config.json'), 'utf8')).params.supportRatio).toBe(1)
  })

  it('writes the reused original answers byte for byte as a run of its own writes them', async () => {
    const files = sweep.runs.map((r) => readFileSync(path.join(out, r.run_dir, 'responses_original.json')))
    const alone = path.join(tempDir('dpo-run-'), 'run')
    const params = resolveTrainParams({ dataSize: 16, maxNewTokens: 4, supportRatio: 1 })
    const chatDate = JSON.parse(readFileSync(path.join(out, 'ratio-1', 'config.json'), 'utf8')).params
      .chatDate as string
    await runNotebook(
      { modelDir: STORIES, datasetPath: HW6, testPromptsPath: PROMPTS, params: { ...params, chatDate }, outDir: alone },
      {},
      undefined,
      deps(new FakeModel(), []),
    )
    for (const f of files) expect(f.equals(readFileSync(path.join(alone, 'responses_original.json')))).toBe(true)
    const comparison = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'comparison.json'), 'utf8'))
    expect(comparison(path.join(out, 'ratio-1'))).toEqual(comparison(alone))
  })

  it('shares the reference cache: the second run computes no reference log-probs', () => {
    const summaries = sweep.runs.map(
      (r) => JSON.parse(readFileSync(path.join(out, r.run_dir, 'train_summary.json'), 'utf8')).reference,
    )
    expect(summaries.map((s) => [s.cached, s.computed])).toEqual([
      [0, 16],
      [16, 0],
    ])
  })

  it('averages the margin toward support over all 50 labelled rows: training pairs from pairs.jsonl, the rest scored', () => {
    for (const run of sweep.runs) {
      const pairs = readJsonl<PairInsightRow>(path.join(out, run.run_dir, 'pairs.jsonl'))
      expect(run.row_margins).toHaveLength(50)
      expect(run.row_margins.slice(0, 16)).toEqual(pairs.map((p) => (p.position === 'support' ? p.margin : -p.margin!)))
      // The fake policy moves the first sequence of each scored pair (here: support) up and the second down.
      for (const m of run.row_margins.slice(16)) expect(m!).toBeCloseTo(Math.fround(0.1) * 0.75 * 1, 5)
      expect(run.mean_margin_support).toBeCloseTo(run.row_margins.reduce((a, b) => a! + b!, 0)! / 50, 12)
    }
    // At ratio 0 the training pairs prefer oppose, at 1 support: the mean moves toward support with the ratio.
    expect(sweep.runs[1]!.mean_margin_support!).toBeGreaterThan(sweep.runs[0]!.mean_margin_support!)
  })

  it('counts the test answers by side, trained and original', () => {
    for (const run of sweep.runs) {
      expect(run.stance!.total).toBe(10)
      expect(run.stance!.support + run.stance!.oppose).toBe(10)
      expect(run.stance!.share_support).toBe(run.stance!.support / 10)
      expect(run.stance_original!.total).toBe(10)
    }
  })

  it('lists and opens the sweep for the app, with absolute run directories', async () => {
    const parent = path.dirname(out)
    const list = await listSweeps(parent)
    expect(list).toEqual([
      {
        sweepId: 'sweep',
        dir: out,
        status: 'completed',
        created: sweep.created,
        ratios: [0, 1],
        runs: 2,
        modelDir: STORIES,
        dataset: HW6,
      },
    ])
    const detail = await openSweep(out)
    expect(detail.runDirs).toEqual([path.join(out, 'ratio-0'), path.join(out, 'ratio-1')])
    await expect(openSweep(parent)).rejects.toMatchObject({
      code: 'E_BAD_INPUT',
      message: expect.stringContaining('is not a sweep folder'),
    })
  })
})

describe('runSweep stops and refusals', () => {
  it('a stop during the second run keeps the first, marks the second cancelled and the sweep cancelled', async () => {
    const out = path.join(tempDir('dpo-sweep-'), 'sweep')
    const controller = new AbortController()
    let runs = 0
    const sweep = await runSweep(
      {
        modelDir: STORIES,
        datasetPath: HW6,
        params: resolveTrainParams({ dataSize: 16 }),
        ratios: [0, 0.5, 1],
        outDir: out,
      },
      { sweep: (p) => p.row === undefined && ++runs === 2 && controller.abort() },
      controller.signal,
      deps(new FakeModel(), []),
    )
    expect(sweep.status).toBe('cancelled')
    expect(sweep.runs.map((r) => [r.support_ratio, r.status])).toEqual([
      [0, 'completed'],
      [0.5, 'cancelled'],
    ])
    expect(JSON.parse(readFileSync(path.join(out, 'sweep.json'), 'utf8')).status).toBe('cancelled')
  })

  it('refuses data without support/oppose answers and ratios outside [0, 1]', async () => {
    const trl = path.join(tempDir(), 'pairs.jsonl')
    writeFileSync(trl, JSON.stringify({ prompt: 'p', chosen: 'a', rejected: 'b' }) + '\n')
    const req = { modelDir: STORIES, datasetPath: trl, params: resolveTrainParams(), ratios: [0, 1], outDir: tempDir() }
    await expect(runSweep(req, {}, undefined, deps(new FakeModel(), []))).rejects.toMatchObject({
      code: 'E_BAD_INPUT',
      message: expect.stringContaining('needs the HW6 layout'),
    })
    expect(sweepRatios([1, 0.5, 0.5, 0])).toEqual([0, 0.5, 1])
    expect(() => sweepRatios([0, 1.5])).toThrow('between 0 and 1, got 1.5')
    expect(() => sweepRatios([])).toThrow('at least one')
  })
})

describe('markSweepEnded', () => {
  it('marks a sweep.json left "running" by a crashed engine, and leaves finished ones alone', () => {
    const dir = tempDir('dpo-sweep-')
    const base = { version: 1, status: 'running', created: 'x', updated: 'x', runs: [], ratios: [0] }
    writeFileSync(path.join(dir, 'sweep.json'), JSON.stringify(base))
    markSweepEnded(dir, 'failed', 'the engine process was killed (SIGKILL)')
    expect(JSON.parse(readFileSync(path.join(dir, 'sweep.json'), 'utf8'))).toMatchObject({
      status: 'failed',
      error: 'the engine process was killed (SIGKILL)',
    })
    writeFileSync(path.join(dir, 'sweep.json'), JSON.stringify({ ...base, status: 'completed' }))
    markSweepEnded(dir, 'failed', 'late')
    expect(JSON.parse(readFileSync(path.join(dir, 'sweep.json'), 'utf8')).status).toBe('completed')
    markSweepEnded(tempDir(), 'cancelled', null) // no sweep.json: nothing to do
  })
})
