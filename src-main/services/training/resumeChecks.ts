// What must not change between a run and its resume (docs/resume.md): the parameters (all but checkpointEvery, which
// changes no number), and, for a checkpoint, the tokenized data and the step plan it was written in.
import { StudioError } from '../errors'
import type { TrainParams } from '../../../src-shared/params/trainParams'
import type { Checkpoint, CheckpointState } from './checkpoint'
import type { PlannedStep } from './schedule'

/** Parameters a resumed run may change: they decide when files are written, not what is computed. */
export const RESUME_FREE_PARAMS: ReadonlySet<keyof TrainParams> = new Set<keyof TrainParams>(['checkpointEvery'])

/**
 * "learningRate: 0.001 here, 0.0002 in the run" (with the labels given), one per parameter of `given` that differs
 * from `run`.
 */
export function paramDifferences(
  run: TrainParams,
  given: Partial<TrainParams>,
  runLabel = 'in the run',
  givenLabel = 'here',
): string[] {
  const out: string[] = []
  for (const key of Object.keys(given) as Array<keyof TrainParams>) {
    if (RESUME_FREE_PARAMS.has(key) || given[key] === undefined) continue
    const a = JSON.stringify(given[key])
    const b = JSON.stringify(run[key])
    if (a !== b) out.push(`${key}: ${a} ${givenLabel}, ${b ?? 'unset'} ${runLabel}`)
  }
  return out
}

/**
 * The checkpoint belongs to this run: same parameters, same tokenized pairs (model tokenizer, template, system
 * message, data and truncation all end up in them), same number of steps. E_RESUME_MISMATCH names what differs.
 */
export function checkCheckpointFits(
  state: CheckpointState,
  run: { params: TrainParams; dataFingerprint: string; maxSteps: number },
  file: string,
): void {
  const refuse = (what: string) =>
    new StudioError('E_RESUME_MISMATCH', `cannot resume from ${file}: ${what}`, { details: { file } })
  const diffs = paramDifferences(state.params, run.params, 'in the checkpoint', 'for this run')
  if (diffs.length > 0) throw refuse(`it was written with other parameters (${diffs.join('; ')})`)
  if (state.data_fingerprint !== run.dataFingerprint) {
    throw refuse(
      'the training pairs differ from the ones it was trained on (the dataset, the tokenizer or its chat template changed)',
    )
  }
  if (state.max_steps !== run.maxSteps) throw refuse(`it plans ${state.max_steps} steps, this run ${run.maxSteps}`)
  if (state.global_step > run.maxSteps)
    throw refuse(`it is at step ${state.global_step}, past the run's ${run.maxSteps} steps`)
}

/** The schedule replayed to the checkpoint's step ends where the checkpoint says the data order stood. */
export function checkDataPosition(planned: PlannedStep, c: Checkpoint): void {
  const mb = planned.microBatches[planned.microBatches.length - 1]!
  const at = c.state.data_position
  if (mb.epoch !== at.epoch || mb.index !== at.micro_batch) {
    throw new StudioError(
      'E_RESUME_MISMATCH',
      `the checkpoint's step ${planned.step} ended at epoch ${at.epoch}, micro-batch ${at.micro_batch}, but this run's plan ends it at epoch ${mb.epoch}, micro-batch ${mb.index}`,
    )
  }
}
