// Cancel, then Resume, through the app's API and the real engine host (node fork, the addon on CPU; docs/resume.md):
// with LoRA dropout on, a run cancelled in the middle of a step continues from its cancel checkpoint to the same
// adapter and metrics as a run that was never stopped; the run list offers it as resumable until it completes, and
// the web host's path rules apply to the inputs a resumed run reads.
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ApiEvent, JobStatus } from '../../../src-shared/api/contract'
import { createApi, type ApiService } from '../../../src-main/api/handlers'
import { openPolicy, rootedPolicy } from '../../../src-main/api/pathPolicy'
import { EngineHost } from '../../../src-main/host/engineHost'
import { forkSpawner } from '../../../src-main/host/forkTransport'
import { resolveTrainParams } from '../../../src-shared/params/trainParams'
import { readCheckpoint } from '../../../src-main/services/training/checkpoint'
import { sharedPath } from '../../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')
// 16 pairs, 4 micro-batches per step: 4 steps; dropout on, so the dropout generator is part of what is resumed.
const PARAMS = resolveTrainParams({
  dataSize: 16,
  gradAccum: 4,
  maxNewTokens: 6,
  disableDropout: false,
  loraDropout: 0.1,
  optim: 'adamw',
  backend: 'cpu',
})

let host: EngineHost
let api: ApiService
let dataDir: string
const events: ApiEvent[] = []
let onEvent: (e: ApiEvent) => void = () => undefined

beforeAll(() => {
  process.env.DPO_STUDIO_CACHE = mkdtempSync(path.join(tmpdir(), 'dpo-cache-'))
  host = new EngineHost({ spawn: forkSpawner(undefined, process.env), restartDelayMs: 50 })
  host.start()
  dataDir = mkdtempSync(path.join(tmpdir(), 'dpo-data-'))
  api = createApi({
    platform: 'electron',
    version: 'test',
    dataDir,
    host,
    policy: openPolicy(),
    emit: (e) => (events.push(e), onEvent(e)),
    dialogs: null,
  })
})
afterAll(async () => host.stop())

/** Resolves with the end status of job `jobId`. */
function ended(jobId: string): Promise<JobStatus> {
  return new Promise((resolve) => {
    const check = () => {
      const end = events.find((e) => e.type === 'job' && e.jobId === jobId && e.event.kind === 'end')
      if (end && end.type === 'job' && end.event.kind === 'end') resolve(end.event.status)
      else setTimeout(check, 25)
    }
    check()
  })
}

const numbers = (dir: string) =>
  readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const { elapsed_s: _e, pairs_per_s: _p, ...rest } = JSON.parse(l) as Record<string, unknown>
      return rest
    })
const start = () =>
  api.handlers.runStart({
    modelDir: STORIES,
    datasetPath: HW6,
    testPromptsPath: path.join(HW6, 'test_prompt.json'),
    params: PARAMS,
  })

describe('Resume through the API', () => {
  it('continues a run cancelled mid-step to the uninterrupted run’s adapter, metrics and answers', async () => {
    const whole = await start()
    expect(await ended(whole.jobId)).toBe('completed')

    // Cancel once step 1 is done and step 2 has begun (5 pairs: one micro-batch into step 2).
    const stopped = await start()
    onEvent = (e) => {
      if (
        e.type === 'job' &&
        e.jobId === stopped.jobId &&
        e.event.kind === 'progress' &&
        e.event.progress.stage !== 'reference' &&
        e.event.progress.pairsDone === 5
      ) {
        onEvent = () => undefined
        void api.handlers.jobCancel({ jobId: stopped.jobId })
      }
    }
    expect(await ended(stopped.jobId)).toBe('cancelled')
    const dir = stopped.outDir!
    const at = readCheckpoint(dir)!.state.global_step
    expect(at).toBeGreaterThanOrEqual(1)
    expect(at).toBeLessThan(4)
    // Micro-batches of the unfinished step ran (and drew dropout masks) before the cancel: the checkpoint must not hold them.
    expect(JSON.parse(readFileSync(path.join(dir, 'train_summary.json'), 'utf8')).pairs_trained).toBeGreaterThan(at * 4)
    const listed = (await api.handlers.runsList(undefined)).find((r) => r.runId === stopped.runId)!
    expect(listed).toMatchObject({ status: 'cancelled', resumable: true, resumeFromStep: at })

    const resumed = await api.handlers.runResume({ run: stopped.runId! })
    expect(resumed).toMatchObject({ runId: stopped.runId, outDir: dir })
    // The live view starts with the steps already done.
    expect((await api.handlers.jobActive(undefined))!.metrics.map((m) => m.step)).toEqual(
      Array.from({ length: at }, (_, i) => i + 1),
    )
    await expect(api.handlers.runResume({ run: stopped.runId! })).rejects.toMatchObject({ code: 'E_BUSY' })
    expect(await ended(resumed.jobId)).toBe('completed')

    const w = whole.outDir!
    expect(
      readFileSync(path.join(dir, 'adapter/adapter_model.safetensors')).equals(
        readFileSync(path.join(w, 'adapter/adapter_model.safetensors')),
      ),
    ).toBe(true)
    expect(numbers(dir)).toEqual(numbers(w))
    expect(readFileSync(path.join(dir, 'comparison.json'), 'utf8')).toBe(
      readFileSync(path.join(w, 'comparison.json'), 'utf8'),
    )
    expect(readFileSync(path.join(dir, 'steps.jsonl'), 'utf8')).toBe(readFileSync(path.join(w, 'steps.jsonl'), 'utf8'))
    const status = JSON.parse(readFileSync(path.join(dir, 'run_status.json'), 'utf8')) as Record<string, unknown>
    expect(status).toMatchObject({ status: 'completed', runId: stopped.runId, error: null })
    expect(typeof status.resumedAt).toBe('string')
    const after = (await api.handlers.runsList(undefined)).find((r) => r.runId === stopped.runId)!
    expect(after).toMatchObject({ status: 'completed', resumable: false, steps: 4 })
    expect(readCheckpoint(dir)).toBeNull()
    await expect(api.handlers.runResume({ run: stopped.runId! })).rejects.toMatchObject({ code: 'E_NOT_RESUMABLE' })
  })

  it('in the web host, refuses to resume a run whose inputs lie outside the allowed folders', async () => {
    const stopped = await start()
    onEvent = (e) => {
      if (e.type === 'job' && e.jobId === stopped.jobId && e.event.kind === 'phase' && e.event.phase === 'train') {
        onEvent = () => undefined
        void api.handlers.jobCancel({ jobId: stopped.jobId })
      }
    }
    expect(await ended(stopped.jobId)).toBe('cancelled')
    const web = createApi({
      platform: 'web',
      version: 'test',
      dataDir,
      host,
      policy: rootedPolicy([{ label: 'data', path: dataDir }]),
      emit: () => undefined,
      dialogs: null,
    })
    await expect(web.handlers.runResume({ run: stopped.runId! })).rejects.toMatchObject({ code: 'E_FORBIDDEN' })
  })
})
