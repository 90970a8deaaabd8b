// How a job's events change what is known about it: the one reducer behind the main process's job snapshot
// (api/jobs.ts, what a window opened mid-run starts from) and the renderer's run store, so both read a run the same
// way. Pure and Node-free (type-only imports): it runs in the renderer as it is.
import type { ApiErrorInfo, JobEvent, MetricsRow, RunPhase, SweepJobState, TrainProgress } from './contract'

/** Log lines a job keeps (the latest). */
export const LOG_KEEP = 200

/** The parts of a job that its events change. A view without answers (original/trained) ignores text events. */
export interface JobView {
  status: string
  phase: RunPhase | null
  detail: string
  metrics: MetricsRow[]
  progress: TrainProgress | null
  log: string[]
  error: ApiErrorInfo | null
  /** Streamed answer text so far per prompt index. */
  original?: string[]
  trained?: string[]
  sweep?: SweepJobState
}

/** The view after one event; the view given is not changed (new arrays where something was added). */
export function applyJobEvent<V extends JobView>(v: V, e: JobEvent): V {
  switch (e.kind) {
    case 'phase':
      return { ...v, phase: e.phase, detail: e.detail ?? '' }
    case 'metrics':
      return { ...v, metrics: [...v.metrics, e.row] }
    case 'progress':
      return { ...v, progress: e.progress }
    case 'text': {
      const texts = v[e.which]
      return texts ? { ...v, [e.which]: withAt(texts, e.index, (texts[e.index] ?? '') + e.delta) } : v
    }
    case 'response': {
      const texts = v[e.which]
      return texts ? { ...v, [e.which]: withAt(texts, e.index, e.row.response) } : v
    }
    case 'sweep': {
      const rows = v.sweep?.rows ?? []
      return {
        ...v,
        sweep: {
          index: e.index,
          total: e.total,
          ratio: e.ratio,
          runDir: e.runDir,
          rows: e.row ? [...rows, e.row] : rows,
        },
      }
    }
    case 'log':
      return { ...v, log: [...v.log.slice(-(LOG_KEEP - 1)), e.line] }
    case 'end':
      return { ...v, status: e.status, error: e.error ?? null, phase: e.status === 'completed' ? 'done' : e.status }
    default:
      // loadProgress: shown while it streams, not kept.
      return v
  }
}

function withAt(xs: readonly string[], index: number, value: string): string[] {
  const out = [...xs]
  out[index] = value
  return out
}
