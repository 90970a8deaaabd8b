// Run directories on disk (docs/architecture.md#run-directory: config.json, metrics.jsonl, responses_*.json,
// comparison.json, adapter/) plus the app's run_status.json: listing for the history view, reopening, and exports.
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import type {
  ComparisonRow,
  ExportResult,
  MetricsRow,
  ResponseRow,
  RunDetail,
  RunListItem,
} from '../../src-shared/api/contract'
import { writeJsonAtomic } from '../services/fsAtomic'
import { StudioError } from '../services/errors'
import { resumeInfo } from '../services/training/resume'
import { RUN_STATUS_FILE, recoverOrphanedRun, writeRunStatus, type RunStatusFile } from '../services/training/runDir'

export const STATUS_FILE = RUN_STATUS_FILE
export { writeRunStatus, type RunStatusFile }

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T
  } catch {
    return null
  }
}

/** metrics.jsonl; a torn last line (a run killed mid-write) is skipped. */
export async function readMetrics(dir: string): Promise<MetricsRow[]> {
  const text = await readFile(join(dir, 'metrics.jsonl'), 'utf8').catch(() => '')
  const rows: MetricsRow[] = []
  for (const line of text.split('\n')) {
    if (!line.trim()) continue
    try {
      rows.push(JSON.parse(line) as MetricsRow)
    } catch {
      /* torn line */
    }
  }
  return rows
}

