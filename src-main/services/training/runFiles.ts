// The training outputs of a run directory (docs/architecture.md#run-directory): their names, how a new or resumed
// training clears them, and the append-only step logs.
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { appendFileChecked, writeFileAtomic } from '../fsAtomic'
import { removeCheckpoint } from './checkpoint'
import { PAIRS_FILE, PAIRS_TOKENS_FILE } from '../../../src-shared/insights/insightTypes'
import { truncateStepLog } from './stepLog'

export const METRICS_FILE = 'metrics.jsonl'
export const STEPS_FILE = 'steps.jsonl'
export const SUMMARY_FILE = 'train_summary.json'
export const ADAPTER_DIR = 'adapter'
/** Beside the PEFT files in adapter/: how far training got (PEFT ignores unknown files, not unknown config keys). */
export const TRAINING_STATE_FILE = 'training_state.json'

/**
 * Before training writes anything. A resume (docs/resume.md) cuts the step logs back to the checkpoint's step
 * (`resumeStep`; 0 without a checkpoint) and drops the stopped attempt's other outputs, since those steps are redone
 * and logged again. A fresh training removes the previous run's outputs first, so nothing in the folder can be
 * mistaken for this run's (an older adapter next to new metrics, say), and starts empty logs.
 */
export function clearTrainingOutputs(outDir: string, resumeStep: number | null): void {
  if (resumeStep !== null) {
    for (const f of [METRICS_FILE, STEPS_FILE]) truncateStepLog(join(outDir, f), resumeStep)
    for (const f of [SUMMARY_FILE, ADAPTER_DIR, PAIRS_FILE, PAIRS_TOKENS_FILE])
      rmSync(join(outDir, f), { recursive: true, force: true })
    return
  }
  for (const f of [METRICS_FILE, STEPS_FILE, SUMMARY_FILE, ADAPTER_DIR, PAIRS_FILE, PAIRS_TOKENS_FILE])
    rmSync(join(outDir, f), { recursive: true, force: true })
  removeCheckpoint(outDir)
  writeFileAtomic(join(outDir, METRICS_FILE), '')
  writeFileAtomic(join(outDir, STEPS_FILE), '')
}

/** One complete JSON line per write, checked and flushed to disk: a crash or a full disk leaves whole lines only. */
export function appendLine(file: string, value: unknown): void {
  appendFileChecked(file, JSON.stringify(value) + '\n')
}

// The notebook's outputs around the training (notebookRun.ts).
export const CONFIG_FILE = 'config.json'
export const RESPONSES_ORIGINAL_FILE = 'responses_original.json'
export const RESPONSES_TRAINED_FILE = 'responses_trained.json'
export const COMPARISON_FILE = 'comparison.json'
export const COMPARISON_META_FILE = 'comparison_meta.json'
