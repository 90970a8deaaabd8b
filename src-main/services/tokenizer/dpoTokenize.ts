// TRL 0.9.x DPO tokenization (docs/reference/dpo-data.md#tokenizing-a-row: DPOTrainer.tokenize_row +
// build_tokenized_answer, trl v0.9.6 L716-937) and the collator's right padding of a chosen/rejected pair into one
// [2, L] batch (docs/reference/dpo-data.md#collation-and-padding).
import { StudioError } from '../errors'
import type { TextTokenizer } from './textTokenizer'

/** What tokenization needs from a tokenizer. */
export type DpoTokenizer = Pick<TextTokenizer, 'encode' | 'bosId' | 'eosId'>

export interface DpoTokenizeOptions {
  /** TRL max_length (default 512, the value DPOTrainer.__init__ falls back to). */
  maxLength?: number | undefined
  /** TRL max_prompt_length (default 128). */
  maxPromptLength?: number | undefined
  /** TRL truncation_mode (default 'keep_end'). */
  truncationMode?: 'keep_end' | 'keep_start' | undefined
  /** TRL label_pad_token_id (default -100). */
  labelPadTokenId?: number | undefined
}

/** One side of a pair: prompt part + answer part. `labels` = ids with the prompt part set to -100. */
export interface DpoSide {
  ids: number[]
  labels: number[]
  /** Length of the prompt part (the -100 run at the start of labels). */
  promptLength: number
}

export interface DpoTokenizedPair {
  chosen: DpoSide
  rejected: DpoSide
  /** TRL's prompt_input_ids: the prompt trimmed to the shorter of the two sides' prompt parts, BOS, truncation. */
  promptIds: number[]
  promptLength: number
  /** True when max_length cut the prompt or an answer (step 6). */
  truncated: boolean
}

/**
 * A padded pair, the forward batch of docs/reference/dpo-data.md#collation-and-padding: row 0 = chosen, row 1 =
 * rejected.
 */
export interface DpoBatch {
  inputIds: [number[], number[]] // (2, L)
  attentionMask: [number[], number[]] // (2, L)
  labels: [number[], number[]] // (2, L)
  length: number // L = max(Lc, Lr)
}

export const DPO_DEFAULTS = {
  maxLength: 512,
  maxPromptLength: 128,
  truncationMode: 'keep_end',
  labelPadTokenId: -100,
} as const

interface AnswerTokens {
  prompt: number[]
  answer: number[]
}

/**
 * trl 0.9 build_tokenized_answer: tokenize prompt+answer jointly so the ids are what the model sees, then split.
 * Sentencepiece can merge the prompt's last token with the answer's first characters (a trailing "▁" followed by
 * a word becomes "▁word"); then the prompt ids are not a prefix of the joint ids, and the split point moves back
 * one token so the merged token belongs to the answer (and is labelled). trl 0.10/0.11 drop it instead
 * (docs/reference/dpo-data.md#the-merge-token-bug).
 */
function buildTokenizedAnswer(
  tok: DpoTokenizer,
  prompt: string,
  answer: string,
  promptIds: readonly number[],
): AnswerTokens {
  const full = tok.encode(prompt + answer, { addSpecialTokens: false })
  if (full.length < promptIds.length) {
    // trl: "Prompt input ids and answer input ids should have the same length."
    throw new StudioError('E_BAD_INPUT', 'tokenizing prompt + answer gave fewer tokens than the prompt alone')
  }
  let start = promptIds.length
  for (let i = 0; i < promptIds.length; i++) {
    if (promptIds[i] !== full[i]) {
      start -= 1
      break
    }
  }
  return { prompt: full.slice(0, start), answer: full.slice(start) }
}

/**
 * trl 0.9 tokenize_row (docs/reference/dpo-data.md#tokenizing-a-row) for one (prompt, chosen, rejected) row whose
 * prompt is already templated text. Differences from TRL, both for tokenizers TRL would mishandle: no BOS is prepended
 * when the tokenizer has none (TRL would insert None), and a tokenizer without EOS is an error.
 */
