// Sweep folders follow the rules of run directories (docs/run-directory.md "Sweep folders"), on the fake engine: a
// model folder, a run directory, a file or any foreign non-empty folder is refused with nothing written; a sweep folder
// in use is locked; a run never goes into a sweep folder; folders of an earlier version (no markers, the insights
// files in each run) are adopted; a sweep and its ratio run left "running" by a process that is gone are marked failed.
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { listSweeps, openSweep } from '../../../src-main/api/sweepStore'
import { runSweep } from '../../../src-main/services/insights/sweep'
import { ensureSweepDir, lockSweepDir, SWEEP_MARKER_FILE } from '../../../src-main/services/insights/sweepDir'
import { resolveTrainParams } from '../../../src-shared/params/trainParams'
import { ensureRunDir, RUN_MARKER_FILE } from '../../../src-main/services/training/runDir'
import { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'
import { tempDir } from '../../helpers/modelFixtures'
import { sharedPath } from '../../helpers/sharedPath'
import { FakeCancelToken, FakeModel, fakeSession } from '../training/fakeEngine'

const STORIES = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')
const PROMPTS = path.join(HW6, 'test_prompt.json')
/** No process has this pid (above the pid range in use here). */
const GONE_PID = 4194305
let tok: TextTokenizer

const deps = () => ({
  openModel: async (dir: string) => fakeSession(dir, tok, new FakeModel()),
  engineVersion: 'test-engine',
  refCacheDir: tempDir('dpo-cache-'),
  cancelTokenFactory: () => new FakeCancelToken(),
})
const request = (outDir: string, modelDir = STORIES) => ({
  modelDir,
  datasetPath: HW6,
  testPromptsPath: PROMPTS,
  params: resolveTrainParams({ dataSize: 8, maxNewTokens: 4 }),
  ratios: [0, 1],
  outDir,
})
const readJson = (...p: string[]) => JSON.parse(readFileSync(path.join(...p), 'utf8'))
const listing = (dir: string) =>
  Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [f, readFileSync(path.join(dir, f), 'utf8')]),
  )

/** A finished sweep made once, copied by the tests that change it. */
let made: string

beforeAll(async () => {
  tok = await TextTokenizer.fromDir(STORIES)
  made = path.join(tempDir('dpo-sweepdir-'), 'sweep')
  await runSweep(request(made), {}, undefined, deps())
})

function copyOfSweep(): string {
  const dir = path.join(tempDir('dpo-sweepcopy-'), 'sweep')
  cpSync(made, dir, { recursive: true })
  return dir
}

