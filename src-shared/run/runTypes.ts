// The training service's contract, shared by the CLI, the engine host and the renderer: what a run reports while it
// runs (events) and what it leaves on disk (the run directory of docs/architecture.md#run-directory).
import type { RecordId } from '../data/recordId'
import type { TrainParams } from '../params/trainParams'

/**
 * One line of metrics.jsonl per logging step, with TRL's names (docs/reference/dpo-loss.md#metrics,
 * docs/reference/trainer.md) plus timing.
 */
export interface MetricsRow {
  step: number
  epoch: number
  loss: number
  grad_norm: number
  learning_rate: number
  'rewards/chosen': number
  'rewards/rejected': number
  'rewards/accuracies': number
  'rewards/margins': number
  'logps/chosen': number
  'logps/rejected': number
  'logits/chosen': number
  'logits/rejected': number
  /** Seconds since training started (after reference log-probs). */
  elapsed_s: number
  /** Pairs processed per second over this step. */
  pairs_per_s: number
}

/** What the run is doing now, in order. */
export type RunPhase =
  'load' | 'original' | 'reference' | 'train' | 'trained' | 'save' | 'done' | 'cancelled' | 'failed'

export interface TrainProgress {
  /** What the counts measure: the reference pass (pairs scored, step 0) or training (default). */
  stage?: 'reference' | 'train'
  step: number
  totalSteps: number
  pairsDone: number
  pairsTotal: number
  elapsedS: number
  etaS: number
  pairsPerS: number
  /** The engine's peak backend memory so far (GPU memory on CUDA); absent where no engine reports it. */
  peakMemoryBytes?: number
}

/** A response row as the notebook exports it, plus our id. */
export interface ResponseRow {
  id: RecordId
  prompt: string
  response: string
}

/** Notebook comparison row (docs/architecture.md#comparison-export). */
export interface ComparisonRow {
  id: RecordId
  prompt: string
  response_from_original_model: string
  response_from_trained_model: string
}

export interface RunEvents {
  phase?(phase: RunPhase, detail?: string): void
  metrics?(row: MetricsRow): void
  progress?(p: TrainProgress): void
  /** Streaming generation: new text for prompt `index` of the original or trained model. */
  responseText?(which: 'original' | 'trained', index: number, delta: string): void
  response?(which: 'original' | 'trained', index: number, row: ResponseRow): void
  log?(line: string): void
}

export interface NotebookRunRequest {
  modelDir: string
  /** HW6 directory / labelled_data.json, or TRL JSON/JSONL. */
  datasetPath: string
  /** test_prompt.json layout or JSONL; omitted -> train only. */
  testPromptsPath?: string
  params: TrainParams
  /** The run directory to create/fill. */
  outDir: string
  /** PEFT adapter to start from instead of a fresh one. */
  initAdapter?: string
}

export interface RunSummary {
  outDir: string
  steps: number
  /** Mean of the unrounded step losses (TRL's train_loss). */
  trainLoss: number
  runtimeS: number
  pairsPerS: number
  status: 'completed' | 'cancelled'
  /** Optimizer steps the full run would take. */
  maxSteps?: number
  /** The saved adapter folder; null when no step finished. */
  adapterDir?: string | null
  /** When cancelled: the phase the cancel stopped. */
  cancelledIn?: RunPhase
}
