// The whole HW6 notebook as one run (docs/architecture.md#run-directory): config, original answers, DPO training,
// trained answers and the comparison export, each written atomically into the run directory as it completes.
import { readFileSync, rmSync } from 'node:fs'
import { hostname } from 'node:os'
import { basename, join, resolve } from 'node:path'
import type { NativeCancelToken } from '../../addon/addonTypes'
import { loadPreferenceData, preferencePairs } from '../data/preferenceFile'
import { loadPromptsFile, type PromptRow } from '../data/promptsFile'
import { errorMessage } from '../errors'
import { writeJsonAtomic } from '../fsAtomic'
import { contextCutNote } from '../session/contextLimits'
import { generateResponses, planGeneration } from '../session/generateResponses'
import { writeAnswerTokens } from '../insights/answerTokens'
import { ANSWER_TOKENS_FILE } from '../../../src-shared/insights/insightTypes'
import { promptStyleOf, type PromptStyle } from '../session/promptText'
import { todayChatDate } from '../tokenizer/chatTemplate'
import { openModel as openModelDefault, type ModelSession, type OpenModelOptions } from '../session/modelSession'
import { baseModelName, loadAdapter, type LoadedAdapter } from './adapterFiles'
import { recordModelFiles, sha256File } from './modelFiles'
import { planResume, type ResumeGiven, type ResumePlan } from './resume'
import type { FileLock } from '../fileLock'
import { ensureRunDir, lockRunDir, phaseWords, updateRunStatus, type RunStatusFile } from './runDir'
import { ADAPTER_DIR, SUMMARY_FILE, addonCancelTokenFactory, addonVersion, attachLoadedAdapter, trainDpo, type TrainOptions, type TrainResult } from './trainer'
import type { ComparisonRow, NotebookRunRequest, ResponseRow, RunEvents, RunPhase, RunSummary } from '../../../src-shared/run/runTypes'

export const CONFIG_FILE = 'config.json'
export const RESPONSES_ORIGINAL_FILE = 'responses_original.json'
export const RESPONSES_TRAINED_FILE = 'responses_trained.json'
export const COMPARISON_FILE = 'comparison.json'
export const COMPARISON_META_FILE = 'comparison_meta.json'

/** Seams for tests and hosts: how to open the model, the engine version, cache folder and cancel tokens. */
export interface NotebookDeps extends Pick<TrainOptions, 'refCacheDir' | 'cancelTokenFactory'> {
  openModel?: (dir: string, options: OpenModelOptions) => Promise<ModelSession>
  engineVersion?: string
  /** Model loading progress, 0..1. */
  onLoadProgress?: (fraction: number) => void
}

export async function runNotebook(req: NotebookRunRequest, events: RunEvents, signal?: AbortSignal, deps: NotebookDeps = {}): Promise<RunSummary> {
  return runPhases(req, events, signal, deps, null)
}

/**
 * Continues a stopped run in its own directory (docs/resume.md): checks that its inputs and parameters are still the
 * run's (E_RESUME_MISMATCH names what differs), then redoes only what is missing.
 */
export async function resumeNotebook(runDir: string, given: ResumeGiven, events: RunEvents, signal?: AbortSignal, deps: NotebookDeps = {}): Promise<RunSummary> {
  const plan = planResume(runDir, given, deps.engineVersion ?? addonVersion())
  for (const note of plan.notes) events.log?.(note)
  return runPhases(plan.request, events, signal, deps, plan)
}

