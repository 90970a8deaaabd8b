// Engine jobs (one at a time: the host holds one model): standalone generation, notebook runs and sweeps. Forwards the
// host's events to every window, keeps a snapshot for windows opened mid-run, and records each run's outcome in
// run_status.json, so a run whose host crashed is marked failed and its directory stays consistent.
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { basename, join } from 'node:path'
import type {
  ApiErrorInfo,
  ApiEvent,
  JobEvent,
  JobKind,
  JobSnapshot,
  JobStarted,
  MetricsRow,
  RecordId,
} from '../../src-shared/api/contract'
import type { EngineHost, HostCall } from '../host/engineHost'
import type { TrainParams } from '../../src-shared/params/trainParams'
import { StudioError } from '../services/errors'
import { promptStyleOf } from '../services/session/promptText'
import { toApiError } from './errorInfo'
import { applyJobEvent } from '../../src-shared/api/jobEvents'
import {
  ensureRunDir,
  readRunStatus,
  updateRunStatus,
  writeRunStatus,
  type RunStatusFile,
} from '../services/training/runDir'
import { ensureSweepDir } from '../services/insights/sweepDir'
import { markSweepEnded } from './sweepStore'

function newRunId(): string {
  const d = new Date()
  const p = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}-${randomBytes(2).toString('hex')}`
}

export interface GenerateJobInput {
  modelDir: string
  prompts: Array<{ id: RecordId; prompt: string }>
  params: TrainParams
}

export interface RunJobInput {
  modelDir: string
  datasetPath: string
  testPromptsPath: string | undefined
  prompts: Array<{ id: RecordId; prompt: string }>
  params: TrainParams
}

export interface ResumeJobInput {
  runDir: string
  modelDir: string
  datasetPath: string
  testPromptsPath: string | undefined
  prompts: Array<{ id: RecordId; prompt: string }>
  /** The run's logged steps up to its checkpoint: the live view starts with them. */
  metrics: MetricsRow[]
}

export interface SweepJobInput {
  modelDir: string
  datasetPath: string
  testPromptsPath: string | undefined
  params: TrainParams
  ratios: number[]
  /** The sweep gets a new folder here, named like a run. */
  sweepsDir: string
}

/** Records how a job ended (run_status.json for runs, sweep.json for sweeps). */
type RecordEnd = (end: 'completed' | 'cancelled' | 'failed', error: ApiErrorInfo | null, summary?: unknown) => void

export class JobManager {
  private active: { snap: JobSnapshot; call: HostCall<unknown>; done: Promise<void>; record: RecordEnd } | null = null
  private last: JobSnapshot | null = null

  constructor(
    private readonly host: EngineHost,
    private readonly runsDir: string,
    private readonly emit: (e: ApiEvent) => void,
    private readonly engineVersion: () => string | null,
  ) {}

  snapshot(): JobSnapshot | null {
    return this.active?.snap ?? this.last
  }

  cancel(jobId: string): boolean {
    if (this.active?.snap.jobId !== jobId) return false
    this.active.call.cancel()
    return true
  }

  startGenerate(input: GenerateJobInput): JobStarted {
    this.ensureIdle()
    const snap = this.newSnapshot('generate', null, input.prompts)
    const call = this.host.call(
      'generate',
      {
        modelDir: input.modelDir,
        quant: input.params.quant,
        backend: input.params.backend,
        prompts: input.prompts,
        maxNewTokens: input.params.maxNewTokens,
        ...promptStyleOf(input.params),
        system: input.params.systemMessage,
      },
      (e) => this.onEvent(snap, e),
    )
    this.track(snap, call, () => undefined)
    return { jobId: snap.jobId, runId: null, outDir: null }
  }

  startRun(input: RunJobInput): JobStarted {
    this.ensureIdle()
    const runId = newRunId()
    const outDir = join(this.runsDir, runId)
    ensureRunDir(outDir)
    // pid/hostname: this process until the engine host's run takes over the record; a run whose recorded process
    // is gone is marked failed when the app next starts (docs/run-directory.md).
    const status: RunStatusFile = {
      runId,
      status: 'running',
      startedAt: new Date().toISOString(),
      endedAt: null,
      modelDir: input.modelDir,
      datasetPath: input.datasetPath,
      testPromptsPath: input.testPromptsPath ?? null,
      engineVersion: this.engineVersion(),
      error: null,
      pid: process.pid,
      hostname: hostname(),
      phase: 'load',
    }
    const request = {
      modelDir: input.modelDir,
      datasetPath: input.datasetPath,
      ...(input.testPromptsPath ? { testPromptsPath: input.testPromptsPath } : {}),
      params: input.params,
      outDir,
    }
    return this.launchRun(outDir, status, input.prompts, [], (snap) =>
      this.host.call('runNotebook', request, (e) => this.onEvent(snap, e)),
    )
  }

  /** A support_ratio sweep (docs/insights.md) into a new folder under sweepsDir; its id is the folder name. */
  startSweep(input: SweepJobInput): JobStarted {
    this.ensureIdle()
    const sweepId = newRunId()
    const outDir = join(input.sweepsDir, sweepId)
    ensureSweepDir(outDir, { modelDir: input.modelDir })
    const snap = this.newSnapshot('sweep', sweepId, [])
    const request = {
      modelDir: input.modelDir,
      datasetPath: input.datasetPath,
      ...(input.testPromptsPath ? { testPromptsPath: input.testPromptsPath } : {}),
      params: input.params,
      ratios: input.ratios,
      outDir,
    }
    this.track(
      snap,
      this.host.call('runSweep', request, (e) => this.onEvent(snap, e)),
      (end, error) => {
        if (end !== 'completed') markSweepEnded(outDir, end, error?.message ?? null)
      },
    )
    return { jobId: snap.jobId, runId: sweepId, outDir }
  }

  /** Continues a stopped run in its own directory (docs/resume.md); run_status.json keeps its history. */
  resumeRun(input: ResumeJobInput): JobStarted {
    this.ensureIdle()
    const outDir = input.runDir
    const now = new Date().toISOString()
    // A CLI run made before run_status.json existed has none yet.
    const previous: Partial<RunStatusFile> = readRunStatus(outDir) ?? {}
    const status: RunStatusFile = {
      runId: basename(outDir),
      startedAt: now,
      modelDir: input.modelDir,
      datasetPath: input.datasetPath,
      testPromptsPath: input.testPromptsPath ?? null,
      ...previous,
      summary: undefined,
      status: 'running',
      endedAt: null,
      engineVersion: this.engineVersion(),
      error: null,
      resumedAt: now,
      pid: process.pid,
      hostname: hostname(),
      phase: 'load',
      cancelledIn: undefined,
      reason: undefined,
    }
    return this.launchRun(outDir, status, input.prompts, input.metrics, (snap) =>
      this.host.call('resumeRun', { runDir: outDir }, (e) => this.onEvent(snap, e)),
    )
  }

  private launchRun(
    outDir: string,
    status: RunStatusFile,
    prompts: JobSnapshot['prompts'],
    metrics: MetricsRow[],
    call: (snap: JobSnapshot) => HostCall<unknown>,
  ): JobStarted {
    writeRunStatus(outDir, status)
    const snap = this.newSnapshot('run', status.runId, prompts)
    snap.metrics = [...metrics]
    this.track(snap, call(snap), (end, error, summary) => {
      // Merged: the run's own record (phase, where it was cancelled) stays.
      updateRunStatus(
        outDir,
        {
          status: end,
          endedAt: new Date().toISOString(),
          error: error?.message ?? null,
          ...(summary ? { summary } : {}),
        },
        status,
      )
    })
    return { jobId: snap.jobId, runId: status.runId, outDir }
  }

  /**
   * Before the app or web host exits: cancel the job in progress and wait for its clean stop (the run keeps what it
   * finished and records where it stopped). A job that has not stopped after `timeoutMs` is recorded as cancelled by
   * the shutdown, so no run stays 'running' in its run_status.json.
   */
  async shutdown(timeoutMs = 30_000): Promise<void> {
    const active = this.active
    if (!active) return
    active.call.cancel()
    let timer: NodeJS.Timeout | undefined
    const ended = await Promise.race([
      active.done.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs))),
    ])
    clearTimeout(timer)
    if (!ended && this.active === active) {
      const error = {
        code: 'E_CANCELLED',
        message: `the app was closed while the run was stopping (waited ${Math.round(timeoutMs / 1000)} s); what finished before is kept`,
      }
      this.finish(active.snap, 'cancelled', error, undefined, active.record)
    }
  }

  private ensureIdle(): void {
    const what = { run: 'training run', sweep: 'support_ratio sweep', generate: 'generation' }[
      this.active?.snap.kind ?? 'run'
    ]
    if (this.active) throw new StudioError('E_BUSY', `the engine is busy with a ${what}; cancel it or wait`)
  }

  private newSnapshot(kind: JobKind, runId: string | null, prompts: JobSnapshot['prompts']): JobSnapshot {
    return {
      jobId: randomBytes(6).toString('hex'),
      kind,
      runId,
      status: 'running',
      phase: 'load',
      detail: '',
      metrics: [],
      progress: null,
      original: prompts.map(() => ''),
      trained: prompts.map(() => ''),
      prompts,
      log: [],
      error: null,
      startedAt: new Date().toISOString(),
    }
  }

  private track(snap: JobSnapshot, call: HostCall<unknown>, record: RecordEnd): void {
    const done = call.promise.then(
      (result) => {
        // Runs answer with a summary, sweeps with sweep.json: both say 'cancelled' when stopped.
        const cancelled = (result as { status?: string } | null)?.status === 'cancelled'
        this.finish(snap, cancelled ? 'cancelled' : 'completed', null, result, record)
      },
      (e) => {
        const err = toApiError(e)
        this.finish(
          snap,
          err.code === 'E_CANCELLED' ? 'cancelled' : 'failed',
          err.code === 'E_CANCELLED' ? null : err,
          undefined,
          record,
        )
      },
    )
    this.active = { snap, call, done, record }
  }

  private finish(
    snap: JobSnapshot,
    end: 'completed' | 'cancelled' | 'failed',
    error: ApiErrorInfo | null,
    result: unknown,
    record: RecordEnd,
  ): void {
    if (this.active?.snap !== snap) return // already finished (by shutdown)
    try {
      record(end, error, result)
    } catch (e) {
      error ??= toApiError(e)
    }
    const summary = snap.kind === 'run' && result ? (result as never) : undefined
    const event: JobEvent = { kind: 'end', status: end, ...(summary ? { summary } : {}), ...(error ? { error } : {}) }
    Object.assign(snap, applyJobEvent(snap, event))
    this.active = null
    this.last = snap
    this.emitJob(snap, event)
  }

  private onEvent(snap: JobSnapshot, e: JobEvent): void {
    Object.assign(snap, applyJobEvent(snap, e))
    this.emitJob(snap, e)
  }

  private emitJob(snap: JobSnapshot, event: JobEvent): void {
    this.emit({ type: 'job', jobId: snap.jobId, jobKind: snap.kind, runId: snap.runId, event })
  }
}
