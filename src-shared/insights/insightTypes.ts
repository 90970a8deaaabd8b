// What the pair inspector, the token view and the support_ratio sweep leave in run directories (docs/insights.md):
// file names and line shapes. Pure types and constants, so the renderer can import them too.
import type { ChatMessage } from '../prompts/chatMessage'
import type { RecordId } from '../data/recordId'

/** One line per training pair (docs/insights.md "pairs.jsonl"). */
export const PAIRS_FILE = 'pairs.jsonl'
/** One line per training pair, the same order: per-token log-probs of both answers (docs/insights.md). */
export const PAIRS_TOKENS_FILE = 'pairs_tokens.jsonl'
/** One line per test prompt: per-token log-probs of the original and the trained answer. */
export const ANSWER_TOKENS_FILE = 'responses_tokens.jsonl'
/** A sweep folder's summary (docs/insights.md "sweep.json"). */
export const SWEEP_FILE = 'sweep.json'

/** A log-prob as stored: JSON has no -Infinity, so a zero-probability answer is null. */
export type StoredLogp = number | null

export interface PairInsightRow {
  /** 0-based position in the run's pairs (the order of data_size / support_ratio). */
  index: number
  id: RecordId
  prompt: string | ChatMessage[]
  chosen: string
  rejected: string
  /** HW6 layout: which side the pair prefers; null for TRL data. */
  position: 'support' | 'oppose' | null
  /** Scored answer tokens (EOS included). */
  chosen_tokens: number
  rejected_tokens: number
  /** Answer log-prob sums under the reference model (adapter disabled) and the trained model. */
  chosen_logp_ref: StoredLogp
  rejected_logp_ref: StoredLogp
  chosen_logp_trained: StoredLogp
  rejected_logp_trained: StoredLogp
  /** TRL's implicit rewards: beta × (trained − reference), length-averaged for ipo. */
  reward_chosen: StoredLogp
  reward_rejected: StoredLogp
  /** reward_chosen − reward_rejected: how much more the trained model prefers chosen than the reference did. */
  margin: StoredLogp
  /** chosen − rejected log-prob under each model (the model's own preference). */
  logratio_ref: StoredLogp
  logratio_trained: StoredLogp
  /** The reference / trained model gives the chosen answer the higher log-prob. */
  correct_before: boolean
  correct_after: boolean
  /** Times training used the pair (forward and backward), over all epochs. */
  seen: number
}

/** One answer's tokens: id, text as the tokenizer split it, and log-prob under each model. */
export interface TokenSide {
  ids: number[]
  /** The text each token adds when decoded after the ones before it ('' for a byte that completes nothing yet). */
  text: string[]
  ref: StoredLogp[]
  trained: StoredLogp[]
}

export interface PairTokensRow {
  index: number
  id: RecordId
  chosen: TokenSide
  rejected: TokenSide
}

export interface AnswerTokensRow {
  index: number
  id: RecordId
  prompt: string
  original: TokenSide & { answer: string; logp_ref: StoredLogp; logp_trained: StoredLogp }
  trained: TokenSide & { answer: string; logp_ref: StoredLogp; logp_trained: StoredLogp }
}

/** Test answers per side, by their nearest exemplar (src-shared/data/stance.ts). */
export interface StanceCount {
  support: number
  oppose: number
  total: number
  /** support / total */
  share_support: number
}

export interface SweepRunRow {
  support_ratio: number
  /** The run directory, relative to the sweep folder when inside it. */
  run_dir: string
  status: 'completed' | 'cancelled' | 'failed'
  error?: string
  pairs: number
  support_pairs: number
  steps: number
  train_loss: number | null
  runtime_s: number
  /** Mean over every labelled row of beta × ((trained − ref)(support) − (trained − ref)(oppose)). */
  mean_margin_support: number | null
  /** The rows' margins toward support, in file order (null where a log-prob was −∞). */
  row_margins: StoredLogp[]
  /** The trained model's test answers by nearest side; null without test prompts. */
  stance: StanceCount | null
  /** The same for the original answers (the base model: the same for every ratio). */
  stance_original: StanceCount | null
}

export interface SweepFile {
  version: 1
  status: 'running' | 'completed' | 'cancelled' | 'failed'
  error?: string
  /** The process making the sweep and its host: a sweep whose process is gone is marked failed (sweepDir.ts). */
  pid?: number
  hostname?: string
  created: string
  updated: string
  model_dir: string
  dataset: string
  test_prompts: string | null
  ratios: number[]
  /** The run parameters every run shares (support_ratio aside). */
  params: Record<string, unknown>
  /** Labelled rows the margin is averaged over. */
  rows: number
  runs: SweepRunRow[]
}