async function runPhases(req: NotebookRunRequest, events: RunEvents, signal: AbortSignal | undefined, deps: NotebookDeps, resume: ResumePlan | null): Promise<RunSummary> {
  const t0 = performance.now()
  // One template date per run, recorded with the parameters: a rerun renders (and caches) the same prompts.
  const params = { ...req.params, chatDate: req.params.chatDate || todayChatDate() }
  const outDir = resolve(req.outDir)
  const engineVersion = deps.engineVersion ?? addonVersion()
  const created = new Date().toISOString()
  let phase: RunPhase = 'load'
  let lock: FileLock | null = null
  /** run_status.json follows the run (docs/run-directory.md); once the run dir is ours and locked. */
  const record = (patch: Partial<RunStatusFile>) => {
    if (lock) updateRunStatus(outDir, patch)
  }
  const setPhase = (p: RunPhase, detail?: string) => {
    phase = p
    if (p !== 'cancelled' && p !== 'failed' && p !== 'done') record({ phase: p })
    events.phase?.(p, detail)
  }
  const cancelled = (extra: Partial<RunSummary> = {}): RunSummary => {
    const where = extra.cancelledIn ?? phase
    const reason = `cancelled during ${phaseWords(where)}`
    const summary: RunSummary = {
      outDir,
      steps: 0,
      trainLoss: NaN,
      pairsPerS: 0,
      ...extra,
      runtimeS: (performance.now() - t0) / 1000,
      status: 'cancelled',
      cancelledIn: where,
    }
    // Training may have completed before the cancel: its summary must not read as a completed run.
    if (where === 'trained') markTrainSummary(outDir, where)
    record({ status: 'cancelled', phase: where, cancelledIn: where, reason, endedAt: new Date().toISOString(), summary })
    setPhase('cancelled', reason)
    return summary
  }

  // ---- inputs first: every bad file fails here, before minutes of model loading.
  const data = await loadPreferenceData(req.datasetPath)
  const pairs = preferencePairs(data, { dataSize: params.dataSize, supportRatio: params.supportRatio })
  const prompts: PromptRow[] | null = req.testPromptsPath ? await loadPromptsFile(req.testPromptsPath) : null
  // A resume with a checkpoint (or a finished training) no longer needs the adapter the run started from.
  const needInit = req.initAdapter !== undefined && !(resume && (resume.checkpoint || resume.trainingDone))
  const initAdapter: LoadedAdapter | undefined = needInit ? loadAdapter(req.initAdapter!) : undefined

  // The folder must be ours (never a model folder) and not in use by another run; from here on it is locked.
  ensureRunDir(outDir, { modelDir: req.modelDir })
  lock = lockRunDir(outDir, 'dpo-studio run')

  const tokens: NativeCancelToken[] = []
  const makeToken = deps.cancelTokenFactory === undefined ? addonCancelTokenFactory() : deps.cancelTokenFactory
  const onAbort = () => tokens.forEach((t) => t.cancel())
  signal?.addEventListener('abort', onAbort)
  const newToken = (): NativeCancelToken | undefined => {
    if (!makeToken) return undefined
    const t = makeToken()
    tokens.push(t)
    if (signal?.aborted) t.cancel()
    return t
  }

  let session: ModelSession | undefined
  try {
    updateRunStatus(
      outDir,
      { status: 'running', startedAt: created, endedAt: null, error: null, pid: process.pid, hostname: hostname(), phase: 'load', cancelledIn: undefined, reason: undefined, summary: undefined },
      {
        runId: basename(outDir), status: 'running', startedAt: created, endedAt: null, modelDir: resolve(req.modelDir), datasetPath: resolve(req.datasetPath),
        testPromptsPath: req.testPromptsPath ? resolve(req.testPromptsPath) : null, engineVersion, error: null,
      },
    )
    // A new run replaces every output; a resumed one keeps its config and the original answers it already has.
    const keep = resume ? [CONFIG_FILE, ...(resume.originalDone ? [RESPONSES_ORIGINAL_FILE] : [])] : []
    for (const f of [CONFIG_FILE, RESPONSES_ORIGINAL_FILE, RESPONSES_TRAINED_FILE, COMPARISON_FILE, COMPARISON_META_FILE, ANSWER_TOKENS_FILE]) {
      if (!keep.includes(f)) rmSync(join(outDir, f), { force: true })
    }
    const datasetInfo = {
      path: resolve(req.datasetPath),
      file: resolve(data.file),
      sha256: sha256File(data.file),
      format: data.format,
      rows: data.rows.length,
      pairs: pairs.length,
    }
    const promptsInfo = req.testPromptsPath
      ? { path: resolve(req.testPromptsPath), sha256: sha256File(req.testPromptsPath), prompts: prompts!.length }
      : null
    const config: Record<string, unknown> = resume
      ? { ...resume.config, params, resumes: [...((resume.config.resumes as unknown[]) ?? []), { at: created, from_step: resume.checkpoint?.state.global_step ?? 0, engine_version: engineVersion }] }
      : {
          created,
          engine_version: engineVersion,
          model_dir: resolve(req.modelDir),
          base_model: baseModelName(req.modelDir),
          // What resume checks the model folder against (docs/resume.md).
          model_files: recordModelFiles(resolve(req.modelDir)),
          dataset: datasetInfo,
          test_prompts: promptsInfo,
          init_adapter: initAdapter?.dir ?? null,
          params,
        }
    writeJsonAtomic(join(outDir, CONFIG_FILE), config)

    setPhase('load', resolve(req.modelDir))
    session = await (deps.openModel ?? openModelDefault)(req.modelDir, {
      quant: params.quant,
      backend: params.backend,
      ...(deps.onLoadProgress ? { onProgress: deps.onLoadProgress } : {}),
    })
    const info = session.info
    // The same file again, now with what loading resolved (backend "auto" -> cpu or cuda).
    config.model = { architecture: info.config.architecture, params: info.params, quant: info.quant, backend: info.backend, backend_note: info.backendNote }
    writeJsonAtomic(join(outDir, CONFIG_FILE), config)
    if (signal?.aborted) return cancelled()
    // One prompt style (system message, template date, enable_thinking) for the context check and both generations.
    const style = promptStyleOf(params)
    // The test prompts must fit the model's context now, not after minutes of training (contextLimits.ts).
    if (prompts) {
      const plan = planGeneration(session, { prompts, maxNewTokens: params.maxNewTokens, ...style }, 'max new tokens')
      if (plan.cutByContext.length > 0) events.log?.(contextCutNote(plan.cutByContext, prompts.length, plan.context!))
    }

    const generation = {
      do_sample: false,
      max_new_tokens: params.maxNewTokens,
      eos_token_ids: [...session.tokenizer.eosIds],
      pad_token_id: session.tokenizer.padId,
      system_message: params.systemMessage,
    }

    // ---- phase A: the original model's answers (no adapter attached yet;
    // docs/reference/precision.md#generation-before-training, docs/reference/hw6-run.md#the-run-in-order).
    let original: ResponseRow[] | null = null
    if (prompts && resume?.originalDone) {
      original = JSON.parse(readFileSync(join(outDir, RESPONSES_ORIGINAL_FILE), 'utf8')) as ResponseRow[]
    } else if (prompts) {
      setPhase('original', `${prompts.length} prompts`)
      original = await generate(session, prompts, 'original', params.maxNewTokens, style, events, newToken())
      if (original === null || signal?.aborted) return cancelled()
      writeJsonAtomic(join(outDir, RESPONSES_ORIGINAL_FILE), original)
    }

    // ---- training (docs/reference/trainer.md, docs/reference/hw6-run.md#the-run-in-order), continued from its
    // checkpoint on resume, or its finished adapter loaded
    const train = resume?.trainingDone
      ? finishedTraining(session, outDir)
      : await trainDpo(session, pairs, params, {
          outDir,
          // The trainer's phases (reference, train, save) go into run_status.json too.
          events: { ...events, phase: setPhase },
          ...(signal ? { signal } : {}),
          ...(initAdapter ? { initAdapter } : {}),
          engineVersion,
          ...(deps.refCacheDir !== undefined ? { refCacheDir: deps.refCacheDir } : {}),
          ...(deps.cancelTokenFactory !== undefined ? { cancelTokenFactory: deps.cancelTokenFactory } : {}),
          ...(resume ? { resume: { checkpoint: resume.checkpoint } } : {}),
        })
    const trained: RunSummary = {
      outDir,
      steps: train.steps,
      maxSteps: train.maxSteps,
      trainLoss: train.trainLoss,
      runtimeS: train.runtimeS,
      pairsPerS: train.pairsPerS,
      status: train.status,
      adapterDir: train.adapterDir,
    }
    if (train.status === 'cancelled') return cancelled({ ...trained, cancelledIn: train.cancelledIn ?? 'train' })

    // ---- phase B: answers with the trained adapter attached (docs/reference/generation.md#before-and-after-training).
    if (prompts && original) {
      setPhase('trained', `${prompts.length} prompts`)
      const after = await generate(session, prompts, 'trained', params.maxNewTokens, style, events, newToken())
      if (after === null || signal?.aborted) return cancelled({ ...trained, status: 'cancelled' })
      writeJsonAtomic(join(outDir, RESPONSES_TRAINED_FILE), after)
      // The notebook's model_response export (docs/architecture.md#comparison-export), then its metadata beside it.
      const comparison: ComparisonRow[] = original.map((o, i) => ({
        id: o.id,
        prompt: o.prompt,
        response_from_original_model: o.response,
        response_from_trained_model: after[i]!.response,
      }))
      writeJsonAtomic(join(outDir, COMPARISON_FILE), comparison)
      writeJsonAtomic(join(outDir, COMPARISON_META_FILE), {
        created: new Date().toISOString(),
        engine_version: engineVersion,
        model: { dir: resolve(req.modelDir), name: baseModelName(req.modelDir), ...(config.model as object) },
        adapter: train.adapterDir,
        init_adapter: initAdapter?.dir ?? (req.initAdapter ? resolve(req.initAdapter) : null),
        dataset: datasetInfo,
        test_prompts: promptsInfo,
        params,
        generation,
        training: { steps: train.steps, max_steps: train.maxSteps, train_loss: train.trainLoss, status: train.status },
        comparison: COMPARISON_FILE,
      })
      // The token view of the answers (docs/insights.md): both answers under the reference and the trained model.
      await writeAnswerTokens(session, outDir, original, after, params, session.tokenizer.padId ?? session.tokenizer.eosId ?? 0)
    }
    // A resumed run that now completed: its training summary no longer says cancelled.
    if (resume?.trainingDone) markTrainSummary(outDir, null)
    const done = { ...trained, runtimeS: (performance.now() - t0) / 1000 }
    record({ status: 'completed', phase: 'done', endedAt: new Date().toISOString(), summary: done })
    setPhase('done', outDir)
    return done
  } catch (e) {
    try {
      record({ status: 'failed', phase, error: errorMessage(e), endedAt: new Date().toISOString() })
    } catch {
      /* the first error says more than failing to record it */
    }
    events.phase?.('failed', errorMessage(e))
    throw e
  } finally {
    signal?.removeEventListener('abort', onAbort)
    session?.dispose()
    lock.release()
  }
}

