// `dpo-studio run`: the whole notebook (docs/architecture.md#command-line): original answers to the test prompts,
// training, trained answers, and RUN_DIR/comparison.json with its metadata. Ctrl-C stops cleanly and exits 130. With no
// --model / --dataset it runs the embedded demo (issue: the app and `run` use the demo model and the sample dataset
// when the user has chosen nothing else), with the demo preset for flags the user did not give.
import {
  DEMO_MODEL_DIR,
  DEMO_NOTE,
  DEMO_PRESET,
  SAMPLE_DATASET_DIR,
  SAMPLE_TEST_PROMPTS,
  isDemoModel,
} from '../../services/demo'
import { StudioError } from '../../services/errors'
import { RUN_PARAM_FLAGS, TRAIN_PARAM_FLAGS, runTrainCommand, type TrainCommandFlags } from './trainFlags'

export type RunFlags = {
  model?: string
  dataset?: string
  testPrompts?: string
  out?: string
  resume?: string
  [flag: string]: unknown
}

// Demo preset keys -> the commander attribute of their flag.
const PRESET_FLAGS: Record<string, string> = {
  dataSize: 'dataSize',
  epochs: 'epochs',
  learningRate: 'lr',
  maxNewTokens: 'maxNewTokens',
}

export async function runRun(flags: RunFlags): Promise<void> {
  // A resumed run takes everything from its config.json (the demo defaults were resolved when it started).
  if (flags.resume !== undefined) return runTrainCommand(flags, [...TRAIN_PARAM_FLAGS, ...RUN_PARAM_FLAGS], 'run')
  await runTrainCommand(withDemoDefaults(flags), [...TRAIN_PARAM_FLAGS, ...RUN_PARAM_FLAGS], 'run')
}

/**
 * The flags of a new `run` (or `sweep`) with the demo filled in: the demo model, the sample dataset and its test
 * prompts when none are given, and the demo preset for the flags the user left out when the model is the demo's.
 */
export function withDemoDefaults(flags: RunFlags): TrainCommandFlags {
  const model = flags.model ?? DEMO_MODEL_DIR
  const dataset = flags.dataset ?? SAMPLE_DATASET_DIR
  const testPrompts = flags.testPrompts ?? (flags.dataset === undefined ? SAMPLE_TEST_PROMPTS : undefined)
  if (testPrompts === undefined)
    throw new StudioError(
      'E_BAD_ARGS',
      '--test-prompts is required with your own --dataset (a test_prompt.json or JSONL of {id?, prompt})',
    )
  const resolved: TrainCommandFlags = { ...flags, model, dataset, testPrompts }
  if (isDemoModel(model)) {
    process.stderr.write(`${DEMO_NOTE}\n`)
    for (const [key, value] of Object.entries(DEMO_PRESET)) {
      const attr = PRESET_FLAGS[key]!
      if (resolved[attr] === undefined) resolved[attr] = String(value)
    }
  }
  return resolved
}
