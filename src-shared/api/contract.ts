// The one typed API between the renderer and the main side (docs/architecture.md#one-api-for-both-shells): method
// names, zod input schemas, result types and pushed events. The Electron preload bridge and the web host's WebSocket
// client both follow it. Pure data + zod: no Node imports, so the renderer can import it too.
import { z } from 'zod'
import type { BackendInfo, NativeModelInfo } from '../engine/engineTypes'
import type { RecordId } from '../data/recordId'
import type {
  AnswerTokensRow,
  PairInsightRow,
  PairTokensRow,
  SweepFile,
  SweepRunRow,
  TokenSide,
} from '../insights/insightTypes'
import {
  BACKENDS,
  DEFAULT_GGUF_FILE_TYPES,
  GGUF_FILE_TYPES,
  MERGE_BASES,
  MERGE_DTYPES,
  QUANT_MODES,
} from '../params/enumValues'
import { trainParamsSchema } from '../params/trainParams'
import { API_METHOD_NAMES } from './methods'
import type { ComparisonRow, MetricsRow, ResponseRow, RunPhase, RunSummary, TrainProgress } from '../run/runTypes'

export type {
  BackendInfo,
  ComparisonRow,
  MetricsRow,
  NativeModelInfo,
  RecordId,
  ResponseRow,
  RunPhase,
  RunSummary,
  TrainProgress,
}
export type { AnswerTokensRow, PairInsightRow, PairTokensRow, SweepFile, SweepRunRow, TokenSide }

// ---------------------------------------------------------------------------------------------------------------
// Input schemas (every IPC / WebSocket argument is parsed with these before it reaches a service)

const pathArg = z
  .string()
  .trim()
  .min(1, 'a path is required')
  .max(4096)
  .refine((p) => !p.includes('\0'), 'path contains a NUL byte')
const idArg = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'not a valid id')
const none = z.union([z.undefined(), z.null(), z.object({}).strict()]).transform(() => undefined)
const engineChoice = {
  quant: z.enum(QUANT_MODES).default('nf4'),
  backend: z.enum(BACKENDS).default('auto'),
}
/** Parameters as the form sends them: partial, defaults filled by the one schema. */
const paramsArg = trainParamsSchema

