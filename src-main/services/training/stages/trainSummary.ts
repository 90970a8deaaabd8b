// How a training ends: the adapter saved with how far it got, HF's train() metrics in train_summary.json
// (docs/reference/trainer.md#end-of-training, plus ours), and the result returned. A cancelled run keeps a checkpoint
// to continue from; a completed one has its adapter as the final state; a failed one records its error.
import { resolve, join } from 'node:path'
import { fromEngineError } from '../../session/modelSession'
import { errorMessage } from '../../errors'
import { writeJsonAtomic } from '../../fsAtomic'
import { saveAdapter, type LoadedAdapter } from '../adapterFiles'
import { removeCheckpoint } from '../checkpoint'
import { ADAPTER_DIR, SUMMARY_FILE, TRAINING_STATE_FILE } from '../runFiles'
import type { RunSummary } from '../../../../src-shared/run/runTypes'
import { saveCheckpoint } from './saveCheckpoint'
import type { TrainRun, TrainState } from './trainRun'

export interface TrainResult extends RunSummary {
  maxSteps: number
  adapterDir: string | null
  /** Set when cancelled: the steps that finished (the adapter is as of this step). */
  cancelledAtStep?: number
  refCached: number
  refComputed: number
}

export function finishTraining(run: TrainRun, state: TrainState, status: 'completed' | 'cancelled'): TrainResult {
  const { outDir, totals, ev, pairs, params } = run
  const { settings, completedSteps } = state
  const native = run.session.native
  if (status === 'cancelled' && settings) saveCheckpoint(run, state)
  let adapterDir: string | null = null
  if (settings && completedSteps > 0) {
    ev.phase?.('save', join(outDir, ADAPTER_DIR))
    adapterDir = join(outDir, ADAPTER_DIR)
    const trainingState = {
      status,
      global_step: completedSteps,
      max_steps: totals.maxSteps,
      epoch: state.lastEpoch,
      ...(status === 'cancelled' ? { cancelled_at_step: completedSteps } : {}),
      init_adapter: initAdapterDir(run.initAdapter),
      saved: new Date().toISOString(),
    }
    let tensors
    try {
      tensors = native.loraTensors()
    } catch (e) {
      throw fromEngineError(e)
    }
    saveAdapter(adapterDir, tensors, settings, { extraJson: { [TRAINING_STATE_FILE]: trainingState } })
  }
  const runtimeS = (performance.now() - run.t0) / 1000
  const loopS = (performance.now() - state.trainStart) / 1000
  const { stepLosses } = state
  const trainLoss = stepLosses.length > 0 ? stepLosses.reduce((a, b) => a + b, 0) / stepLosses.length : NaN
  const pairsPerS = loopS > 0 ? (state.pairsDone - state.pairsBefore) / loopS : 0
  writeJsonAtomic(join(outDir, SUMMARY_FILE), {
    status,
    global_step: completedSteps,
    ...run.summaryBase,
    epoch: state.lastEpoch,
    train_loss: trainLoss,
    train_runtime: runtimeS,
    train_samples_per_second: (pairs.length * params.epochs) / runtimeS,
    train_steps_per_second: totals.maxSteps / runtimeS,
    pairs_trained: state.pairsDone,
    pairs_per_s: pairsPerS,
    // Backend memory at its highest since the model was loaded (GPU memory on CUDA): what a user sizes a run by.
    peak_memory_bytes: native.memoryStats().peakBytes,
    reference: {
      pairs: run.used.size,
      cached: state.refCached,
      computed: state.refComputed,
      seconds: state.refSeconds,
    },
    adapter: adapterDir === null ? null : ADAPTER_DIR,
    ...(status === 'cancelled' ? { cancelled_at_step: completedSteps } : {}),
  })
  if (status === 'completed') removeCheckpoint(outDir)
  if (status === 'cancelled') ev.log?.(`cancelled after ${completedSteps} of ${totals.maxSteps} steps`)
  return {
    outDir,
    steps: completedSteps,
    maxSteps: totals.maxSteps,
    trainLoss,
    runtimeS,
    pairsPerS,
    status,
    adapterDir,
    ...(status === 'cancelled' ? { cancelledAtStep: completedSteps, cancelledIn: state.stage } : {}),
    refCached: state.refCached,
    refComputed: state.refComputed,
  }
}

/** train_summary.json of a failed training; best effort, since the run's own error says more. */
export function recordTrainingFailure(run: TrainRun, state: TrainState, e: unknown): void {
  try {
    writeJsonAtomic(join(run.outDir, SUMMARY_FILE), {
      status: 'failed',
      error: errorMessage(e),
      global_step: state.completedSteps,
      ...run.summaryBase,
      epoch: state.lastEpoch,
    })
  } catch {
    // A full disk may refuse the summary too; the run's own error says more (run_status.json records it in place).
  }
}

function initAdapterDir(a: string | LoadedAdapter | undefined): string | null {
  return a === undefined ? null : typeof a === 'string' ? resolve(a) : a.dir
}
