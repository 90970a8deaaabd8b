// `dpo-studio train`: DPO training of a LoRA adapter into a run directory (docs/architecture.md#run-directory):
// config.json, metrics.jsonl, steps.jsonl, adapter/, train_summary.json. Ctrl-C stops cleanly and exits 130.
import { TRAIN_PARAM_FLAGS, runTrainCommand, type TrainCommandFlags } from './trainFlags'

export type TrainFlags = TrainCommandFlags

export async function runTrain(flags: TrainFlags): Promise<void> {
  await runTrainCommand(flags, TRAIN_PARAM_FLAGS)
}
