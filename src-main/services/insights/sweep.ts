// The support_ratio sweep (docs/insights.md): one notebook run per ratio on one loaded model, every run sharing the
// reference log-prob cache (a pair at another ratio is the same two sequences swapped) and the original answers
// (generated once, by the first run), then per ratio the mean margin toward "support" over every labelled row and the
// share of test answers nearest to each side, kept in sweep.json (rewritten after each run, so a stopped sweep still
// shows what finished).
import { existsSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { isAbsolute, join, relative, resolve } from 'node:path'
import { loadPreferenceData, type PreferenceRow } from '../data/preferenceFile'
import { loadPromptsFile } from '../data/promptsFile'
import { StudioError, errorMessage } from '../errors'
import { writeJsonAtomic } from '../fsAtomic'
import { openModel as openModelDefault, type ModelSession } from '../session/modelSession'
import type { TrainParams } from '../../../src-shared/params/trainParams'
import { runNotebook, type NotebookDeps } from '../training/notebookRun'
import { OriginalAnswersMemo } from '../training/originalAnswersMemo'
import { RESPONSES_ORIGINAL_FILE, RESPONSES_TRAINED_FILE } from '../training/runFiles'
import { RefLogpsCache, refCacheDir } from '../training/refCache'
import { addonVersion } from '../training/addonDefaults'
import type { ResponseRow, RunEvents } from '../../../src-shared/run/runTypes'
import {
  SWEEP_FILE,
  type StanceCount,
  type SweepFile,
  type SweepRunRow,
} from '../../../src-shared/insights/insightTypes'
import { meanMargin, stanceCount, supportMargins } from './supportMargins'
import { ensureSweepDir, lockSweepDir } from './sweepDir'

export interface SweepRequest {
  modelDir: string
  datasetPath: string
  testPromptsPath?: string | undefined
  /** Every run's parameters; supportRatio is replaced by each ratio. */
  params: TrainParams
  ratios: readonly number[]
  /** The sweep folder: sweep.json, and ratio-<r>/ run directories. */
  outDir: string
}

export interface SweepProgress {
  /** 0-based run being made (or just made), of total. */
  index: number
  total: number
  ratio: number
  runDir: string
  /** Set when that run has finished. */
  row?: SweepRunRow
}

export interface SweepEvents extends RunEvents {
  sweep?(p: SweepProgress): void
}

/** Checks and orders the ratios: each in [0, 1], no repeats, ascending. */
export function sweepRatios(ratios: readonly number[]): number[] {
  if (ratios.length === 0) throw new StudioError('E_BAD_INPUT', 'a sweep needs at least one support_ratio')
  for (const r of ratios) {
    if (!Number.isFinite(r) || r < 0 || r > 1)
      throw new StudioError('E_BAD_INPUT', `support_ratio must be between 0 and 1, got ${r}`, {
        details: { field: 'supportRatio' },
      })
  }
  return [...new Set(ratios)].sort((a, b) => a - b)
}

/** The run directory name of a ratio: ratio-0.25. */
export function ratioDirName(ratio: number): string {
  return `ratio-${ratio}`
}

export async function runSweep(
  req: SweepRequest,
  events: SweepEvents = {},
  signal?: AbortSignal,
  deps: NotebookDeps = {},
): Promise<SweepFile> {
  const ratios = sweepRatios(req.ratios)
  const data = await loadPreferenceData(req.datasetPath)
  if (data.format !== 'hw6') {
    throw new StudioError(
      'E_BAD_INPUT',
      `${data.file}: a support_ratio sweep needs the HW6 layout (rows with "support" and "oppose"); this file has chosen/rejected pairs`,
    )
  }
  // Every input is checked before the folder is touched (the runs read the test prompts again).
  if (req.testPromptsPath) await loadPromptsFile(req.testPromptsPath)
  // The folder must be ours (never a model folder, a run directory or someone's files) and not in use by another
  // sweep (docs/run-directory.md); from here on it is locked. Each ratio's run directory is checked and locked too.
  const outDir = resolve(req.outDir)
  ensureSweepDir(outDir, { modelDir: req.modelDir })
  const lock = lockSweepDir(outDir, 'dpo-studio sweep')
  try {
    return await sweepInLockedDir(req, ratios, data, outDir, events, signal, deps)
  } finally {
    lock.release()
  }
}

async function sweepInLockedDir(
  req: SweepRequest,
  ratios: number[],
  data: Awaited<ReturnType<typeof loadPreferenceData>>,
  outDir: string,
  events: SweepEvents,
  signal: AbortSignal | undefined,
  deps: NotebookDeps,
): Promise<SweepFile> {
  const engineVersion = deps.engineVersion ?? addonVersion()
  const { supportRatio: _ratio, ...shared } = req.params
  void _ratio
  const now = new Date().toISOString()
  const sweep: SweepFile = {
    version: 1,
    status: 'running',
    pid: process.pid,
    hostname: hostname(),
    created: now,
    updated: now,
    model_dir: resolve(req.modelDir),
    dataset: resolve(req.datasetPath),
    test_prompts: req.testPromptsPath ? resolve(req.testPromptsPath) : null,
    ratios,
    params: shared,
    rows: data.rows.length,
    runs: [],
  }
  const save = (status: SweepFile['status'], error?: string) => {
    sweep.status = status
    sweep.updated = new Date().toISOString()
    if (error !== undefined) sweep.error = error
    // In place when a full disk leaves no room for a temp copy: "failed: disk full" must land (as run_status.json).
    writeJsonAtomic(join(outDir, SWEEP_FILE), sweep, { inPlaceWhenFull: true })
  }
  /** Records a failure; the error that caused it says more than failing to record it. */
  const saveFailed = (error: string) => {
    try {
      save('failed', error)
    } catch {
      /* thrown on below */
    }
  }
  save('running')

  let base: ModelSession | null = null
  try {
    events.phase?.('load', resolve(req.modelDir))
    base = await (deps.openModel ?? openModelDefault)(req.modelDir, {
      quant: req.params.quant,
      backend: req.params.backend,
      ...(deps.onLoadProgress ? { onProgress: deps.onLoadProgress } : {}),
    })
    const session = base
    // Every run uses this one loaded model; a run's "dispose" leaves it loaded for the next.
    const borrowed: ModelSession = { ...session, dispose: () => undefined }
    const cacheDir = deps.refCacheDir === undefined ? refCacheDir() : deps.refCacheDir
    // The original answers do not depend on the ratio: the first run generates them, the others reuse them.
    const originalAnswers = new OriginalAnswersMemo()
    for (const [index, ratio] of ratios.entries()) {
      const runDir = join(outDir, ratioDirName(ratio))
      events.sweep?.({ index, total: ratios.length, ratio, runDir })
      events.log?.(`sweep: run ${index + 1} of ${ratios.length}, support_ratio ${ratio}`)
      // The original answers are the base model's: no adapter of an earlier run may stay attached.
      if (session.native.hasLora()) session.native.detachLora()
      const params = { ...req.params, supportRatio: ratio }
      const started = performance.now()
      let row: SweepRunRow
      try {
        const summary = await runNotebook(
          {
            modelDir: req.modelDir,
            datasetPath: req.datasetPath,
            ...(req.testPromptsPath ? { testPromptsPath: req.testPromptsPath } : {}),
            params,
            outDir: runDir,
          },
          events,
          signal,
          { ...deps, engineVersion, openModel: async () => borrowed, originalAnswers },
        )
        row = baseRow(
          ratio,
          outDir,
          runDir,
          data.rows,
          params,
          summary.status,
          summary.steps,
          summary.trainLoss,
          (performance.now() - started) / 1000,
        )
        if (summary.status === 'cancelled') {
          sweep.runs.push(row)
          save('cancelled')
          events.sweep?.({ index, total: ratios.length, ratio, runDir, row })
          return sweep
        }
        const cache = RefLogpsCache.open(cacheDir, {
          modelDir: session.dir,
          quant: session.info.quant,
          backend: session.info.backend,
          engineVersion,
        })
        row.row_margins = await supportMargins(session, runDir, data.rows, params, cache)
        const cacheError = cache.save()
        if (cacheError) events.log?.(cacheError)
        row.mean_margin_support = meanMargin(row.row_margins)
        row.stance = stanceOfAnswers(runDir, RESPONSES_TRAINED_FILE, data.rows)
        row.stance_original = stanceOfAnswers(runDir, RESPONSES_ORIGINAL_FILE, data.rows)
      } catch (e) {
        row = baseRow(ratio, outDir, runDir, data.rows, params, 'failed', 0, NaN, (performance.now() - started) / 1000)
        row.error = errorMessage(e)
        sweep.runs.push(row)
        saveFailed(`support_ratio ${ratio}: ${errorMessage(e)}`)
        throw e
      }
      sweep.runs.push(row)
      save(index === ratios.length - 1 ? 'completed' : 'running')
      events.sweep?.({ index, total: ratios.length, ratio, runDir, row })
    }
    return sweep
  } catch (e) {
    if (sweep.status === 'running') saveFailed(errorMessage(e))
    throw e
  } finally {
    base?.dispose()
  }
}

function baseRow(
  ratio: number,
  outDir: string,
  runDir: string,
  rows: readonly PreferenceRow[],
  params: TrainParams,
  status: SweepRunRow['status'],
  steps: number,
  trainLoss: number,
  runtimeS: number,
): SweepRunRow {
  const n = Math.min(params.dataSize, rows.length)
  const rel = relative(outDir, runDir)
  return {
    support_ratio: ratio,
    run_dir: rel.startsWith('..') || isAbsolute(rel) ? runDir : rel,
    status,
    pairs: n,
    support_pairs: Math.floor(n * ratio),
    steps,
    train_loss: Number.isFinite(trainLoss) ? trainLoss : null,
    runtime_s: runtimeS,
    mean_margin_support: null,
    row_margins: [],
    stance: null,
    stance_original: null,
  }
}

/** The stance count of a run's answers file, or null when the run has none (no test prompts). */
function stanceOfAnswers(runDir: string, file: string, rows: readonly PreferenceRow[]): StanceCount | null {
  const path = join(runDir, file)
  if (!existsSync(path)) return null
  const answers = (JSON.parse(readFileSync(path, 'utf8')) as ResponseRow[]).map((r) => r.response)
  return stanceCount(
    answers,
    rows.map((r) => ({ support: r.support!, oppose: r.oppose! })),
  )
}