/**
 * train_summary.json after a cancel in a later phase: the run was cancelled even though training completed
 * (status cancelled, training_status kept). `null`: the run completed after all (a resume), so back to completed.
 */
function markTrainSummary(outDir: string, cancelledIn: RunPhase | null): void {
  const file = join(outDir, SUMMARY_FILE)
  let s: Record<string, unknown>
  try {
    s = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
  } catch {
    return
  }
  if (cancelledIn) writeJsonAtomic(file, { ...s, status: 'cancelled', training_status: s.training_status ?? s.status, cancelled_in: cancelledIn })
  else if (s.training_status !== undefined) {
    const { training_status, cancelled_in: _, ...rest } = s
    writeJsonAtomic(file, { ...rest, status: training_status })
  }
}

/** Greedy answers for the prompts, streamed to events; null when cancelled before every answer was complete. */
async function generate(
  session: ModelSession,
  prompts: PromptRow[],
  which: 'original' | 'trained',
  maxNewTokens: number,
  style: PromptStyle,
  events: RunEvents,
  cancel: NativeCancelToken | undefined,
): Promise<ResponseRow[] | null> {
  let out
  try {
    out = await generateResponses(session, {
      prompts,
      ...style,
      maxNewTokens,
      onText: (i, delta) => events.responseText?.(which, i, delta),
      ...(cancel ? { cancel } : {}),
    })
  } catch (e) {
    // A cancel that lands before a batch's first token is an E_CANCELLED error, not a 'cancelled' finish: same stop.
    if ((e as { code?: unknown })?.code === 'E_CANCELLED') return null
    throw e
  }
  if (out.length < prompts.length || out.some((r) => r.finish === 'cancelled')) return null
  const rows = out.map(({ id, prompt, response }) => ({ id, prompt, response }))
  rows.forEach((r, i) => events.response?.(which, i, r))
  return rows
}

/** A resumed run whose training had completed: its adapter goes back on the model, its summary is the result. */
function finishedTraining(session: ModelSession, outDir: string): TrainResult {
  const adapterDir = join(outDir, ADAPTER_DIR)
  attachLoadedAdapter(session, loadAdapter(adapterDir))
  const s = JSON.parse(readFileSync(join(outDir, SUMMARY_FILE), 'utf8')) as Record<string, number>
  return {
    outDir,
    steps: s.global_step!,
    maxSteps: s.max_steps!,
    trainLoss: s.train_loss!,
    runtimeS: s.train_runtime!,
    pairsPerS: s.pairs_per_s!,
    status: 'completed',
    adapterDir,
    refCached: 0,
    refComputed: 0,
  }
}
