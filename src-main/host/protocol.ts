// The engine host's message protocol: the parent (Electron main or the web host) calls methods by request id, the
// host answers once per id and streams events (tokens, metrics, progress, phase) tagged with the same id.
import type { ApiErrorInfo, EngineInfo, JobEvent, ModelLoaded } from '../../src-shared/api/contract'
import type { BackendChoice, NativeModelCheck, QuantMode } from '../addon/addonTypes'
import type { RecordId } from '../services/data/promptsFile'
import type { GeneratedResponse } from '../services/session/generateResponses'
import type { NotebookRunRequest, RunSummary } from '../../src-shared/run/runTypes'
import type { SweepFile } from '../../src-shared/insights/insightTypes'
import type { SweepRequest } from '../services/insights/sweep'

export interface HostCalls {
  engineInfo: { params: Record<string, never>; result: Omit<EngineInfo, 'host'> }
  modelLoad: { params: { dir: string; quant: QuantMode; backend: BackendChoice }; result: ModelLoaded }
  /** The loader's validation of a folder without loading it (native checkModel). */
  modelCheck: { params: { dir: string; quant: QuantMode }; result: NativeModelCheck }
  generate: {
    params: {
      modelDir: string
      quant: QuantMode
      backend: BackendChoice
      prompts: Array<{ id: RecordId; prompt: string }>
      maxNewTokens: number
      system: string
      /** The chat template's date (YYYY-MM-DD) and enable_thinking (docs/model-families.md); absent = defaults. */
      chatDate?: string
      enableThinking?: boolean
    }
    result: { responses: GeneratedResponse[] }
  }
  runNotebook: { params: NotebookRunRequest; result: RunSummary }
  /** Continues a stopped run in its directory from its checkpoint, then its remaining phases (docs/resume.md). */
  resumeRun: { params: { runDir: string }; result: RunSummary }
  /** Exports that need the engine (docs/exports.md); outDir follows the export-folder rules. */
  exportMerged: {
    params: {
      runDir: string
      outDir: string
      overwrite: boolean
      dtype: 'auto' | 'float32' | 'bfloat16' | 'float16'
      mergeInto: 'auto' | 'original' | 'nf4'
    }
    result: { path: string; files: string[] }
  }
  exportGguf: {
    params: {
      runDir: string
      outDir: string
      overwrite: boolean
      types: Array<'F16' | 'Q8_0' | 'Q4_0' | 'F32'>
      lora: boolean
    }
    result: { path: string; files: string[] }
  }
  importAdapter: { params: { adapterDir: string; runDir: string; outDir: string }; result: { path: string } }
  /** A support_ratio sweep: one run per ratio on one loaded model, then sweep.json (docs/insights.md). */
  runSweep: { params: SweepRequest; result: SweepFile }
  /** Drops the cached model (frees its memory). */
  release: { params: Record<string, never>; result: { released: boolean } }
  /**
   * Test hook (only with DPO_STUDIO_TEST_HOOKS=1): the host kills itself as an OOM kill would, or ('GPU_FAULT')
   * fails the call with E_DEVICE_FAULT as a faulted CUDA context does.
   */
  crashForTest: { params: { signal: 'SIGKILL' | 'SIGSEGV' | 'GPU_FAULT' }; result: never }
}
export type HostMethod = keyof HostCalls

export type ParentToHost =
  { type: 'call'; id: number; method: HostMethod; params: unknown } | { type: 'cancel'; id: number }

export type HostToParent =
  | { type: 'ready'; pid: number }
  | { type: 'result'; id: number; ok: true; value: unknown }
  | { type: 'result'; id: number; ok: false; error: ApiErrorInfo }
  | { type: 'event'; id: number; event: JobEvent }

/** One end of the channel, whatever carries it (node fork IPC or Electron's utilityProcess port). */
export interface HostTransport {
  readonly pid: number | null
  send(msg: ParentToHost): void
  onMessage(listener: (msg: HostToParent) => void): void
  /** Called once when the process ends; stderrTail holds its last lines. */
  onExit(listener: (code: number | null, signal: string | null, stderrTail: string) => void): void
  kill(): void
}

export type HostSpawner = () => HostTransport

/** In words, why a host process ended (shown in the UI). */
/** The host's exit code after an E_DEVICE_FAULT: the parent restarts it with a fresh CUDA context. */
export const DEVICE_FAULT_EXIT_CODE = 70

export function describeExit(code: number | null, signal: string | null, stderrTail: string): string {
  let why: string
  if (code === DEVICE_FAULT_EXIT_CODE)
    why = 'stopped after a GPU fault (a CUDA context cannot be used again in the same process)'
  else if (signal === 'SIGKILL' || code === 137)
    why = 'was killed (SIGKILL): most likely the system ran out of memory and the OOM killer ended it'
  else if (signal === 'SIGSEGV' || code === 139) why = 'crashed with a segmentation fault in the engine'
  else if (signal === 'SIGABRT' || code === 134) why = 'aborted (SIGABRT) inside the engine or the GPU driver'
  else if (signal) why = `was ended by ${signal}`
  else if (code === 0) why = 'exited unexpectedly'
  else why = `exited with code ${code}`
  const tail = stderrTail.trim().split('\n').filter(Boolean).slice(-3).join(' | ')
  return tail ? `${why} (last output: ${tail.slice(0, 400)})` : why
}