export const apiInputs = {
  /** Platform and folders: which pickers the renderer can offer. */
  appInfo: none,
  /** Engine version, backends (GPU name + free memory, or why CPU), host state. */
  engineInfo: none,
  /** Restarts the engine host after repeated crashes (or on request). */
  engineRestart: none,
  /** Models already in the local Hugging Face cache ($HF_HOME/hub or ~/.cache/huggingface/hub). */
  modelsList: none,
  /** Reads config.json and safetensors headers: architecture, parameters, sizes; no weights are loaded. */
  modelInspect: z.object({ dir: pathArg }),
  /** Loads the model on the engine (NF4 or full precision) to show the backend and resident memory. */
  modelLoad: z.object({ dir: pathArg, ...engineChoice }),
  /** Opens an HW6 directory / labelled_data.json or TRL JSON/JSONL; finds test_prompt.json beside it. */
  datasetOpen: z.object({ path: pathArg }),
  datasetRows: z.object({
    datasetId: idArg,
    query: z.string().max(500).default(''),
    offset: z.number().int().min(0).default(0),
    limit: z.number().int().min(1).max(500).default(20),
  }),
  /** The pairs data_size and support_ratio produce (the notebook's rule), counted and paged. */
  datasetPairs: z.object({
    datasetId: idArg,
    dataSize: trainParamsSchema.shape.dataSize,
    supportRatio: trainParamsSchema.shape.supportRatio,
    offset: z.number().int().min(0).default(0),
    limit: z.number().int().min(1).max(500).default(20),
  }),
  promptsOpen: z.object({ path: pathArg }),
  /** Greedy answers to the test prompts with the base model (the notebook's "before training"), streamed. */
  generateStart: z.object({ modelDir: pathArg, promptsPath: pathArg, params: paramsArg }),
  /** The whole notebook: original answers, DPO training, trained answers, comparison.json, in a new run dir. */
  runStart: z.object({
    modelDir: pathArg,
    datasetPath: pathArg,
    testPromptsPath: pathArg.optional(),
    params: paramsArg,
  }),
  /** Continues a cancelled or failed run in its directory: training from its checkpoint, then its remaining phases. */
  runResume: z.object({ run: z.union([idArg, pathArg]) }),
  jobCancel: z.object({ jobId: idArg }),
  /** Live snapshot of the job now running (for a window opened mid-run), or null. */
  jobActive: none,
  runsList: none,
  /** A run id from runsList, or a run directory anywhere the path rules allow. */
  runOpen: z.object({ run: z.union([idArg, pathArg]) }),
  /** The pair inspector of a run (docs/insights.md): pairs.jsonl and which test answers have a token view. */
  runPairs: z.object({ run: z.union([idArg, pathArg]) }),
  /** One pair's per-token log-probs (pairs_tokens.jsonl), by its 0-based index. */
  runPairTokens: z.object({ run: z.union([idArg, pathArg]), index: z.number().int().min(0).max(10_000_000) }),
  /** One test prompt's answers per token (responses_tokens.jsonl), by its 0-based index. */
  runAnswerTokens: z.object({ run: z.union([idArg, pathArg]), index: z.number().int().min(0).max(1_000_000) }),
  /** A support_ratio sweep: one run per ratio into a new folder under the data folder's sweeps/, then sweep.json. */
  sweepStart: z.object({
    modelDir: pathArg,
    datasetPath: pathArg,
    testPromptsPath: pathArg.optional(),
    params: paramsArg,
    ratios: z.array(z.number().min(0).max(1)).min(1).max(21),
  }),
  sweepsList: none,
  /** A sweep id from sweepsList, or a sweep folder (with sweep.json) anywhere the path rules allow. */
  sweepOpen: z.object({ sweep: z.union([idArg, pathArg]) }),
  /** Never over a file that is not an earlier export of ours; over an earlier export only with overwrite (UI asks). */
  exportComparison: z.object({ run: z.union([idArg, pathArg]), path: pathArg, overwrite: z.boolean().default(false) }),
  exportAdapter: z.object({ run: z.union([idArg, pathArg]), dir: pathArg }),
  /** Where next (docs/where-next.md): into a folder that is new, empty or an earlier export of that kind (overwrite). */
  exportMerged: z.object({
    run: z.union([idArg, pathArg]),
    dir: pathArg,
    overwrite: z.boolean().default(false),
    dtype: z.enum(['auto', ...MERGE_DTYPES]).default('auto'),
    mergeInto: z.enum(MERGE_BASES).default('auto'),
  }),
  exportGguf: z.object({
    run: z.union([idArg, pathArg]),
    dir: pathArg,
    overwrite: z.boolean().default(false),
    types: z
      .array(z.enum(GGUF_FILE_TYPES))
      .min(1)
      .max(GGUF_FILE_TYPES.length)
      .default([...DEFAULT_GGUF_FILE_TYPES]),
    lora: z.boolean().default(true),
  }),
  exportProject: z.object({
    run: z.union([idArg, pathArg]),
    dir: pathArg,
    overwrite: z.boolean().default(false),
    gpus: z.number().int().min(1).max(1024).optional(),
  }),
  /** An adapter trained elsewhere (an exported project's outputs/adapter) as a new run beside the one it repeats. */
  importAdapter: z.object({ run: z.union([idArg, pathArg]), adapterDir: pathArg }),
  /** An exported JSON file's text, for the browser's download button (web mode: the file is on the server). */
  exportRead: z.object({ path: pathArg }),
  /** Folder browser for web mode: the roots the server lets a browser see. */
  fsRoots: none,
  fsList: z.object({ dir: pathArg, files: z.boolean().default(true) }),
  /** Native dialogs (desktop only; the web host answers with E_UNSUPPORTED). */
  dialogOpen: z.object({
    kind: z.enum(['file', 'directory', 'fileOrDirectory']),
    title: z.string().max(200).default('Open'),
    defaultPath: pathArg.optional(),
    filters: z
      .array(z.object({ name: z.string().max(100), extensions: z.array(z.string().max(20)).max(20) }))
      .max(10)
      .optional(),
  }),
  dialogSave: z.object({ title: z.string().max(200).default('Save'), defaultPath: pathArg.optional() }),
} as const

