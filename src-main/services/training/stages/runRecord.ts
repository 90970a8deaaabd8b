// run_status.json as a notebook run goes (docs/run-directory.md): its start, each phase, and how it ended
// (completed, cancelled and where, failed with the error), plus the events that tell the windows the same.
import { hostname } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { readFileSync } from 'node:fs'
import { writeJsonAtomic } from '../../fsAtomic'
import { errorMessage } from '../../errors'
import { phaseWords, updateRunStatus, type RunStatusFile } from '../runDir'
import { SUMMARY_FILE } from '../runFiles'
import type { NotebookRunRequest, RunEvents, RunPhase, RunSummary } from '../../../../src-shared/run/runTypes'

export class RunRecord {
  /** What the run is doing (where a cancel or failure happened). */
  phase: RunPhase = 'load'
  /** Set once the run directory is ours and locked: only then is run_status.json written. */
  private owned = false

  constructor(
    private readonly outDir: string,
    private readonly events: RunEvents,
    private readonly t0: number,
  ) {}

  /** The run is under way: run_status.json says so, with this process and the run's inputs. */
  start(req: NotebookRunRequest, created: string, engineVersion: string): void {
    this.owned = true
    updateRunStatus(
      this.outDir,
      {
        status: 'running',
        startedAt: created,
        endedAt: null,
        error: null,
        pid: process.pid,
        hostname: hostname(),
        phase: 'load',
        cancelledIn: undefined,
        reason: undefined,
        summary: undefined,
      },
      {
        runId: basename(this.outDir),
        status: 'running',
        startedAt: created,
        endedAt: null,
        modelDir: resolve(req.modelDir),
        datasetPath: resolve(req.datasetPath),
        testPromptsPath: req.testPromptsPath ? resolve(req.testPromptsPath) : null,
        engineVersion,
        error: null,
      },
    )
  }

  /** Also the trainer's phase event, so its phases (reference, train, save) go into run_status.json too. */
  readonly setPhase = (p: RunPhase, detail?: string): void => {
    this.phase = p
    if (p !== 'cancelled' && p !== 'failed' && p !== 'done') this.record({ phase: p })
    this.events.phase?.(p, detail)
  }

  cancelled(extra: Partial<RunSummary> = {}): RunSummary {
    const where = extra.cancelledIn ?? this.phase
    const reason = `cancelled during ${phaseWords(where)}`
    const summary: RunSummary = {
      outDir: this.outDir,
      steps: 0,
      trainLoss: NaN,
      pairsPerS: 0,
      ...extra,
      runtimeS: (performance.now() - this.t0) / 1000,
      status: 'cancelled',
      cancelledIn: where,
    }
    // Training may have completed before the cancel: its summary must not read as a completed run.
    if (where === 'trained') markTrainSummary(this.outDir, where)
    this.record({
      status: 'cancelled',
      phase: where,
      cancelledIn: where,
      reason,
      endedAt: new Date().toISOString(),
      summary,
    })
    this.setPhase('cancelled', reason)
    return summary
  }

  completed(trained: RunSummary): RunSummary {
    const done = { ...trained, runtimeS: (performance.now() - this.t0) / 1000 }
    this.record({ status: 'completed', phase: 'done', endedAt: new Date().toISOString(), summary: done })
    this.setPhase('done', this.outDir)
    return done
  }

  failed(e: unknown): void {
    try {
      this.record({ status: 'failed', phase: this.phase, error: errorMessage(e), endedAt: new Date().toISOString() })
    } catch {
      /* the first error says more than failing to record it */
    }
    this.events.phase?.('failed', errorMessage(e))
  }

  private record(patch: Partial<RunStatusFile>): void {
    if (this.owned) updateRunStatus(this.outDir, patch)
  }
}

/**
 * train_summary.json after a cancel in a later phase: the run was cancelled even though training completed
 * (status cancelled, training_status kept). `null`: the run completed after all (a resume), so back to completed.
 */
export function markTrainSummary(outDir: string, cancelledIn: RunPhase | null): void {
  const file = join(outDir, SUMMARY_FILE)
  let s: Record<string, unknown>
  try {
    s = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
  } catch {
    return
  }
  if (cancelledIn)
    writeJsonAtomic(file, {
      ...s,
      status: 'cancelled',
      training_status: s.training_status ?? s.status,
      cancelled_in: cancelledIn,
    })
  else if (s.training_status !== undefined) {
    const { training_status, cancelled_in: _, ...rest } = s
    writeJsonAtomic(file, { ...rest, status: training_status })
  }
}
