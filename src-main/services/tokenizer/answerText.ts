// Answer text from generated ids (docs/reference/generation.md#answer-text). For [INST]-style templates (Breeze,
// Mistral, Llama-2) this is the notebook's
// `batch_decode(prompt+generated, skip_special_tokens=True)[0].split('[/INST] ')[1]`; otherwise the generated ids
// decoded on their own.
import { pickChatTemplate } from './chatTemplate'
import type { TextTokenizer } from './textTokenizer'

/** The notebook's split marker: "[/INST]" plus one space. */
export const INST_ANSWER_MARKER = '[/INST] '

export type AnswerTokenizer = Pick<TextTokenizer, 'decode' | 'chatTemplateSource'>

export interface AnswerTextOptions {
  /**
   * The marker to split on. undefined: INST_ANSWER_MARKER when the model's chat template contains "[/INST]",
   * else none. null: never split (e.g. prompts passed with --no-template).
   */
  marker?: string | null | undefined
  /** Named template to inspect when chat_template is an array (default 'default'). */
  templateName?: string | undefined
}

/** INST_ANSWER_MARKER when the template writes "[/INST]", else null. */
export function answerMarkerFor(chatTemplate: string | null): string | null {
  return chatTemplate !== null && chatTemplate.includes('[/INST]') ? INST_ANSWER_MARKER : null
}

/**
 * The answer to one prompt.
 * - With a marker: decode prompt + generated ids with skip_special_tokens and return the text between the first
 *   marker and the next one (Python's `split(marker)[1]`), so an answer in which the model writes "[/INST] " again
 *   is cut there, as in the notebook. Leading spaces are kept as decoded (docs/reference/generation.md#answer-text
 *   leaves them to the tokenizer). If the decoded text has no marker (a prompt that was truncated or not templated),
 *   this falls back to the generated ids alone instead of failing like the notebook's IndexError.
 * - Without: decode the generated ids alone, skip_special_tokens, verbatim (the EOS that stopped generation,
 *   being special, disappears).
 */
export function answerText(
  tok: AnswerTokenizer,
  promptIds: readonly number[],
  generatedIds: readonly number[],
  options: AnswerTextOptions = {},
): string {
  const marker =
    options.marker === undefined
      ? answerMarkerFor(pickChatTemplate(tok.chatTemplateSource, options.templateName))
      : options.marker
  if (marker) {
    const parts = tok.decode([...promptIds, ...generatedIds], { skipSpecialTokens: true }).split(marker)
    if (parts.length >= 2) return parts[1]!
  }
  return tok.decode(generatedIds, { skipSpecialTokens: true })
}
