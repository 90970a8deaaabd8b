// Resuming a stopped run (docs/resume.md): read its config.json, check that the model files, the dataset, the test
// prompts and the parameters are still the run's (refusing with what differs), find what is already done, and hand
// runNotebook a plan that redoes only the rest: the original answers if missing, training from the checkpoint, then
// the trained answers and the comparison.
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { StudioError } from '../errors'
import { trainParamsSchema, type TrainParams } from '../../../src-shared/params/trainParams'
import { readCheckpoint, readCheckpointState, type Checkpoint, type CheckpointState } from './checkpoint'
import { modelFileChanges, sha256File, type ModelFileRecord } from './modelFiles'
import { paramDifferences } from './resumeChecks'
import type { NotebookRunRequest } from '../../../src-shared/run/runTypes'

/** What the caller of a resume said (flags, or nothing from the app); every given value must match the run. */
export interface ResumeGiven {
  modelDir?: string
  datasetPath?: string
  testPromptsPath?: string
  initAdapter?: string
  outDir?: string
  /** Only the parameters the user set; checkpointEvery may differ from the run's and then applies. */
  params?: Partial<TrainParams>
  /** `train --resume`: continue training only, not the answers and the comparison of a `run`. */
  trainOnly?: boolean
}

export interface ResumePlan {
  runDir: string
  request: NotebookRunRequest
  /** config.json as the run wrote it (runNotebook adds this resume to its history). */
  config: Record<string, unknown>
  /** Null: training restarts at step 1 (stopped before its first checkpoint) or is already done (or headerOnly). */
  checkpoint: Checkpoint | null
  /** The checkpoint's step (also with headerOnly); null without one. */
  checkpointStep: number | null
  /** train_summary.json says completed and adapter/ exists: training is skipped, the adapter is loaded. */
  trainingDone: boolean
  /** responses_original.json holds every test prompt's answer. */
  originalDone: boolean
  trainOnly: boolean
  /** Things that do not stop a resume but may matter (an older run without a model fingerprint, another engine). */
  notes: string[]
}

const SUMMARY = 'train_summary.json'

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'))
  } catch {
    return null
  }
}

interface TrainSummaryStatus {
  status?: string
  /** What training itself reached when a later phase's cancel marked the run's summary cancelled. */
  training_status?: string
  global_step?: number
  max_steps?: number
}

/** Training finished all its steps (also when a cancel during the trained answers marked the summary cancelled). */
const trainingCompleted = (s: TrainSummaryStatus | null) =>
  s?.status === 'completed' || s?.training_status === 'completed'

const short = (hash: unknown) => (typeof hash === 'string' ? hash.slice(0, 12) : String(hash))

/**
 * headerOnly: check the checkpoint's recorded parameters without reading or verifying its tensors (the API's early
 * check in the main process; the engine host then plans again in full). The plan's checkpoint is then null.
 */
