// The DPO training service (services/training/notebookRun.ts: the notebook end to end), as the host runs it.
// Kept behind one function so the host and the API can ask whether this build has training.
import { runNotebook, type NotebookDeps } from '../services/training/notebookRun'
import type { NotebookRunRequest, RunEvents, RunSummary } from '../../src-shared/run/runTypes'

export type RunNotebook = (
  req: NotebookRunRequest,
  events: RunEvents,
  signal?: AbortSignal,
  deps?: NotebookDeps,
) => Promise<RunSummary>

export async function loadRunNotebook(): Promise<RunNotebook | null> {
  return runNotebook
}
