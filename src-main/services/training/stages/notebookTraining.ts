// The notebook's training phase (docs/reference/trainer.md, docs/reference/hw6-run.md#the-run-in-order): trainDpo into
// the run directory, continued from its checkpoint on resume, or, when a resumed run's training had completed, its
// finished adapter put back on the model and its summary taken as the result.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { PreferencePair } from '../../data/preferenceFile'
import type { ModelSession } from '../../session/modelSession'
import type { TrainParams } from '../../../../src-shared/params/trainParams'
import { loadAdapter, type LoadedAdapter } from '../adapterFiles'
import { attachLoadedAdapter } from '../loraAttach'
import type { ResumePlan } from '../resume'
import { ADAPTER_DIR, SUMMARY_FILE } from '../runFiles'
import { trainDpo, type TrainOptions } from '../trainer'
import type { RunEvents, RunSummary } from '../../../../src-shared/run/runTypes'
import type { TrainResult } from './trainSummary'

export interface NotebookTraining extends Pick<TrainOptions, 'refCacheDir' | 'cancelTokenFactory'> {
  session: ModelSession
  pairs: PreferencePair[]
  params: TrainParams
  outDir: string
  /** The run's events, with the phase event that also records run_status.json. */
  events: RunEvents
  signal: AbortSignal | undefined
  initAdapter: LoadedAdapter | undefined
  engineVersion: string
  resume: ResumePlan | null
}

export async function notebookTraining(t: NotebookTraining): Promise<TrainResult> {
  if (t.resume?.trainingDone) return finishedTraining(t.session, t.outDir)
  return trainDpo(t.session, t.pairs, t.params, {
    outDir: t.outDir,
    events: t.events,
    ...(t.signal ? { signal: t.signal } : {}),
    ...(t.initAdapter ? { initAdapter: t.initAdapter } : {}),
    engineVersion: t.engineVersion,
    ...(t.refCacheDir !== undefined ? { refCacheDir: t.refCacheDir } : {}),
    ...(t.cancelTokenFactory !== undefined ? { cancelTokenFactory: t.cancelTokenFactory } : {}),
    ...(t.resume ? { resume: { checkpoint: t.resume.checkpoint } } : {}),
  })
}

/** The run summary's part that training decides. */
export function trainedSummary(outDir: string, train: TrainResult): RunSummary {
  return {
    outDir,
    steps: train.steps,
    maxSteps: train.maxSteps,
    trainLoss: train.trainLoss,
    runtimeS: train.runtimeS,
    pairsPerS: train.pairsPerS,
    status: train.status,
    adapterDir: train.adapterDir,
  }
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
