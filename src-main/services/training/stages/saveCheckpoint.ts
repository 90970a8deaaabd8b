// Checkpoints (docs/resume.md): the state after the last finished step (LoRA values, optimizer state, data position,
// scheduler, accumulators), written whole or not at all; a step already checkpointed is not written again.
import { fromEngineError } from '../../session/modelSession'
import { optimizerSummary, writeCheckpoint } from '../checkpoint'
import type { TrainRun, TrainState } from './trainRun'

export function saveCheckpoint(run: TrainRun, state: TrainState): void {
  const { lastPlanned, completedSteps, settings } = state
  if (!lastPlanned || !settings || completedSteps === state.checkpointStep) return
  const native = run.session.native
  let lora, training
  try {
    lora = native.loraTensors()
    training = native.exportTrainingState()
  } catch (e) {
    throw fromEngineError(e)
  }
  const { totals } = run
  const mb = lastPlanned.microBatches[lastPlanned.microBatches.length - 1]!
  writeCheckpoint(run.outDir, {
    lora,
    training,
    state: {
      global_step: completedSteps,
      max_steps: totals.maxSteps,
      epoch: state.lastEpoch,
      data_position: { epoch: mb.epoch, micro_batch: mb.index, micro_batches_per_epoch: totals.microBatchesPerEpoch },
      // The next step's learning rate is the one logged after this step (peak * λ(global_step)).
      scheduler: { step: completedSteps, next_lr: completedSteps < totals.maxSteps ? lastPlanned.loggedLr : null },
      optimizer: optimizerSummary(training),
      dropout_rng: training.dropoutRng,
      adapter: settings,
      accumulators: {
        step_losses: [...state.stepLosses],
        pairs_done: state.pairsAtStep,
        train_seconds: state.secondsAtStep,
      },
      data_fingerprint: run.dataFingerprint,
      params: run.params,
      engine_version: run.engineVersion,
      backend: run.session.info.backend,
      saved: new Date().toISOString(),
    },
  })
  state.checkpointStep = completedSteps
}

/** After a step: a checkpoint every checkpointEvery steps, never after the last (the adapter is the final state). */
export function checkpointDue(run: TrainRun, step: number): boolean {
  const every = run.params.checkpointEvery
  return every > 0 && step % every === 0 && step < run.totals.maxSteps
}
