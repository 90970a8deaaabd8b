// `dpo-studio import-adapter`: an adapter trained elsewhere (e.g. by an exported project on a cluster) brought back
// for the before/after comparison (docs/exports.md, "Import"): a new run directory with the adapter, the original and
// trained answers to the run's test prompts, the comparison and its metadata, and the cluster's metrics.jsonl when it
// lies beside the adapter. The History lists it like any finished run.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { loadPromptsFile } from '../data/promptsFile'
import { generateResponses } from '../session/generateResponses'
import { openModel } from '../session/modelSession'
import { StudioError } from '../errors'
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, loadAdapter } from '../training/adapterFiles'
import { sha256File } from '../training/modelFiles'
import { ensureRunDir, writeRunStatus } from '../training/runDir'
import { attachLoadedAdapter } from '../training/loraAttach'
import type { BackendChoice } from '../../../src-shared/params/enumValues'
import type { ComparisonRow, ResponseRow } from '../../../src-shared/run/runTypes'
import { writeExportFolder } from './exportFolder'
import { readRunConfig } from './runConfig'

export interface ImportAdapterRequest {
  adapterDir: string
  /** The run the adapter repeats: its model, parameters, test prompts and original answers. */
  runDir: string
  outDir: string
  /** Test prompts (default: the run's). */
  testPromptsPath?: string
  backend?: BackendChoice
  overwrite?: boolean
  engineVersion?: string
  onPhase?: (phase: 'load' | 'original' | 'trained' | 'done', detail?: string) => void
}

export interface ImportAdapterResult {
  path: string
  prompts: number
  /** Whether the original answers were the run's own (same prompts), or generated again. */
  reusedOriginal: boolean
  metrics: boolean
}

function writeJson(file: string, value: unknown): void {
  writeFileSync(file, JSON.stringify(value, null, 2) + '\n')
}

export async function importAdapter(req: ImportAdapterRequest): Promise<ImportAdapterResult> {
  const { dir: runDir, raw: run, params } = readRunConfig(req.runDir)
  const adapter = loadAdapter(req.adapterDir)
  const promptsPath = req.testPromptsPath ?? run.test_prompts?.path
  if (!promptsPath)
    throw new StudioError(
      'E_BAD_INPUT',
      `run ${runDir} had no test prompts; give --test-prompts FILE to compare answers`,
    )
  const prompts = await loadPromptsFile(promptsPath)
  const originalFile = join(runDir, 'responses_original.json')
  const samePrompts = existsSync(originalFile) && run.test_prompts?.sha256 === sha256File(promptsPath)
  const metricsFile = join(dirname(adapter.dir), 'metrics.jsonl')
  const backend = req.backend ?? params.backend
  const lora = {
    ...params,
    loraR: adapter.settings.r,
    loraAlpha: adapter.settings.alpha,
    targets: adapter.settings.targets,
  }

  let result: ImportAdapterResult | undefined
  await writeExportFolder(
    req.outDir,
    'imported-run',
    req.overwrite ?? false,
    { run: runDir, adapter: adapter.dir },
    async (tmp) => {
      // A run directory like any other (docs/run-directory.md): its marker first.
      ensureRunDir(tmp)
      req.onPhase?.('load', run.model_dir)
      const session = await openModel(run.model_dir, { quant: params.quant, backend })
      try {
        const gen = async () =>
          (
            await generateResponses(session, {
              prompts,
              system: params.systemMessage,
              maxNewTokens: params.maxNewTokens,
            })
          ).map(({ id, prompt, response }): ResponseRow => ({ id, prompt, response }))
        let original: ResponseRow[]
        if (samePrompts) original = JSON.parse(readFileSync(originalFile, 'utf8')) as ResponseRow[]
        else {
          req.onPhase?.('original', `${prompts.length} prompts`)
          original = await gen()
        }
        attachLoadedAdapter(session, adapter)
        req.onPhase?.('trained', `${prompts.length} prompts`)
        const trained = await gen()
        const comparison: ComparisonRow[] = original.map((o, i) => ({
          id: o.id,
          prompt: o.prompt,
          response_from_original_model: o.response,
          response_from_trained_model: trained[i]!.response,
        }))
        const now = new Date().toISOString()
        writeJson(join(tmp, 'config.json'), {
          ...run,
          created: now,
          params: lora,
          test_prompts: { path: resolve(promptsPath), sha256: sha256File(promptsPath), prompts: prompts.length },
          imported: { adapter: adapter.dir, from_run: runDir, metrics: existsSync(metricsFile) ? metricsFile : null },
        })
        mkdirSync(join(tmp, 'adapter'))
        copyFileSync(join(adapter.dir, ADAPTER_CONFIG_FILE), join(tmp, 'adapter', ADAPTER_CONFIG_FILE))
        copyFileSync(join(adapter.dir, ADAPTER_WEIGHTS_FILE), join(tmp, 'adapter', ADAPTER_WEIGHTS_FILE))
        if (existsSync(metricsFile)) copyFileSync(metricsFile, join(tmp, 'metrics.jsonl'))
        writeJson(join(tmp, 'responses_original.json'), original)
        writeJson(join(tmp, 'responses_trained.json'), trained)
        writeJson(join(tmp, 'comparison.json'), comparison)
        writeJson(join(tmp, 'comparison_meta.json'), {
          created: now,
          engine_version: req.engineVersion ?? null,
          model: { dir: resolve(run.model_dir), quant: params.quant, backend: session.info.backend },
          adapter: join(resolve(req.outDir), 'adapter'),
          imported_from: adapter.dir,
          run: runDir,
          params: lora,
          generation: {
            do_sample: false,
            max_new_tokens: params.maxNewTokens,
            eos_token_ids: [...session.tokenizer.eosIds],
            system_message: params.systemMessage,
          },
          comparison: 'comparison.json',
        })
        writeRunStatus(tmp, {
          runId: basename(resolve(req.outDir)),
          status: 'completed',
          phase: 'done',
          startedAt: now,
          endedAt: now,
          modelDir: resolve(run.model_dir),
          datasetPath: run.dataset?.path ?? '',
          testPromptsPath: resolve(promptsPath),
          engineVersion: req.engineVersion ?? null,
          error: null,
          pid: process.pid,
          hostname: hostname(),
        })
        result = {
          path: resolve(req.outDir),
          prompts: prompts.length,
          reusedOriginal: samePrompts,
          metrics: existsSync(metricsFile),
        }
      } finally {
        session.dispose()
      }
    },
    [adapter.dir, run.model_dir],
  )
  req.onPhase?.('done', resolve(req.outDir))
  return result!
}