export function dpoTokenize(
  tok: DpoTokenizer,
  prompt: string,
  chosen: string,
  rejected: string,
  options: DpoTokenizeOptions = {},
): DpoTokenizedPair {
  const maxLength = options.maxLength ?? DPO_DEFAULTS.maxLength
  const maxPromptLength = options.maxPromptLength ?? DPO_DEFAULTS.maxPromptLength
  const truncationMode = options.truncationMode ?? DPO_DEFAULTS.truncationMode
  const labelPad = options.labelPadTokenId ?? DPO_DEFAULTS.labelPadTokenId
  if (!Number.isInteger(maxLength) || maxLength < 1) throw badOption('maxLength', maxLength)
  // 1 <= maxPromptLength <= maxLength keeps TRL's Python slices ([-k:], [:maxLength - k]) free of their 0 and
  // negative-index meanings, which no sane configuration relies on.
  if (!Number.isInteger(maxPromptLength) || maxPromptLength < 1 || maxPromptLength > maxLength) {
    throw badOption('maxPromptLength', maxPromptLength)
  }
  if (truncationMode !== 'keep_end' && truncationMode !== 'keep_start')
    throw badOption('truncationMode', truncationMode)
  if (tok.eosId === null)
    throw new StudioError('E_BAD_MODEL', 'the tokenizer has no EOS token; DPO answers must end with one')
  const eos = tok.eosId
  const bos = tok.bosId

  // Step 1-2: prompt alone, then each answer jointly with the prompt.
  const promptOnly = tok.encode(prompt, { addSpecialTokens: false })
  const c = buildTokenizedAnswer(tok, prompt, chosen, promptOnly)
  const r = buildTokenizedAnswer(tok, prompt, rejected, promptOnly)

  // Step 3: the generation prompt is trimmed to the shorter side; the sides may differ only in their last token.
  let promptIds = promptOnly.slice(0, Math.min(c.prompt.length, r.prompt.length))
  let diff = 0
  for (let i = 0; i < Math.min(c.prompt.length, r.prompt.length); i++) if (c.prompt[i] !== r.prompt[i]) diff++
  if (diff > 1 || Math.abs(c.prompt.length - r.prompt.length) > 1) {
    throw new StudioError(
      'E_BAD_INPUT',
      'chosen and rejected prompt ids differ by more than the last token (tokenizer merge); check the prompt text',
    )
  }

  // Step 4: BOS at the head of each prompt unless already there (Breeze's template writes "<s>" itself).
  if (bos !== null) {
    const withBos = (ids: number[]) => (ids.length === 0 || ids[0] !== bos ? [bos, ...ids] : ids)
    promptIds = withBos(promptIds)
    c.prompt = withBos(c.prompt)
    r.prompt = withBos(r.prompt)
  }

  // Step 5: EOS at the end of each answer unless already there.
  for (const side of [c, r])
    if (side.answer.length === 0 || side.answer[side.answer.length - 1] !== eos) side.answer.push(eos)

  // Step 6: truncation. `longer` is computed once, before any cut, as in TRL.
  const longer = Math.max(c.answer.length, r.answer.length)
  const truncated = Math.max(c.prompt.length, r.prompt.length) + longer > maxLength
  const cutPrompt = (ids: number[]) => {
    if (ids.length + longer <= maxLength) return ids
    return truncationMode === 'keep_start' ? ids.slice(0, maxPromptLength) : ids.slice(-maxPromptLength)
  }
  c.prompt = cutPrompt(c.prompt)
  r.prompt = cutPrompt(r.prompt)
  promptIds = cutPrompt(promptIds)
  for (const side of [c, r]) {
    if (side.prompt.length + longer > maxLength) side.answer = side.answer.slice(0, maxLength - maxPromptLength)
  }

  // Step 7: sequences and labels.
  const makeSide = (s: AnswerTokens): DpoSide => ({
    ids: [...s.prompt, ...s.answer],
    labels: [...s.prompt.map(() => labelPad), ...s.answer],
    promptLength: s.prompt.length,
  })
  return { chosen: makeSide(c), rejected: makeSide(r), promptIds, promptLength: promptIds.length, truncated }
}

/**
 * Right-pads chosen and rejected to the longer of the two (docs/reference/dpo-data.md#collation-and-padding,
 * concatenated_inputs): ids with padId, attention mask 0, labels labelPadTokenId. Positions stay 0..L-1, so padding
 * changes no real token (docs/reference/model.md#positions-and-padding).
 */
export function padPair(
  pair: Pick<DpoTokenizedPair, 'chosen' | 'rejected'>,
  padId: number,
  labelPadTokenId: number = DPO_DEFAULTS.labelPadTokenId,
): DpoBatch {
  const length = Math.max(pair.chosen.ids.length, pair.rejected.ids.length)
  const pad = (xs: readonly number[], v: number) => [...xs, ...new Array<number>(length - xs.length).fill(v)]
  const side = (s: DpoSide) => ({
    ids: pad(s.ids, padId),
    mask: pad(
      s.ids.map(() => 1),
      0,
    ),
    labels: pad(s.labels, labelPadTokenId),
  })
  const c = side(pair.chosen)
  const r = side(pair.rejected)
  return { inputIds: [c.ids, r.ids], attentionMask: [c.mask, r.mask], labels: [c.labels, r.labels], length }
}

function badOption(name: string, value: unknown): StudioError {
  return new StudioError('E_BAD_INPUT', `DPO tokenization option ${name} is invalid: ${JSON.stringify(value)}`, {
    details: { field: name },
  })
}
