// The numbers a training step logs: TRL's per-micro-batch metrics (docs/reference/dpo-loss.md#metrics), their step
// means in a metrics.jsonl row with HF's rounded loss (docs/reference/trainer.md#loss-scaling-and-the-logged-loss),
// and the progress counts shown while a run goes.
import type { DpoPairMetrics } from '../../addon/addonTypes'
import type { PlannedStep } from './schedule'
import type { MetricsRow, TrainProgress } from '../../../src-shared/run/runTypes'

/** Step-level means of TRL's per-micro-batch metrics (DPOTrainer.log averages the stored micro-batch values). */
export interface MicroMetrics {
  rewardsChosen: number
  rewardsRejected: number
  accuracies: number
  margins: number
  logpsChosen: number
  logpsRejected: number
  logitsChosen: number
  logitsRejected: number
}

/** TRL get_batch_loss_metrics for one micro-batch: means over its pairs. */
export function microMetrics(m: readonly DpoPairMetrics[]): MicroMetrics {
  return {
    rewardsChosen: mean(m.map((x) => x.chosenReward)),
    rewardsRejected: mean(m.map((x) => x.rejectedReward)),
    // (chosen_rewards > rejected_rewards).float(): strictly greater, so 0 when equal (steps 1-2 of HW6).
    accuracies: mean(m.map((x) => (x.chosenReward > x.rejectedReward ? 1 : 0))),
    margins: mean(m.map((x) => x.chosenReward - x.rejectedReward)),
    logpsChosen: mean(m.map((x) => x.chosenLogp)),
    logpsRejected: mean(m.map((x) => x.rejectedLogp)),
    logitsChosen: mean(m.map((x) => x.chosenLogitsMean)),
    logitsRejected: mean(m.map((x) => x.rejectedLogitsMean)),
  }
}

/**
 * The step's metrics.jsonl row. HF logs round(tr_loss / steps since the last log, 4): the mean of the step's
 * micro-batch losses when the step has gradAccum of them; train_loss averages the unrounded values.
 */
export function metricsRow(
  planned: PlannedStep,
  step: { loss: number; gradNorm: number; micro: readonly MicroMetrics[] },
  timing: { elapsedS: number; pairsPerS: number },
): MetricsRow {
  const { micro } = step
  return {
    step: planned.step,
    epoch: planned.epoch,
    loss: round4(step.loss),
    grad_norm: step.gradNorm,
    learning_rate: planned.loggedLr,
    'rewards/chosen': mean(micro.map((x) => x.rewardsChosen)),
    'rewards/rejected': mean(micro.map((x) => x.rewardsRejected)),
    'rewards/accuracies': mean(micro.map((x) => x.accuracies)),
    'rewards/margins': mean(micro.map((x) => x.margins)),
    'logps/chosen': mean(micro.map((x) => x.logpsChosen)),
    'logps/rejected': mean(micro.map((x) => x.logpsRejected)),
    'logits/chosen': mean(micro.map((x) => x.logitsChosen)),
    'logits/rejected': mean(micro.map((x) => x.logitsRejected)),
    elapsed_s: timing.elapsedS,
    pairs_per_s: timing.pairsPerS,
  }
}

/** Progress counts; the rate is over the pairs of this process (pairsBefore were done before a resume). */
export function trainProgress(
  step: number,
  totalSteps: number,
  pairsDone: number,
  pairsTotal: number,
  start: number,
  pairsBefore = 0,
): TrainProgress {
  const elapsedS = (performance.now() - start) / 1000
  const pairsPerS = elapsedS > 0 ? (pairsDone - pairsBefore) / elapsedS : 0
  const etaS = pairsPerS > 0 ? (pairsTotal - pairsDone) / pairsPerS : 0
  return { stage: 'train', step, totalSteps, pairsDone, pairsTotal, elapsedS, etaS, pairsPerS }
}

export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length
}

/**
 * Python's round(x, 4). toFixed rounds the exact binary value, and a double is never exactly halfway between two
 * 4-decimal numbers, so this is the correctly rounded decimal, parsed back to the nearest double as Python returns.
 */
export function round4(x: number): number {
  return Number.isFinite(x) ? Number(x.toFixed(4)) : x
}