/** The first string at one of the dotted paths (config.json: model_dir, dataset.path). */
function pick(config: unknown, ...paths: string[]): string | null {
  for (const p of paths) {
    let v: unknown = config
    for (const k of p.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined
    if (typeof v === 'string') return v
  }
  return null
}

/** config.json's resolved parameters (runs of the app and the CLI both write them under "params"). */
function paramsOf(config: unknown): Record<string, unknown> | null {
  const p = config && typeof config === 'object' ? (config as Record<string, unknown>).params : null
  return p && typeof p === 'object' && !Array.isArray(p) ? (p as Record<string, unknown>) : null
}

export async function readRunItem(dir: string): Promise<RunListItem | null> {
  // A run recorded as running whose process is gone is marked failed first (docs/run-directory.md).
  const status = recoverOrphanedRun(dir) ?? (await readJson<RunStatusFile>(join(dir, STATUS_FILE)))
  const config = await readJson<unknown>(join(dir, 'config.json'))
  if (!status && !config) return null
  const metrics = await readMetrics(dir)
  const last = metrics[metrics.length - 1]
  const hasComparison = existsSync(join(dir, 'comparison.json'))
  const startedAt = status?.startedAt ?? (await stat(dir)).mtime.toISOString()
  const state = status?.status ?? (hasComparison ? 'completed' : 'unknown')
  const resume = state === 'completed' || state === 'running' ? { resumable: false, fromStep: 0 } : resumeInfo(dir)
  return {
    runId: basename(dir),
    dir,
    status: state,
    startedAt,
    endedAt: status?.endedAt ?? null,
    modelDir: status?.modelDir ?? pick(config, 'model_dir', 'modelDir'),
    datasetPath: status?.datasetPath ?? pick(config, 'dataset.path', 'datasetPath'),
    steps: last?.step ?? 0,
    finalLoss: last?.loss ?? null,
    finalMargin: last?.['rewards/margins'] ?? null,
    hasComparison,
    hasAdapter: existsSync(join(dir, 'adapter', 'adapter_config.json')),
    error: status?.error ?? null,
    resumable: resume.resumable,
    resumeFromStep: resume.fromStep,
    reason: status?.status === 'cancelled' ? (status.reason ?? null) : null,
    params: paramsOf(config),
  }
}

/** On start: every run recorded as running whose process is gone is marked failed with the reason. */
export async function recoverOrphanedRuns(runsDir: string): Promise<number> {
  const names = await readdir(runsDir).catch(() => [] as string[])
  return names.filter((n) => recoverOrphanedRun(join(runsDir, n)) !== null).length
}

export async function listRuns(runsDir: string): Promise<RunListItem[]> {
  const names = await readdir(runsDir).catch(() => [] as string[])
  const items = await Promise.all(names.map((n) => readRunItem(join(runsDir, n)).catch(() => null)))
  return items
    .filter((x): x is RunListItem => x !== null)
    .sort((a, b) => (b.startedAt ?? '').localeCompare(a.startedAt ?? ''))
}

export async function openRun(dir: string): Promise<RunDetail> {
  const item = await readRunItem(dir)
  if (!item) throw new StudioError('E_BAD_INPUT', `${dir} is not a run directory (no config.json or ${STATUS_FILE})`)
  return {
    ...item,
    config: await readJson<unknown>(join(dir, 'config.json')),
    metrics: await readMetrics(dir),
    original: await readJson<ResponseRow[]>(join(dir, 'responses_original.json')),
    trained: await readJson<ResponseRow[]>(join(dir, 'responses_trained.json')),
    comparison: await readJson<ComparisonRow[]>(join(dir, 'comparison.json')),
  }
}

/** The notebook's comparison rows: comparison.json, or built from both response files. */
export function comparisonOf(run: RunDetail): ComparisonRow[] {
  if (run.comparison) return run.comparison
  if (run.original && run.trained)
    return run.original.map((o, i) => ({
      id: o.id,
      prompt: o.prompt,
      response_from_original_model: o.response,
      response_from_trained_model: run.trained![i]?.response ?? '',
    }))
  throw new StudioError(
    'E_BAD_INPUT',
    `run ${run.runId} has no answers to compare yet (it needs both the original and the trained responses)`,
  )
}

async function sha256File(path: string | null): Promise<string | null> {
  if (!path) return null
  let file = path
  if (existsSync(path) && (await stat(path)).isDirectory()) file = join(path, 'labelled_data.json')
  const data = await readFile(file).catch(() => null)
  return data ? createHash('sha256').update(data).digest('hex') : null
}

/** TARGET.meta.json: the export's metadata file, which also marks TARGET as an export of ours. */
export function exportMetaPath(target: string): string {
  return target.replace(/\.json$/i, '') + '.meta.json'
}

/**
 * May the comparison go to `target`? A new file: yes. An earlier comparison export of ours (its .meta.json says it
 * exported exactly this file): only with `overwrite` (the UI asks first; E_EXPORT_EXISTS). Anything else (a dataset,
 * notes, a folder): never (E_EXPORT_NOT_OURS). docs/run-directory.md, "Exports".
 */
export async function checkExportTarget(target: string, overwrite: boolean): Promise<void> {
  const meta = exportMetaPath(target)
  const [t, m] = await Promise.all([stat(target).catch(() => null), stat(meta).catch(() => null)])
  if (!t && !m) return
  const ours = t?.isFile() === true && (await isOurExport(target, meta))
  if (!ours) {
    const what = t
      ? t.isDirectory()
        ? 'is a folder'
        : 'exists and is not an earlier DPO Studio export'
      : `has no comparison but ${meta} exists`
    throw new StudioError('E_EXPORT_NOT_OURS', `${target} ${what}; choose another file name (nothing was written)`, {
      details: { path: target, earlierExport: false },
    })
  }
  if (!overwrite)
    throw new StudioError('E_EXPORT_EXISTS', `${target} holds an earlier export; replace it?`, {
      details: { path: target, earlierExport: true },
    })
}

async function isOurExport(target: string, meta: string): Promise<boolean> {
  const m = await readJson<{ exported?: { comparison?: unknown } }>(meta)
  if (typeof m?.exported?.comparison !== 'string' || resolve(m.exported.comparison) !== resolve(target)) return false
  const rows = await readJson<unknown>(target)
  return (
    Array.isArray(rows) && rows.every((r) => r !== null && typeof r === 'object' && 'response_from_trained_model' in r)
  )
}

export async function exportComparison(
  dir: string,
  target: string,
  engineVersion: string | null,
  overwrite = false,
): Promise<ExportResult> {
  const run = await openRun(dir)
  const rows = comparisonOf(run)
  await checkExportTarget(target, overwrite)
  writeJsonAtomic(target, rows)
  const metadataPath = exportMetaPath(target)
  // The training service writes comparison_meta.json (model, adapter, dataset hash, parameters, generation config,
  // engine version); the export carries it along, or rebuilds the same facts for runs that lack it.
  const runMeta = await readJson<Record<string, unknown>>(join(dir, 'comparison_meta.json'))
  const config = run.config as Record<string, unknown> | null
  const params = (config?.params as Record<string, unknown> | undefined) ?? config
  const meta = runMeta ?? {
    model: run.modelDir,
    adapter: run.hasAdapter ? join(run.dir, 'adapter') : null,
    dataset: { path: run.datasetPath, sha256: await sha256File(run.datasetPath) },
    params,
    generation: {
      do_sample: false,
      max_new_tokens: (params?.maxNewTokens as number | undefined) ?? null,
      system_message: (params?.systemMessage as string | undefined) ?? null,
    },
    engine_version: engineVersion,
  }
  writeJsonAtomic(metadataPath, {
    ...meta,
    exported: { at: new Date().toISOString(), run: run.runId, run_dir: run.dir, comparison: target },
  })
  return { path: target, metadataPath, files: [target, metadataPath] }
}

/** Biggest exported JSON the browser may download through the API (a comparison is a few hundred KiB). */
const MAX_READ_BYTES = 32 * 2 ** 20

/** An exported JSON file's text for the web host's download button; only .json files, only whole, never huge. */
export async function readExport(path: string): Promise<{ name: string; text: string }> {
  if (!/\.json$/i.test(path))
    throw new StudioError('E_BAD_INPUT', `${path}: only exported .json files can be downloaded`)
  const s = await stat(path).catch(() => null)
  if (!s?.isFile()) throw new StudioError('E_BAD_INPUT', `${path} is not a file`)
  if (s.size > MAX_READ_BYTES)
    throw new StudioError(
      'E_BAD_INPUT',
      `${path} is larger than ${MAX_READ_BYTES / 2 ** 20} MiB; copy it from the server instead`,
    )
  return { name: basename(path), text: await readFile(path, 'utf8') }
}

/** Copies the run's PEFT adapter folder to `target` (a new or empty folder, or an earlier adapter export). */
export async function exportAdapter(dir: string, target: string): Promise<ExportResult> {
  const src = join(dir, 'adapter')
  if (!existsSync(join(src, 'adapter_config.json')))
    throw new StudioError('E_BAD_INPUT', `run ${basename(dir)} has no adapter (it has not finished training)`)
  if (existsSync(target)) {
    const present = await readdir(target)
    if (present.length > 0 && !present.includes('adapter_config.json'))
      throw new StudioError('E_BAD_INPUT', `${target} is not empty; choose a new folder for the adapter`)
  }
  // Copy into a temp folder beside the target, then swap it in: never a half-copied adapter.
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${Date.now()}`)
  await mkdir(tmp, { recursive: true })
  const files: string[] = []
  try {
    for (const name of await readdir(src)) {
      if ((await stat(join(src, name))).isFile()) {
        await copyFile(join(src, name), join(tmp, name))
        files.push(join(target, name))
      }
    }
    await rm(target, { recursive: true, force: true })
    await rename(tmp, target)
  } catch (e) {
    await rm(tmp, { recursive: true, force: true })
    throw e
  }
  return { path: target, metadataPath: null, files }
}
