// The whole HW6 notebook as one run (docs/architecture.md#run-directory) as named stages (stages/): inputs and
// config, original answers, DPO training, trained answers and the comparison export, each written atomically into
// the run directory as it completes, with run_status.json following along (stages/runRecord.ts).
import { resolve } from 'node:path'
import type { NativeCancelToken } from '../../addon/addonTypes'
import { promptStyleOf } from '../session/promptText'
import { todayChatDate } from '../tokenizer/chatTemplate'
import { openModel as openModelDefault, type ModelSession, type OpenModelOptions } from '../session/modelSession'
import { addonCancelTokenFactory, addonVersion } from './addonDefaults'
import type { OriginalAnswersMemo } from './originalAnswersMemo'
import { planResume, type ResumeGiven, type ResumePlan } from './resume'
import { ensureRunDir, lockRunDir } from './runDir'
import {
  answerPhase,
  checkPromptsFit,
  readOriginalAnswers,
  reuseOriginalAnswers,
  type AnswerRun,
} from './stages/answers'
import { writeComparison } from './stages/comparison'
import { notebookTraining, trainedSummary } from './stages/notebookTraining'
import { markTrainSummary, RunRecord } from './stages/runRecord'
import { clearNotebookOutputs, loadRunInputs, recordLoadedModel, writeRunConfig } from './stages/runInputs'
import type { TrainOptions } from './trainer'
import type { NotebookRunRequest, ResponseRow, RunEvents, RunSummary } from '../../../src-shared/run/runTypes'

/** Seams for tests and hosts: how to open the model, the engine version, cache folder and cancel tokens. */
export interface NotebookDeps extends Pick<TrainOptions, 'refCacheDir' | 'cancelTokenFactory'> {
  openModel?: (dir: string, options: OpenModelOptions) => Promise<ModelSession>
  engineVersion?: string
  /** Model loading progress, 0..1. */
  onLoadProgress?: (fraction: number) => void
  /** Original answers shared by the runs of a sweep, which all use one loaded base model (originalAnswersMemo.ts). */
  originalAnswers?: OriginalAnswersMemo
}

export async function runNotebook(
  req: NotebookRunRequest,
  events: RunEvents,
  signal?: AbortSignal,
  deps: NotebookDeps = {},
): Promise<RunSummary> {
  return runPhases(req, events, signal, deps, null)
}

/**
 * Continues a stopped run in its own directory (docs/resume.md): checks that its inputs and parameters are still the
 * run's (E_RESUME_MISMATCH names what differs), then redoes only what is missing.
 */
export async function resumeNotebook(
  runDir: string,
  given: ResumeGiven,
  events: RunEvents,
  signal?: AbortSignal,
  deps: NotebookDeps = {},
): Promise<RunSummary> {
  const plan = planResume(runDir, given, deps.engineVersion ?? addonVersion())
  for (const note of plan.notes) events.log?.(note)
  return runPhases(plan.request, events, signal, deps, plan)
}

async function runPhases(
  req: NotebookRunRequest,
  events: RunEvents,
  signal: AbortSignal | undefined,
  deps: NotebookDeps,
  resume: ResumePlan | null,
): Promise<RunSummary> {
  const t0 = performance.now()
  // One template date per run, recorded with the parameters: a rerun renders (and caches) the same prompts.
  const params = { ...req.params, chatDate: req.params.chatDate || todayChatDate() }
  const outDir = resolve(req.outDir)
  const engineVersion = deps.engineVersion ?? addonVersion()
  const created = new Date().toISOString()
  const status = new RunRecord(outDir, events, t0)

  const inputs = await loadRunInputs(req, params, resume)
  // The folder must be ours (never a model folder) and not in use by another run; from here on it is locked.
  ensureRunDir(outDir, { modelDir: req.modelDir })
  const lock = lockRunDir(outDir, 'dpo-studio run')
  const tokens = cancelTokens(
    signal,
    deps.cancelTokenFactory === undefined ? addonCancelTokenFactory() : deps.cancelTokenFactory,
  )
  let session: ModelSession | undefined
  try {
    status.start(req, created, engineVersion)
    clearNotebookOutputs(outDir, resume)
    const config = writeRunConfig(outDir, req, inputs, params, resume, { created, engineVersion })

    status.setPhase('load', resolve(req.modelDir))
    session = await (deps.openModel ?? openModelDefault)(req.modelDir, {
      quant: params.quant,
      backend: params.backend,
      ...(deps.onLoadProgress ? { onProgress: deps.onLoadProgress } : {}),
    })
    recordLoadedModel(outDir, config, session)
    if (signal?.aborted) return status.cancelled()
    const prompts = inputs.prompts
    const answers: AnswerRun | null = prompts
      ? { session, outDir, prompts, maxNewTokens: params.maxNewTokens, style: promptStyleOf(params), events, signal }
      : null
    if (answers) checkPromptsFit(answers)

    let original: ResponseRow[] | null = null
    if (answers && resume?.originalDone) original = readOriginalAnswers(outDir)
    else if (answers) {
      // A sweep's later runs reuse the first run's original answers (originalAnswersMemo.ts).
      const memoKey = { prompts: answers.prompts, maxNewTokens: answers.maxNewTokens, style: answers.style }
      original = deps.originalAnswers?.lookup(memoKey) ?? null
      if (original) reuseOriginalAnswers(answers, original)
      else {
        status.setPhase('original', `${answers.prompts.length} prompts`)
        original = await answerPhase(answers, 'original', tokens.next())
        if (original === null) return status.cancelled()
        deps.originalAnswers?.remember(memoKey, original)
      }
    }

    const train = await notebookTraining({
      session,
      pairs: inputs.pairs,
      params,
      outDir,
      signal,
      initAdapter: inputs.initAdapter,
      engineVersion,
      resume,
      events: { ...events, phase: status.setPhase },
      ...(deps.refCacheDir !== undefined ? { refCacheDir: deps.refCacheDir } : {}),
      ...(deps.cancelTokenFactory !== undefined ? { cancelTokenFactory: deps.cancelTokenFactory } : {}),
    })
    const trained = trainedSummary(outDir, train)
    if (train.status === 'cancelled') return status.cancelled({ ...trained, cancelledIn: train.cancelledIn ?? 'train' })

    if (answers && original) {
      status.setPhase('trained', `${answers.prompts.length} prompts`)
      const after = await answerPhase(answers, 'trained', tokens.next())
      if (after === null) return status.cancelled({ ...trained, status: 'cancelled' })
      await writeComparison({
        session,
        outDir,
        req,
        params,
        config,
        train,
        engineVersion,
        initAdapterDir: inputs.initAdapter?.dir,
        original,
        trained: after,
      })
    }
    // A resumed run that now completed: its training summary no longer says cancelled.
    if (resume?.trainingDone) markTrainSummary(outDir, null)
    return status.completed(trained)
  } catch (e) {
    status.failed(e)
    throw e
  } finally {
    tokens.release()
    session?.dispose()
    lock.release()
  }
}

/** A native cancel token per generation phase, all cancelled when the signal aborts. */
function cancelTokens(signal: AbortSignal | undefined, makeToken: (() => NativeCancelToken) | null) {
  const tokens: NativeCancelToken[] = []
  const onAbort = () => tokens.forEach((t) => t.cancel())
  signal?.addEventListener('abort', onAbort)
  return {
    next: (): NativeCancelToken | undefined => {
      if (!makeToken) return undefined
      const t = makeToken()
      tokens.push(t)
      if (signal?.aborted) t.cancel()
      return t
    },
    release: () => signal?.removeEventListener('abort', onAbort),
  }
}
