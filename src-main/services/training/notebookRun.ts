// The whole HW6 notebook as one run (architecture.md §3 run directory): config, original answers, DPO training,
// trained answers and the comparison export, each written atomically into the run directory as it completes.
import { readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { NativeCancelToken } from '../../engine/nativeTypes'
import { loadPreferenceData, preferencePairs } from '../data/preferenceFile'
import { loadPromptsFile, type PromptRow } from '../data/promptsFile'
import { errorMessage } from '../errors'
import { writeJsonAtomic } from '../fsAtomic'
import { generateResponses } from '../engine/generateResponses'
import { writeAnswerTokens } from '../insights/answerTokens'
import { openModel as openModelDefault, type ModelSession, type OpenModelOptions } from '../engine/modelSession'
import { baseModelName, loadAdapter, type LoadedAdapter } from './adapterFiles'
import { recordModelFiles, sha256File } from './modelFiles'
import { planResume, type ResumeGiven, type ResumePlan } from './resume'
import { ADAPTER_DIR, SUMMARY_FILE, addonCancelTokenFactory, addonVersion, attachLoadedAdapter, ensureRunDir, trainDpo, type TrainOptions, type TrainResult } from './trainer'
import type { ComparisonRow, NotebookRunRequest, ResponseRow, RunEvents, RunPhase, RunSummary } from './types'

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
  const params = req.params
  const outDir = resolve(req.outDir)
  const engineVersion = deps.engineVersion ?? addonVersion()
  const created = new Date().toISOString()
  let phase: RunPhase = 'load'
  const setPhase = (p: RunPhase, detail?: string) => {
    phase = p
    events.phase?.(p, detail)
  }
  const cancelled = (extra: Partial<RunSummary> = {}): RunSummary => {
    const where = extra.cancelledIn ?? phase
    setPhase('cancelled', `cancelled during ${phaseWord(where)}`)
    return {
      outDir,
      steps: 0,
      trainLoss: NaN,
      pairsPerS: 0,
      ...extra,
      runtimeS: (performance.now() - t0) / 1000,
      status: 'cancelled',
      cancelledIn: where,
    }
  }

  // ---- inputs first: every bad file fails here, before minutes of model loading.
  const data = await loadPreferenceData(req.datasetPath)
  const pairs = preferencePairs(data, { dataSize: params.dataSize, supportRatio: params.supportRatio })
  const prompts: PromptRow[] | null = req.testPromptsPath ? await loadPromptsFile(req.testPromptsPath) : null
  // A resume with a checkpoint (or a finished training) no longer needs the adapter the run started from.
  const needInit = req.initAdapter !== undefined && !(resume && (resume.checkpoint || resume.trainingDone))
  const initAdapter: LoadedAdapter | undefined = needInit ? loadAdapter(req.initAdapter!) : undefined

  ensureRunDir(outDir)
  // A new run replaces every output; a resumed one keeps its config and the original answers it already has.
  const keep = resume ? [CONFIG_FILE, ...(resume.originalDone ? [RESPONSES_ORIGINAL_FILE] : [])] : []
  for (const f of [CONFIG_FILE, RESPONSES_ORIGINAL_FILE, RESPONSES_TRAINED_FILE, COMPARISON_FILE, COMPARISON_META_FILE]) {
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

    const generation = {
      do_sample: false,
      max_new_tokens: params.maxNewTokens,
      eos_token_ids: [...session.tokenizer.eosIds],
      pad_token_id: session.tokenizer.padId,
      system_message: params.systemMessage,
    }

    // ---- phase A: the original model's answers (no adapter attached yet; spec §4 step 2, §15).
    let original: ResponseRow[] | null = null
    if (prompts && resume?.originalDone) {
      original = JSON.parse(readFileSync(join(outDir, RESPONSES_ORIGINAL_FILE), 'utf8')) as ResponseRow[]
    } else if (prompts) {
      setPhase('original', `${prompts.length} prompts`)
      original = await generate(session, prompts, 'original', params.maxNewTokens, params.systemMessage, events, newToken())
      if (original === null || signal?.aborted) return cancelled()
      writeJsonAtomic(join(outDir, RESPONSES_ORIGINAL_FILE), original)
    }

    // ---- training (spec §9, §15), continued from its checkpoint on resume, or its finished adapter loaded
    const train = resume?.trainingDone
      ? finishedTraining(session, outDir)
      : await trainDpo(session, pairs, params, {
          outDir,
          events,
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

    // ---- phase B: answers with the trained adapter attached (spec §11 "Phases").
    if (prompts && original) {
      setPhase('trained', `${prompts.length} prompts`)
      const after = await generate(session, prompts, 'trained', params.maxNewTokens, params.systemMessage, events, newToken())
      if (after === null || signal?.aborted) return cancelled({ ...trained, status: 'cancelled' })
      writeJsonAtomic(join(outDir, RESPONSES_TRAINED_FILE), after)
      // The notebook's model_response export (architecture.md §3), then its metadata beside it.
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
    setPhase('done', outDir)
    return { ...trained, runtimeS: (performance.now() - t0) / 1000 }
  } catch (e) {
    setPhase('failed', errorMessage(e))
    throw e
  } finally {
    signal?.removeEventListener('abort', onAbort)
    session?.dispose()
  }
}

/** Greedy answers for the prompts, streamed to events; null when cancelled before every answer was complete. */
async function generate(
  session: ModelSession,
  prompts: PromptRow[],
  which: 'original' | 'trained',
  maxNewTokens: number,
  system: string,
  events: RunEvents,
  cancel: NativeCancelToken | undefined,
): Promise<ResponseRow[] | null> {
  const out = await generateResponses(session, {
    prompts,
    system,
    maxNewTokens,
    onText: (i, delta) => events.responseText?.(which, i, delta),
    ...(cancel ? { cancel } : {}),
  })
  if (out.length < prompts.length || out.some((r) => r.finish === 'cancelled')) return null
  const rows = out.map(({ id, prompt, response }) => ({ id, prompt, response }))
  rows.forEach((r, i) => events.response?.(which, i, r))
  return rows
}

function phaseWord(p: RunPhase): string {
  return { load: 'model loading', original: 'original responses', reference: 'reference log-probs', train: 'training', trained: 'trained responses', save: 'saving', done: 'finishing', cancelled: 'cancel', failed: 'failure' }[p]
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
