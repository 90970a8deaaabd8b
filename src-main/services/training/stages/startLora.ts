// The stage between the reference pass and the loop: the LoRA the run trains goes on the model, fresh or from an
// adapter (loraAttach.ts), or restored with the counters of the steps already done (docs/resume.md).
import type { Checkpoint } from '../checkpoint'
import { attachAdapter, restoreCheckpoint } from '../loraAttach'
import type { TrainRun, TrainState } from './trainRun'

export function startLora(run: TrainRun, state: TrainState, resumeFrom: Checkpoint | null): void {
  if (!resumeFrom) {
    state.settings = attachAdapter(run.session, run.params, run.initAdapter, run.ev)
    return
  }
  state.settings = restoreCheckpoint(run.session, resumeFrom, run.params)
  const st = resumeFrom.state
  state.completedSteps = st.global_step
  state.checkpointStep = st.global_step
  state.lastEpoch = st.epoch
  state.stepLosses.push(...st.accumulators.step_losses)
  state.pairsDone = state.pairsBefore = state.pairsAtStep = st.accumulators.pairs_done
  state.trainSecondsBefore = state.secondsAtStep = st.accumulators.train_seconds
  run.ev.log?.(`resuming from the checkpoint at step ${st.global_step} of ${run.totals.maxSteps}`)
}