export type ApiMethod = keyof typeof apiInputs
export const API_METHODS: readonly ApiMethod[] = API_METHOD_NAMES
// Both directions: every schema has a name in methods.ts and every name a schema.
type Exactly<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
const namesMatch: Exactly<ApiMethod, (typeof API_METHOD_NAMES)[number]> = true
void namesMatch
export type ApiInput<M extends ApiMethod> = z.input<(typeof apiInputs)[M]>
export type ApiParsed<M extends ApiMethod> = z.output<(typeof apiInputs)[M]>

// ---------------------------------------------------------------------------------------------------------------
// Results

export interface AppInfo {
  platform: 'electron' | 'web'
  version: string
  /** Where runs and exports live by default. */
  dataDir: string
  runsDir: string
  exportsDir: string
  /** Bundled sample data, when present. */
  resourcesDir: string
  /** Desktop: native open/save dialogs. Web: the path field + server folder browser (fsRoots/fsList). */
  nativeDialogs: boolean
  /** Whether this build has the DPO training service. */
  training: boolean
  /** The built-in demo model and sample dataset, used when the user has chosen nothing else (null if not bundled). */
  demo: DemoInfo | null
}

export interface DemoInfo {
  /** resources/demo-model (real path). */
  modelDir: string
  /** resources/sample-dataset/zh: the HW6 layout, with test_prompt.json beside labelled_data.json. */
  datasetDir: string
  testPromptsPath: string | null
  /** What the demo model is and how to open a real one, in words. */
  note: string
}

export type HostState = 'starting' | 'ready' | 'busy' | 'crashed' | 'restarting' | 'failed' | 'stopped'

export interface HostStatus {
  state: HostState
  /** Why the host is not ready (crash reason, restart count), in words. */
  message: string
  pid: number | null
  restarts: number
}

export interface EngineInfo {
  version: string
  backends: BackendInfo
  training: boolean
  host: HostStatus
}

export interface CachedModel {
  /** e.g. MediaTek-Research/Breeze-7B-Instruct-v1_0 */
  repoId: string
  revision: string
  dir: string
  architecture: string | null
  sizeBytes: number
}

export interface ModelSummary {
  dir: string
  architecture: string
  modelType: string
  supported: boolean
  /** Why it is not supported, when it is not. */
  note: string
  params: number
  layers: number
  hidden: number
  vocab: number
  dtype: string
  checkpointBytes: number
  /** Estimated NF4 + double-quant resident size of the base (linears 4-bit, the rest 16-bit). */
  nf4Bytes: number
  hasTokenizer: boolean
  hasChatTemplate: boolean
  /** Already a bitsandbytes 4-bit checkpoint. */
  prequantized: boolean
}

export interface ModelLoaded {
  dir: string
  info: NativeModelInfo
  loadSeconds: number
}

export interface DatasetOpened {
  datasetId: string
  file: string
  format: 'hw6' | 'trl'
  conversational: boolean
  rowCount: number
  /** test_prompt.json found beside the data (HW6 layout). */
  testPrompts: PromptsOpened | null
}

export interface DatasetRowView {
  /** 1-based position in the file. */
  index: number
  id: RecordId
  prompt: string
  /** support / chosen */
  first: string
  /** oppose / rejected */
  second: string
}

export interface DatasetRowsPage {
  total: number
  matched: number
  offset: number
  rows: DatasetRowView[]
}

export interface PairView {
  index: number
  id: RecordId
  prompt: string
  chosen: string
  rejected: string
  position: 'support' | 'oppose' | null
}

export interface PairsPage {
  /** N = min(data_size, rows) */
  total: number
  supportCount: number
  opposeCount: number
  offset: number
  pairs: PairView[]
}