export function planResume(
  runDir: string,
  given: ResumeGiven = {},
  engineVersion?: string,
  headerOnly = false,
): ResumePlan {
  const dir = resolve(runDir)
  const notResumable = (msg: string) => new StudioError('E_NOT_RESUMABLE', msg, { details: { runDir: dir } })
  const mismatch = (msg: string) =>
    new StudioError('E_RESUME_MISMATCH', `cannot resume ${dir}: ${msg}`, { details: { runDir: dir } })

  const configFile = join(dir, 'config.json')
  if (!existsSync(configFile)) throw notResumable(`${dir} is not a run directory (it has no config.json)`)
  // config.json as a run wrote it (any version): free-form JSON whose fields are checked one by one below.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const config = readJson(configFile) as Record<string, any> | null
  if (!config || typeof config !== 'object') throw notResumable(`${configFile} is not valid JSON`)
  const parsed = trainParamsSchema.safeParse(config.params)
  if (!parsed.success)
    throw notResumable(`${configFile}: its params are not valid (${parsed.error.issues[0]?.message ?? 'invalid'})`)
  const params: TrainParams = { ...parsed.data }

  // ---- what the caller gave must be the run's own
  const diffs = paramDifferences(params, given.params ?? {}, 'in the run (config.json)')
  if (diffs.length > 0) {
    throw mismatch(
      `other parameters than the run's (${diffs.join('; ')}); a resumed run keeps its parameters: start a new run to change them`,
    )
  }
  if (given.params?.checkpointEvery !== undefined) params.checkpointEvery = given.params.checkpointEvery
  const samePath = (what: string, value: string | undefined, recorded: unknown) => {
    if (value !== undefined && resolve(value) !== recorded)
      throw mismatch(`${what} ${resolve(value)} is not the run's ${String(recorded ?? 'none')}`)
  }
  samePath('the output folder', given.outDir, dir)
  samePath('the model', given.modelDir, config.model_dir)
  samePath('the dataset', given.datasetPath, config.dataset?.path)
  samePath('the test prompts', given.testPromptsPath, config.test_prompts?.path)
  samePath('the initial adapter', given.initAdapter, config.init_adapter)

  // ---- the run's inputs are still what it started with
  const notes: string[] = []
  const modelDir = String(config.model_dir ?? '')
  if (!modelDir || !existsSync(join(modelDir, 'config.json')))
    throw mismatch(`its model folder ${modelDir || '(none recorded)'} no longer holds a model`)
  if (Array.isArray(config.model_files)) {
    const changes = modelFileChanges(config.model_files as ModelFileRecord[], modelDir)
    if (changes.length > 0)
      throw mismatch(`the model in ${modelDir} changed since the run started: ${changes.join(', ')}`)
  } else {
    notes.push(
      `${configFile} records no model fingerprint (a run from before resume existed): the model files were not checked`,
    )
  }
  const checkFile = (what: string, file: unknown, sha: unknown) => {
    if (typeof file !== 'string' || !existsSync(file)) throw mismatch(`its ${what} ${String(file)} no longer exists`)
    const now = sha256File(file)
    if (now !== sha)
      throw mismatch(
        `its ${what} ${file} changed since the run started (sha256 ${short(sha)}... then, ${short(now)}... now)`,
      )
  }
  checkFile('dataset file', config.dataset?.file, config.dataset?.sha256)
  const trainOnly = given.trainOnly === true
  const prompts = !trainOnly && config.test_prompts ? config.test_prompts : null
  if (prompts) checkFile('test prompts file', prompts.path, prompts.sha256)
  if (engineVersion && config.engine_version && config.engine_version !== engineVersion) {
    notes.push(
      `the run started on engine ${config.engine_version}, this is ${engineVersion}: the continued steps may differ in the last bits`,
    )
  }

  // ---- what is already done
  const summary = readJson(join(dir, SUMMARY)) as TrainSummaryStatus | null
  const trainingDone = trainingCompleted(summary) && existsSync(join(dir, 'adapter', 'adapter_config.json'))
  const original = readJson(join(dir, 'responses_original.json'))
  const originalDone = prompts !== null && Array.isArray(original) && original.length === prompts.prompts
  const comparisonDone = existsSync(join(dir, 'comparison.json'))
  if (trainingDone && (trainOnly || !prompts || comparisonDone)) {
    const rest =
      trainOnly && config.test_prompts && !comparisonDone ? '; `run --resume` finishes its answers and comparison' : ''
    throw notResumable(
      `${dir} has nothing to resume: its training completed (${summary?.global_step} of ${summary?.max_steps} steps)${rest}`,
    )
  }
  let checkpoint: Checkpoint | null = null
  let checkpointStep: number | null = null
  if (!trainingDone) {
    checkpoint = headerOnly ? null : readCheckpoint(dir)
    const state: CheckpointState | null = checkpoint?.state ?? (headerOnly ? readCheckpointState(dir) : null)
    if (state) {
      checkpointStep = state.global_step
      const stale = paramDifferences(state.params, params, 'in the checkpoint', 'in config.json')
      if (stale.length > 0)
        throw mismatch(`its checkpoint was written with other parameters than config.json (${stale.join('; ')})`)
    } else if (config.init_adapter && !existsSync(join(String(config.init_adapter), 'adapter_config.json'))) {
      throw mismatch(`it has no checkpoint and its initial adapter ${config.init_adapter} no longer exists`)
    }
  }

  const request: NotebookRunRequest = {
    modelDir,
    datasetPath: String(config.dataset.path),
    params,
    outDir: dir,
    ...(prompts ? { testPromptsPath: String(prompts.path) } : {}),
    ...(config.init_adapter ? { initAdapter: String(config.init_adapter) } : {}),
  }
  return { runDir: dir, request, config, checkpoint, checkpointStep, trainingDone, originalDone, trainOnly, notes }
}

/**
 * Whether a run directory looks resumable, cheaply (no hashing, no checkpoint data read), and from which step: for
 * the History list. The full checks run when the resume starts and refuse with what differs.
 */
export function resumeInfo(runDir: string): { resumable: boolean; fromStep: number } {
  const dir = resolve(runDir)
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- free-form JSON, as in planResume
  const config = readJson(join(dir, 'config.json')) as Record<string, any> | null
  if (!config || !trainParamsSchema.safeParse(config.params).success) return { resumable: false, fromStep: 0 }
  const summary = readJson(join(dir, SUMMARY)) as TrainSummaryStatus | null
  const trainingDone = trainingCompleted(summary) && existsSync(join(dir, 'adapter', 'adapter_config.json'))
  if (trainingDone)
    return { resumable: Boolean(config.test_prompts) && !existsSync(join(dir, 'comparison.json')), fromStep: -1 }
  return { resumable: true, fromStep: readCheckpointState(dir)?.global_step ?? 0 }
}
