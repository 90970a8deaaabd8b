// HF Trainer step arithmetic (transformers 4.41-4.45, docs/reference/trainer.md): how many optimizer steps a run takes,
// the linear warmup/decay learning rate of each, the epoch value it logs, and which micro-batches of which pairs form
// each step.
import { epochOrder } from './dataOrder'

export interface ScheduleInput {
  /** Training pairs (the dataset length). */
  numPairs: number
  /** Pairs per micro-batch (per_device_train_batch_size). */
  batchSize: number
  /** Micro-batches per optimizer step (gradient_accumulation_steps). */
  gradAccum: number
  /** num_train_epochs. */
  epochs: number
  warmupRatio: number
  /** Peak learning rate. */
  learningRate: number
  /** The Trainer seed; epoch e's order is randperm(numPairs) with seed + e (docs/reference/trainer.md#data-order). */
  seed: number
}

/** One forward/backward call: a slice of one epoch's permutation. */
export interface MicroBatch {
  /** 0-based epoch the micro-batch belongs to. */
  epoch: number
  /** 0-based position within that epoch's dataloader. */
  index: number
  /** Indices into the pairs array, in dataloader order. */
  pairs: number[]
}

export interface PlannedStep {
  /** 1-based global step (the optimizer update number). */
  step: number
  /** The micro-batches whose gradients this update applies; normally gradAccum of them (see scheduleSteps). */
  microBatches: MicroBatch[]
  /** Learning rate this update uses: peak * λ(step - 1). */
  lr: number
  /** learning_rate as logged, read after scheduler.step(): peak * λ(step). */
  loggedLr: number
  /** state.epoch after this update: epoch + (index + 1) / microBatchesPerEpoch of its last micro-batch. */
  epoch: number
}

export interface ScheduleTotals {
  /** len(train_dataloader) = ceil(N / batchSize) (dataloader_drop_last is False). */
  microBatchesPerEpoch: number
  /** max(floor(len / gradAccum), 1). */
  updatesPerEpoch: number
  /** ceil(epochs * updatesPerEpoch). */
  maxSteps: number
  /** ceil(maxSteps * warmupRatio) (TrainingArguments.get_warmup_steps). */
  warmupSteps: number
  /** Steps the loop really performs (equals maxSteps for whole epochs). */
  steps: number
  /** Micro-batches and pairs the loop runs forward/backward on, over all steps. */
  microBatches: number
  pairs: number
}

export interface TrainSchedule extends ScheduleTotals {
  plan: PlannedStep[]
  /** Pair indices that no step of any epoch uses (HW6 defaults: 40 and 9). */
  unusedPairs: number[]
}

export function checkScheduleInput(input: ScheduleInput): void {
  const positiveInt = (name: keyof ScheduleInput) => {
    const v = input[name]
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`schedule: ${name} must be a positive integer, got ${v}`)
  }
  positiveInt('numPairs')
  positiveInt('batchSize')
  positiveInt('gradAccum')
  if (!(input.epochs > 0)) throw new RangeError(`schedule: epochs must be > 0, got ${input.epochs}`)
  if (!(input.warmupRatio >= 0 && input.warmupRatio <= 1))
    throw new RangeError(`schedule: warmupRatio must be in [0, 1], got ${input.warmupRatio}`)
  if (!(input.learningRate >= 0)) throw new RangeError(`schedule: learningRate must be >= 0, got ${input.learningRate}`)
}

/**
 * get_linear_schedule_with_warmup's λ(s): s / max(1, warmup) while s < warmup, then
 * max(0, (maxSteps - s) / max(1, maxSteps - warmup)). Same float operations as the Python, so the same doubles.
 */
export function linearLambda(s: number, warmup: number, maxSteps: number): number {
  if (s < warmup) return s / Math.max(1, warmup)
  return Math.max(0, (maxSteps - s) / Math.max(1, maxSteps - warmup))
}

