// `dpo-studio run`: the whole notebook (architecture.md §3): original answers to the test prompts, training,
// trained answers, and RUN_DIR/comparison.json with its metadata. Ctrl-C stops cleanly and exits 130.
import { RUN_PARAM_FLAGS, TRAIN_PARAM_FLAGS, runTrainCommand, type TrainCommandFlags } from './trainFlags'

export type RunFlags = TrainCommandFlags & { testPrompts: string }

export async function runRun(flags: RunFlags): Promise<void> {
  await runTrainCommand(flags, [...TRAIN_PARAM_FLAGS, ...RUN_PARAM_FLAGS])
}
