// TRL 0.9's implicit DPO rewards for one pair (docs/reference/dpo-loss.md#rewards, trl dpo_trainer.py dpo_loss): reward
// = beta × (policy log-prob − reference log-prob), with log-probs averaged over answer tokens for the ipo loss
// (concatenated_forward's average_log_prob), margin = chosen reward − rejected reward. Pure, so the app can recompute
// what it shows.
import type { StoredLogp } from '../../../src-shared/insights/insightTypes'

export interface PairLogps {
  chosenRef: number
  rejectedRef: number
  chosenTrained: number
  rejectedTrained: number
  chosenTokens: number
  rejectedTokens: number
}

export interface PairRewards {
  rewardChosen: number
  rewardRejected: number
  margin: number
}

/**
 * The rewards as the engine computes them in dpoAccumulate (native/src/train/dpo_step.cpp): beta as the float32 the
 * engine holds, divisions by token counts only for ipo, so the values line up with metrics.jsonl's rewards/*.
 */
export function pairRewards(beta: number, lossType: string, p: PairLogps): PairRewards {
  const b = Math.fround(beta)
  const average = lossType === 'ipo'
  const nc = average ? p.chosenTokens : 1
  const nr = average ? p.rejectedTokens : 1
  const rewardChosen = b * (p.chosenTrained / nc - p.chosenRef / nc)
  const rewardRejected = b * (p.rejectedTrained / nr - p.rejectedRef / nr)
  return { rewardChosen, rewardRejected, margin: rewardChosen - rewardRejected }
}

/** A number as pairs.jsonl stores it: JSON has no ±Infinity or NaN. */
export function stored(x: number): StoredLogp {
  return Number.isFinite(x) ? x : null
}