/** The step counts of docs/reference/trainer.md#step-count (Trainer._inner_training_loop set-up). */
export function scheduleCounts(
  input: ScheduleInput,
): Pick<ScheduleTotals, 'microBatchesPerEpoch' | 'updatesPerEpoch' | 'maxSteps' | 'warmupSteps'> {
  checkScheduleInput(input)
  const microBatchesPerEpoch = Math.ceil(input.numPairs / input.batchSize)
  const updatesPerEpoch = Math.max(Math.floor(microBatchesPerEpoch / input.gradAccum), 1)
  const maxSteps = Math.ceil(input.epochs * updatesPerEpoch)
  // The Python multiplies first, so ceil(6 * 0.1) = ceil(0.6000000000000001) = 1; JS doubles give the same.
  const warmupSteps = Math.ceil(maxSteps * input.warmupRatio)
  return { microBatchesPerEpoch, updatesPerEpoch, maxSteps, warmupSteps }
}

/**
 * The optimizer steps in order, lazily (a long run need not hold every step in memory). This replays the Trainer's
 * loop: total_batched_samples counts micro-batches across epochs and is never reset, the optimizer steps when
 * total_batched_samples % gradAccum == 0, or at an epoch's last micro-batch when the epoch has no more than
 * gradAccum micro-batches (is_last_step_and_steps_less_than_grad_acc), and the loop breaks as soon as
 * global_step >= max_steps. Consequences the plan reproduces: micro-batches left over at the end of an epoch carry
 * into the next epoch's first step (gradients are only zeroed after an update), and the last micro-batches of the
 * final epoch may never run (HW6: pairs 40 and 9).
 */
export function* scheduleSteps(input: ScheduleInput): Generator<PlannedStep> {
  const { microBatchesPerEpoch: len, maxSteps, warmupSteps } = scheduleCounts(input)
  const { numPairs, batchSize, gradAccum, learningRate, seed } = input
  let total = 0
  let globalStep = 0
  let pending: MicroBatch[] = []
  for (let epoch = 0; epoch < Math.ceil(input.epochs); epoch++) {
    const order = epochOrder(numPairs, seed, epoch)
    for (let index = 0; index < len; index++) {
      total++
      pending.push({ epoch, index, pairs: order.slice(index * batchSize, (index + 1) * batchSize) })
      const lastOfShortEpoch = len <= gradAccum && index + 1 === len
      if (total % gradAccum !== 0 && !lastOfShortEpoch) continue
      globalStep++
      yield {
        step: globalStep,
        microBatches: pending,
        lr: learningRate * linearLambda(globalStep - 1, warmupSteps, maxSteps),
        loggedLr: learningRate * linearLambda(globalStep, warmupSteps, maxSteps),
        epoch: epoch + (index + 1) / len,
      }
      pending = []
      if (globalStep >= maxSteps) return
    }
  }
}

/** Counts of what the loop will run, without materialising the plan. */
export function scheduleTotals(input: ScheduleInput): ScheduleTotals {
  const counts = scheduleCounts(input)
  let steps = 0
  let microBatches = 0
  let pairs = 0
  for (const s of scheduleSteps(input)) {
    steps++
    microBatches += s.microBatches.length
    for (const mb of s.microBatches) pairs += mb.pairs.length
  }
  return { ...counts, steps, microBatches, pairs }
}

/** The whole plan, for tests, the UI's preview and steps.jsonl. */
export function planSchedule(input: ScheduleInput): TrainSchedule {
  const counts = scheduleCounts(input)
  const plan = [...scheduleSteps(input)]
  const used = new Set<number>()
  let microBatches = 0
  let pairs = 0
  for (const s of plan) {
    microBatches += s.microBatches.length
    for (const mb of s.microBatches) {
      pairs += mb.pairs.length
      for (const p of mb.pairs) used.add(p)
    }
  }
  const unusedPairs: number[] = []
  for (let i = 0; i < input.numPairs; i++) if (!used.has(i)) unusedPairs.push(i)
  return { ...counts, steps: plan.length, microBatches, pairs, plan, unusedPairs }
}