export interface PromptsOpened {
  path: string
  prompts: Array<{ id: RecordId; prompt: string }>
}

export interface JobStarted {
  jobId: string
  /** Set for runs: the run id and directory. */
  runId: string | null
  outDir: string | null
}

export type JobKind = 'generate' | 'run' | 'sweep'
export type JobStatus = 'running' | 'completed' | 'cancelled' | 'failed'

export interface JobSnapshot {
  jobId: string
  kind: JobKind
  runId: string | null
  status: JobStatus
  phase: RunPhase | null
  detail: string
  metrics: MetricsRow[]
  progress: TrainProgress | null
  /** Streamed text so far per prompt index. */
  original: string[]
  trained: string[]
  prompts: Array<{ id: RecordId; prompt: string }>
  log: string[]
  error: ApiErrorInfo | null
  startedAt: string
  /** Sweeps: the run being made and the finished runs' rows so far. */
  sweep?: SweepJobState
}

export interface SweepJobState {
  index: number
  total: number
  ratio: number
  runDir: string
  rows: SweepRunRow[]
}

export interface RunListItem {
  runId: string
  dir: string
  status: JobStatus | 'unknown'
  startedAt: string | null
  endedAt: string | null
  modelDir: string | null
  datasetPath: string | null
  steps: number
  finalLoss: number | null
  finalMargin: number | null
  hasComparison: boolean
  hasAdapter: boolean
  error: string | null
  /** A stopped run that `runResume` can continue (docs/resume.md); the full checks run when it starts. */
  resumable: boolean
  /** The checkpoint's step it continues from (0: training restarts; -1: training is done, the answers remain). */
  resumeFromStep: number
  /** A cancelled run: where the cancel stopped it ("cancelled during trained responses"); null otherwise. */
  reason: string | null
  /** The run's resolved parameters (config.json's params; null for a folder without them). */
  params: Record<string, unknown> | null
}

export interface RunDetail extends RunListItem {
  config: unknown
  metrics: MetricsRow[]
  original: ResponseRow[] | null
  trained: ResponseRow[] | null
  comparison: ComparisonRow[] | null
}

export interface RunPairs {
  runId: string
  dir: string
  /** The run's beta and loss (the definitions of the rewards). */
  beta: number | null
  lossType: string | null
  /** pairs.jsonl; null when the run has none (still training, cancelled, or made before the pair inspector). */
  pairs: PairInsightRow[] | null
  /** Test prompts whose answers have a token view (responses_tokens.jsonl), in order. */
  answers: Array<{ index: number; id: RecordId; prompt: string }>
}

export interface SweepListItem {
  sweepId: string
  dir: string
  status: SweepFile['status']
  created: string
  ratios: number[]
  runs: number
  modelDir: string
  dataset: string
}

export interface SweepDetail {
  sweepId: string
  dir: string
  sweep: SweepFile
  /** Each run's directory, absolute (for runOpen / runPairs), in the order of sweep.runs. */
  runDirs: string[]
}

export interface ExportResult {
  path: string
  /** Metadata beside the export: model, adapter, dataset hash, parameters, generation config, engine version. */
  metadataPath: string | null
  files: string[]
}

export interface FsRoot {
  label: string
  path: string
}

export interface FsListing {
  dir: string
  /** null at a root. */
  parent: string | null
  entries: Array<{ name: string; path: string; kind: 'dir' | 'file'; size: number }>
}

export interface DialogResult {
  path: string | null
}

