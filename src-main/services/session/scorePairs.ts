// Sequence log-probs of chosen and rejected answers, tokenized and masked as TRL 0.9 does
// (docs/reference/dpo-data.md#labels, docs/reference/dpo-loss.md#sequence-log-probs): each pair is one right-padded
// [chosen, rejected] batch, as DPOTrainer's concatenated_forward sees it. With perToken, each answer's tokens come too:
// id, the text it adds, and its log-prob (docs/insights.md).
import type { NativeCancelToken } from '../../addon/addonTypes'
import type { PreferencePair } from '../data/preferenceFile'
import { StudioError } from '../errors'
import { DPO_DEFAULTS, dpoTokenize } from '../tokenizer/dpoTokenize'
import { scoredTokenIds, tokenPieces } from '../insights/tokenPieces'
import { modelContext, trainingLengths } from './contextLimits'
import type { ModelSession } from './modelSession'
import { fromEngineError } from './modelSession'
import { promptText, type PromptStyle } from './promptText'

export interface PairLogps {
  chosen_logp: number
  rejected_logp: number
  chosen_tokens: number
  rejected_tokens: number
  /** --per-token: each scored token in order (their in-order sum is the *_logp above, bit for bit). */
  chosen_token_ids?: number[]
  chosen_token_text?: string[]
  chosen_token_logps?: number[]
  rejected_token_ids?: number[]
  rejected_token_text?: string[]
  rejected_token_logps?: number[]
}

export interface ScoreRequest extends PromptStyle {
  pairs: PreferencePair[]
  onPair?: (done: number) => void
  cancel?: NativeCancelToken
  /** Also return each answer token's id, text and log-prob. */
  perToken?: boolean
}

export async function scorePairs(session: ModelSession, req: ScoreRequest): Promise<PairLogps[]> {
  const tok = session.tokenizer
  const padId = tok.padId ?? tok.eosId
  if (padId === null)
    throw new StudioError('E_BAD_MODEL', `the tokenizer in ${session.dir} defines neither a pad nor an EOS token`)
  const out: PairLogps[] = []
  // TRL's default lengths, never past the model's context (contextLimits.ts).
  const lengths = trainingLengths(DPO_DEFAULTS, modelContext(session.info.config.context))
  for (const pair of req.pairs) {
    const t = dpoTokenize(tok, promptText(tok, pair.prompt, req), pair.chosen, pair.rejected, lengths)
    let res
    try {
      res = await session.native.logps(
        [
          { ids: t.chosen.ids, labels: t.chosen.labels },
          { ids: t.rejected.ids, labels: t.rejected.labels },
        ],
        padId,
        req.cancel,
      )
    } catch (e) {
      throw fromEngineError(e)
    }
    const row: PairLogps = {
      chosen_logp: res[0]!.logp,
      rejected_logp: res[1]!.logp,
      chosen_tokens: res[0]!.tokens,
      rejected_tokens: res[1]!.tokens,
    }
    if (req.perToken) {
      const chosenIds = scoredTokenIds(t.chosen)
      const rejectedIds = scoredTokenIds(t.rejected)
      Object.assign(row, {
        chosen_token_ids: chosenIds,
        chosen_token_text: tokenPieces(tok, chosenIds),
        chosen_token_logps: Array.from(res[0]!.tokenLogps),
        rejected_token_ids: rejectedIds,
        rejected_token_text: tokenPieces(tok, rejectedIds),
        rejected_token_logps: Array.from(res[1]!.tokenLogps),
      })
    }
    out.push(row)
    req.onPair?.(out.length)
  }
  return out
}
