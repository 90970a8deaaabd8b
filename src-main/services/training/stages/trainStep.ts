// One optimizer step of the loop (docs/reference/trainer.md, docs/reference/hw6-run.md#the-run-in-order): the
// engine accumulates each micro-batch's DPO gradients (all of the step's in one chained call where it can,
// docs/performance.md#chained-training-steps), then AdamW updates the LoRA; the step's metrics row and its
// steps.jsonl line are then logged, whole lines only.
import { join } from 'node:path'
import type { DpoPairInput, DpoPairMetrics } from '../../../addon/addonTypes'
import { StudioError } from '../../errors'
import { trainingLoraDropout } from '../loraAttach'
import { appendLine, METRICS_FILE, STEPS_FILE } from '../runFiles'
import type { PlannedStep } from '../schedule'
import { mean, metricsRow, microMetrics, trainProgress, type MicroMetrics } from '../stepMetrics'
import type { MetricsRow, TrainProgress } from '../../../../src-shared/run/runTypes'
import type { TrainRun, TrainState } from './trainRun'

/** AdamW constants the notebook leaves at TrainingArguments' defaults (docs/reference/trainer.md#defaults-that-matter). */
const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8 } as const

/**
 * Whether the step's micro-batches go to the engine in one call: where the engine chains them
 * (docs/performance.md#chained-training-steps: a backend that chains scoring rows, and no LoRA dropout, whose masks
 * are drawn per decoder row). Otherwise one call per micro-batch, with a cancel check and a progress event after each.
 */
export function chainsStep(run: Pick<TrainRun, 'session' | 'params'>, planned: PlannedStep): boolean {
  return planned.microBatches.length > 1 && trainingLoraDropout(run.params) === 0 && run.session.info.chainedScoring
}

/** Runs `planned` (forward, backward, update) and returns its metrics row; state then counts it as finished. */
export async function trainStep(run: TrainRun, state: TrainState, planned: PlannedStep): Promise<MetricsRow> {
  const { params, tokenized } = run
  const native = run.session.native
  const dpo = {
    beta: params.beta,
    lossType: params.lossType,
    labelSmoothing: params.labelSmoothing,
    gradScale: 1 / params.gradAccum,
  }
  const stepStart = performance.now()
  const micro: MicroMetrics[] = []
  let stepPairs = 0
  let trLoss = 0
  const inputs: DpoPairInput[][] = planned.microBatches.map((mb) =>
    mb.pairs.map((i) => {
      const t = tokenized[i]!
      const ref = state.refs.get(i)!
      return { chosen: t.chosen, rejected: t.rejected, refChosen: ref.chosen, refRejected: ref.rejected }
    }),
  )
  const took = (m: DpoPairMetrics[], k: number) => {
    if (m.length !== inputs[k]!.length)
      throw new StudioError('E_INTERNAL', `dpoAccumulate returned ${m.length} results for ${inputs[k]!.length} pairs`)
    // HF training_step returns L_j / GA and tr_loss sums them. A NaN/inf micro-loss adds
    // tr_loss / (1 + global_step - last_logged) instead (logging_nan_inf_filter); every step is logged, so
    // that divisor is 1.
    const microLoss = mean(m.map((x) => x.loss)) / params.gradAccum
    trLoss += Number.isFinite(microLoss) ? microLoss : trLoss
    micro.push(microMetrics(m))
    stepPairs += m.length
    state.pairsDone += m.length
    run.ev.progress?.(progressNow(run, state))
  }
  if (chainsStep(run, planned)) {
    run.checkAbort()
    const results = await run.engineCall(() => native.dpoAccumulateGroup(inputs, run.padId, dpo, run.token))
    if (results.length !== inputs.length)
      throw new StudioError('E_INTERNAL', `dpoAccumulateGroup returned ${results.length} for ${inputs.length}`)
    results.forEach(took)
  } else {
    for (const [k, pairs] of inputs.entries()) {
      run.checkAbort()
      took(await run.engineCall(() => native.dpoAccumulate(pairs, run.padId, dpo, run.token)), k)
    }
  }
  const { gradNorm } = await run.engineCall(() =>
    native.optimizerStep({
      kind: params.optim,
      lr: planned.lr,
      ...ADAM,
      weightDecay: params.weightDecay,
      maxGradNorm: params.maxGradNorm,
    }),
  )
  state.completedSteps = planned.step
  state.lastEpoch = planned.epoch
  state.lastPlanned = planned
  state.pairsAtStep = state.pairsDone
  state.secondsAtStep = state.trainSecondsBefore + (performance.now() - state.trainStart) / 1000
  state.stepLosses.push(trLoss)
  const now = performance.now()
  return metricsRow(
    planned,
    { loss: trLoss, gradNorm, micro },
    {
      elapsedS: state.trainSecondsBefore + (now - state.trainStart) / 1000,
      pairsPerS: stepPairs / Math.max((now - stepStart) / 1000, 1e-9),
    },
  )
}

/** The step's lines in metrics.jsonl and steps.jsonl (which pairs, in which micro-batches, at which lr). */
export function logStep(run: TrainRun, planned: PlannedStep, row: MetricsRow): void {
  appendLine(join(run.outDir, METRICS_FILE), row)
  appendLine(join(run.outDir, STEPS_FILE), {
    step: planned.step,
    epoch: planned.epoch,
    lr: planned.lr,
    pair_ids: planned.microBatches.flatMap((mb) => mb.pairs.map((i) => run.pairs[i]!.id)),
    micro_batches: planned.microBatches.map((mb) => ({ epoch: mb.epoch, index: mb.index, rows: mb.pairs })),
  })
}

/** Training progress as of now, with the backend's peak memory. */
export function progressNow(run: TrainRun, state: TrainState): TrainProgress {
  const p = trainProgress(
    state.completedSteps,
    run.totals.maxSteps,
    state.pairsDone,
    run.totals.pairs,
    state.trainStart,
    state.pairsBefore,
  )
  return { ...p, peakMemoryBytes: run.session.native.memoryStats().peakBytes }
}
