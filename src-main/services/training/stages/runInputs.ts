// A notebook run's inputs, read first so that every bad file fails before minutes of model loading: the preference
// data and its pairs, the test prompts, and the adapter the run starts from; then config.json, which records them
// with their hashes (what resume checks, docs/resume.md) and, once loaded, what the model resolved to.
import { rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import {
  loadPreferenceData,
  preferencePairs,
  type PreferenceData,
  type PreferencePair,
} from '../../data/preferenceFile'
import { loadPromptsFile, type PromptRow } from '../../data/promptsFile'
import type { ModelSession } from '../../session/modelSession'
import { writeJsonAtomic } from '../../fsAtomic'
import { ANSWER_TOKENS_FILE } from '../../../../src-shared/insights/insightTypes'
import type { TrainParams } from '../../../../src-shared/params/trainParams'
import { baseModelName, loadAdapter, type LoadedAdapter } from '../adapterFiles'
import { recordModelFiles, sha256File } from '../modelFiles'
import type { ResumePlan } from '../resume'
import {
  COMPARISON_FILE,
  COMPARISON_META_FILE,
  CONFIG_FILE,
  RESPONSES_ORIGINAL_FILE,
  RESPONSES_TRAINED_FILE,
} from '../runFiles'
import type { NotebookRunRequest } from '../../../../src-shared/run/runTypes'

export interface RunInputs {
  data: PreferenceData
  pairs: PreferencePair[]
  prompts: PromptRow[] | null
  initAdapter: LoadedAdapter | undefined
}

export async function loadRunInputs(
  req: NotebookRunRequest,
  params: TrainParams,
  resume: ResumePlan | null,
): Promise<RunInputs> {
  const data = await loadPreferenceData(req.datasetPath)
  const pairs = preferencePairs(data, { dataSize: params.dataSize, supportRatio: params.supportRatio })
  const prompts: PromptRow[] | null = req.testPromptsPath ? await loadPromptsFile(req.testPromptsPath) : null
  // A resume with a checkpoint (or a finished training) no longer needs the adapter the run started from.
  const needInit = req.initAdapter !== undefined && !(resume && (resume.checkpoint || resume.trainingDone))
  const initAdapter = needInit ? loadAdapter(req.initAdapter!) : undefined
  return { data, pairs, prompts, initAdapter }
}

/** A new run replaces every output; a resumed one keeps its config and the original answers it already has. */
export function clearNotebookOutputs(outDir: string, resume: ResumePlan | null): void {
  const keep = resume ? [CONFIG_FILE, ...(resume.originalDone ? [RESPONSES_ORIGINAL_FILE] : [])] : []
  for (const f of [
    CONFIG_FILE,
    RESPONSES_ORIGINAL_FILE,
    RESPONSES_TRAINED_FILE,
    COMPARISON_FILE,
    COMPARISON_META_FILE,
    ANSWER_TOKENS_FILE,
  ]) {
    if (!keep.includes(f)) rmSync(join(outDir, f), { force: true })
  }
}

export interface RunConfig {
  /** config.json as written. */
  json: Record<string, unknown>
  dataset: Record<string, unknown>
  testPrompts: Record<string, unknown> | null
}

/** config.json before the model loads; a resume keeps the run's and adds itself to its resumes. */
export function writeRunConfig(
  outDir: string,
  req: NotebookRunRequest,
  inputs: RunInputs,
  params: TrainParams,
  resume: ResumePlan | null,
  run: { created: string; engineVersion: string },
): RunConfig {
  const { data, pairs, prompts, initAdapter } = inputs
  const dataset = {
    path: resolve(req.datasetPath),
    file: resolve(data.file),
    sha256: sha256File(data.file),
    format: data.format,
    rows: data.rows.length,
    pairs: pairs.length,
  }
  const testPrompts = req.testPromptsPath
    ? { path: resolve(req.testPromptsPath), sha256: sha256File(req.testPromptsPath), prompts: prompts!.length }
    : null
  const json: Record<string, unknown> = resume
    ? {
        ...resume.config,
        params,
        resumes: [
          ...((resume.config.resumes as unknown[]) ?? []),
          { at: run.created, from_step: resume.checkpoint?.state.global_step ?? 0, engine_version: run.engineVersion },
        ],
      }
    : {
        created: run.created,
        engine_version: run.engineVersion,
        model_dir: resolve(req.modelDir),
        base_model: baseModelName(req.modelDir),
        // What resume checks the model folder against (docs/resume.md).
        model_files: recordModelFiles(resolve(req.modelDir)),
        dataset,
        test_prompts: testPrompts,
        init_adapter: initAdapter?.dir ?? null,
        params,
      }
  writeJsonAtomic(join(outDir, CONFIG_FILE), json)
  return { json, dataset, testPrompts }
}

/** The same file again, now with what loading resolved (backend "auto" -> cpu or cuda). */
export function recordLoadedModel(outDir: string, config: RunConfig, session: ModelSession): void {
  const info = session.info
  config.json.model = {
    architecture: info.config.architecture,
    params: info.params,
    quant: info.quant,
    backend: info.backend,
    backend_note: info.backendNote,
  }
  writeJsonAtomic(join(outDir, CONFIG_FILE), config.json)
}
