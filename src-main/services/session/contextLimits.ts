// The model's context (max_position_embeddings) as every command applies it (docs/decisions.md "Context limits"):
// new tokens are capped at it, a prompt that fills it is refused, an answer stops where prompt + answer fill it, and
// training caps TRL's max_length at it. The engine enforces the same limits itself (E_TOO_LONG).
import { StudioError } from '../errors'
import type { RecordId } from '../data/promptsFile'

/** max_position_embeddings, or null when the config gives none (then only the engine's own bound applies). */
export function modelContext(maxPosition: number): number | null {
  return Number.isInteger(maxPosition) && maxPosition > 0 ? maxPosition : null
}

/** `what` names the setting in the caller's words: "--max-new-tokens", "max new tokens". */
export function checkMaxNewTokens(maxNewTokens: number, context: number | null, what = 'max new tokens'): void {
  if (context !== null && maxNewTokens > context) {
    throw new StudioError(
      'E_TOO_LONG',
      `${what} ${shown(maxNewTokens)} is more than the model's context (${context} tokens, max_position_embeddings); use at most ${context}`,
      { details: { field: 'maxNewTokens', context, value: maxNewTokens } },
    )
  }
}

/**
 * Every prompt must leave room for an answer (it is refused otherwise, naming it); returns the indices of prompts
 * whose answers the context will cut before maxNewTokens.
 */
export function checkPromptsFit(
  prompts: ReadonlyArray<{ id: RecordId }>,
  ids: ReadonlyArray<ArrayLike<number>>,
  maxNewTokens: number,
  context: number | null,
): number[] {
  if (context === null) return []
  const cut: number[] = []
  ids.forEach((p, i) => {
    if (p.length >= context) {
      throw new StudioError(
        'E_TOO_LONG',
        `prompt ${i + 1} (id ${JSON.stringify(prompts[i]!.id)}) has ${p.length} tokens with the chat template, which leaves no room for ` +
          `an answer in the model's context (${context} tokens); shorten it`,
        { details: { row: i + 1, id: prompts[i]!.id, tokens: p.length, context } },
      )
    }
    if (p.length + maxNewTokens > context) cut.push(i)
  })
  return cut
}

/** What the run log says about answers the context cuts short. */
export function contextCutNote(cut: readonly number[], total: number, context: number): string {
  return `${cut.length} of ${total} prompts leave fewer than the requested new tokens in the model's context (${context} tokens): their answers stop at the context`
}

export interface TrainingLengths {
  maxLength: number
  maxPromptLength: number
  /** Set when the context lowered the configured lengths: what changed, for the log. */
  note: string | null
}

/**
 * TRL's max_length / max_prompt_length, never past the context: max_length is capped at it, and max_prompt_length,
 * if it no longer fits below, becomes half of it (TRL then keeps the prompt's end and cuts the answers).
 */
export function trainingLengths(
  lengths: { maxLength: number; maxPromptLength: number },
  context: number | null,
): TrainingLengths {
  if (context === null || lengths.maxLength <= context) return { ...lengths, note: null }
  const maxLength = context
  const maxPromptLength =
    lengths.maxPromptLength < maxLength ? lengths.maxPromptLength : Math.max(1, Math.floor(maxLength / 2))
  return {
    maxLength,
    maxPromptLength,
    note: `max_length ${lengths.maxLength} is more than the model's context (${context} tokens): training uses max_length ${maxLength}, max_prompt_length ${maxPromptLength}`,
  }
}

/**
 * `params` with TRL's lengths as training used them on a model of this context (trainingLengths): whatever scores a
 * run's pairs or answers afterwards (the pair inspector, the sweep, the token view) must tokenize the same way.
 */
export function withContextLengths<T extends { maxLength: number; maxPromptLength: number }>(
  params: T,
  maxPosition: number,
): T {
  const { maxLength, maxPromptLength } = trainingLengths(params, modelContext(maxPosition))
  return { ...params, maxLength, maxPromptLength }
}

function shown(n: number): string {
  return Number.isSafeInteger(n) ? String(n) : n.toExponential()
}