export interface ApiResults {
  appInfo: AppInfo
  engineInfo: EngineInfo
  engineRestart: HostStatus
  modelsList: { cacheDir: string; models: CachedModel[] }
  modelInspect: ModelSummary
  modelLoad: ModelLoaded
  datasetOpen: DatasetOpened
  datasetRows: DatasetRowsPage
  datasetPairs: PairsPage
  promptsOpen: PromptsOpened
  generateStart: JobStarted
  runStart: JobStarted
  runResume: JobStarted
  jobCancel: { cancelled: boolean }
  jobActive: JobSnapshot | null
  runsList: RunListItem[]
  runOpen: RunDetail
  runPairs: RunPairs
  runPairTokens: PairTokensRow
  runAnswerTokens: AnswerTokensRow
  sweepStart: JobStarted
  sweepsList: SweepListItem[]
  sweepOpen: SweepDetail
  exportComparison: ExportResult
  exportAdapter: ExportResult
  exportMerged: ExportResult
  exportGguf: ExportResult
  exportProject: ExportResult
  importAdapter: { runId: string; path: string }
  exportRead: { name: string; text: string }
  fsRoots: FsRoot[]
  fsList: FsListing
  dialogOpen: DialogResult
  dialogSave: DialogResult
}

// ---------------------------------------------------------------------------------------------------------------
// Events pushed to every window / browser tab

export interface ApiErrorInfo {
  code: string
  message: string
  details?: Record<string, unknown>
}

export type JobEvent =
  | { kind: 'phase'; phase: RunPhase; detail?: string }
  | { kind: 'metrics'; row: MetricsRow }
  | { kind: 'progress'; progress: TrainProgress }
  | { kind: 'text'; which: 'original' | 'trained'; index: number; delta: string }
  | { kind: 'response'; which: 'original' | 'trained'; index: number; row: ResponseRow }
  | { kind: 'log'; line: string }
  | { kind: 'loadProgress'; fraction: number }
  /** A sweep starts (no row) or finishes (row) its index-th run. */
  | { kind: 'sweep'; index: number; total: number; ratio: number; runDir: string; row?: SweepRunRow }
  | { kind: 'end'; status: Exclude<JobStatus, 'running'>; summary?: RunSummary; error?: ApiErrorInfo }

/** The views of the app, in sidebar order (also what the desktop menu can open). */
export const VIEWS = ['models', 'dataset', 'params', 'run', 'responses', 'pairs', 'sweep', 'export', 'history'] as const
export type ViewName = (typeof VIEWS)[number]

export type ApiEvent =
  | { type: 'host'; status: HostStatus }
  /** Loading progress of modelLoad (0..1). */
  | { type: 'modelLoad'; dir: string; fraction: number }
  /** Desktop menu: show a view, or open the model / dataset picker. */
  | { type: 'menu'; action: ViewName | 'openModel' | 'openDataset' }
  | { type: 'job'; jobId: string; jobKind: JobKind; runId: string | null; event: JobEvent }

// ---------------------------------------------------------------------------------------------------------------
// The API as the renderer sees it (window.api in Electron; the WebSocket client in a browser)

export type StudioApi = {
  [M in ApiMethod]: (input: ApiInput<M>) => Promise<ApiResults[M]>
} & {
  /** Subscribes to pushed events; returns the unsubscribe function. */
  onEvent(listener: (event: ApiEvent) => void): () => void
}

/** Error thrown to the renderer: keeps the service's code and details across IPC / WebSocket. */
export class ApiError extends Error {
  readonly code: string
  readonly details: Record<string, unknown>
  constructor(info: ApiErrorInfo) {
    super(info.message)
    this.name = 'ApiError'
    this.code = info.code
    this.details = info.details ?? {}
  }
}

/** What crosses IPC / WebSocket: a result or the error's code, message and details (Error subclasses do not). */
export type Envelope<T = unknown> = { ok: true; result: T } | { ok: false; error: ApiErrorInfo }

/** window.api as the preload exposes it: named functions returning envelopes; the renderer's client unwraps them. */
export type BridgeApi = {
  [M in ApiMethod]: (input: ApiInput<M>) => Promise<Envelope<ApiResults[M]>>
} & {
  onEvent(listener: (event: ApiEvent) => void): () => void
}

export { IPC_EVENT_CHANNEL, IPC_PREFIX } from './methods'

/** WebSocket frames. */
export type WsClientFrame = { id: number; method: ApiMethod; input: unknown }
export type WsServerFrame =
  { id: number; ok: true; result: unknown } | { id: number; ok: false; error: ApiErrorInfo } | { event: ApiEvent }