describe('sweep --out ownership', () => {
  it('marks its folder and each ratio run directory, and leaves no lock behind', () => {
    expect(readJson(made, SWEEP_MARKER_FILE)).toMatchObject({ dpo_studio_sweep: 1 })
    expect(readdirSync(made).sort()).toEqual([SWEEP_MARKER_FILE, 'ratio-0', 'ratio-1', 'sweep.json'])
    for (const r of ['ratio-0', 'ratio-1']) {
      expect(readdirSync(path.join(made, r))).toEqual(
        expect.arrayContaining([RUN_MARKER_FILE, 'pairs.jsonl', 'pairs_tokens.jsonl', 'responses_tokens.jsonl']),
      )
      expect(readdirSync(path.join(made, r))).not.toContain('.dpo-studio-run.lock')
    }
    expect(readJson(made, 'sweep.json')).toMatchObject({ status: 'completed', pid: process.pid, hostname: hostname() })
  })

  it('refuses a folder inside the model folder, writing nothing there', async () => {
    const model = tempDir('dpo-sweepmodel-')
    cpSync(STORIES, model, { recursive: true })
    const before = listing(model)
    await expect(
      runSweep(request(path.join(model, 'sweeps', 'a'), model), {}, undefined, deps()),
    ).rejects.toMatchObject({
      code: 'E_NOT_RUN_DIR',
      message: expect.stringContaining('is inside the model folder'),
    })
    await expect(runSweep(request(model, model), {}, undefined, deps())).rejects.toMatchObject({
      code: 'E_NOT_RUN_DIR',
    })
    expect(listing(model)).toEqual(before)
  })

  it('refuses a foreign non-empty folder, a run directory and a file, byte for byte', async () => {
    const notes = tempDir('dpo-notes-')
    writeFileSync(path.join(notes, 'sweep.json'), '{"mine": true}')
    await expect(runSweep(request(notes), {}, undefined, deps())).rejects.toMatchObject({
      code: 'E_NOT_RUN_DIR',
      message: expect.stringContaining('is not a DPO Studio sweep folder'),
    })
    expect(listing(notes)).toEqual({ 'sweep.json': '{"mine": true}' })

    const run = path.join(made, 'ratio-0')
    const before = readdirSync(run).sort()
    expect(() => ensureSweepDir(run)).toThrow(/is not empty and is not a DPO Studio sweep folder/)
    expect(readdirSync(run).sort()).toEqual(before)

    const file = path.join(tempDir(), 'f')
    writeFileSync(file, 'x')
    expect(() => ensureSweepDir(file)).toThrow(/is a file, not a directory/)
  })

  it('a run never goes into a sweep folder', () => {
    const before = readdirSync(made).sort()
    expect(() => ensureRunDir(made)).toThrow(/is not empty and is not a DPO Studio run directory/)
    expect(readdirSync(made).sort()).toEqual(before)
  })

  it('a second sweep on a folder in use fails at once, naming the holder', async () => {
    const dir = copyOfSweep()
    const lock = lockSweepDir(dir, 'dpo-studio sweep (test)')
    try {
      await expect(runSweep(request(dir), {}, undefined, deps())).rejects.toMatchObject({
        code: 'E_RUN_LOCKED',
        message: expect.stringContaining(
          `sweep folder ${dir} is in use by dpo-studio sweep (test) (pid ${process.pid} on ${hostname()}`,
        ),
      })
    } finally {
      lock.release()
    }
    expect(readJson(dir, 'sweep.json').status).toBe('completed')
  })

  it('adopts a sweep folder of an earlier version: no markers, the insights files in each run', () => {
    const dir = copyOfSweep()
    rmSync(path.join(dir, SWEEP_MARKER_FILE))
    for (const r of ['ratio-0', 'ratio-1']) rmSync(path.join(dir, r, RUN_MARKER_FILE))
    ensureSweepDir(dir)
    expect(existsSync(path.join(dir, SWEEP_MARKER_FILE))).toBe(true)
    // pairs.jsonl, pairs_tokens.jsonl and responses_tokens.jsonl are ours: the run directory is adopted too.
    ensureRunDir(path.join(dir, 'ratio-1'))
    expect(existsSync(path.join(dir, 'ratio-1', RUN_MARKER_FILE))).toBe(true)
    // ... but not with a foreign file beside them.
    writeFileSync(path.join(dir, 'ratio-0', 'notes.txt'), 'mine')
    expect(() => ensureRunDir(path.join(dir, 'ratio-0'))).toThrow(/not a DPO Studio run directory/)
  })
})

describe('a sweep whose process is gone', () => {
  it('is marked failed when sweeps are listed or opened, with the ratio run that was in progress', async () => {
    const dir = copyOfSweep()
    const sweep = readJson(dir, 'sweep.json')
    // Killed during the second ratio's training: sweep.json and that run's status still say running.
    writeFileSync(
      path.join(dir, 'sweep.json'),
      JSON.stringify({ ...sweep, status: 'running', pid: GONE_PID, runs: sweep.runs.slice(0, 1) }),
    )
    const status = readJson(dir, 'ratio-1', 'run_status.json')
    writeFileSync(
      path.join(dir, 'ratio-1', 'run_status.json'),
      JSON.stringify({ ...status, status: 'running', phase: 'train', pid: GONE_PID, endedAt: null }),
    )

    const [item] = await listSweeps(path.dirname(dir))
    expect(item).toMatchObject({ status: 'failed', runs: 1 })
    expect(readJson(dir, 'sweep.json')).toMatchObject({
      status: 'failed',
      error: expect.stringMatching(/^stopped after 1 of 2 runs: the process that ran it \(pid 4194305\) is gone/),
    })
    expect(readJson(dir, 'ratio-1', 'run_status.json')).toMatchObject({
      status: 'failed',
      error: expect.stringContaining('stopped during training'),
    })
    expect(readJson(dir, 'ratio-0', 'run_status.json').status).toBe('completed')
  })

  it('is left alone while its process runs, and on another host', async () => {
    const dir = copyOfSweep()
    const sweep = readJson(dir, 'sweep.json')
    writeFileSync(path.join(dir, 'sweep.json'), JSON.stringify({ ...sweep, status: 'running', pid: process.pid }))
    expect((await openSweep(dir)).sweep.status).toBe('running')
    writeFileSync(
      path.join(dir, 'sweep.json'),
      JSON.stringify({ ...sweep, status: 'running', pid: GONE_PID, hostname: 'elsewhere' }),
    )
    expect((await openSweep(dir)).sweep.status).toBe('running')
  })
})
