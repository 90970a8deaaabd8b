// The token view for test prompts (docs/insights.md): the original and the trained answer to each prompt, tokenized
// as a training pair would be (chat template, system message, TRL tokenization), scored once by the reference model
// (adapter disabled) and once by the trained model; kept as responses_tokens.jsonl so past runs need no engine.
import { join } from 'node:path'
import { withContextLengths } from '../session/contextLimits'
import type { ModelSession } from '../session/modelSession'
import { writeFileAtomic } from '../fsAtomic'
import type { ResponseRow } from '../../../src-shared/run/runTypes'
import { tokenizeTrainingPair, type PairTokenParams } from '../training/tokenizePair'
import { stored } from './implicitReward'
import { ANSWER_TOKENS_FILE, type AnswerTokensRow } from '../../../src-shared/insights/insightTypes'
import { tokenSide, toJsonl } from './pairInsights'
import { scorePairsBatched } from './scoreBatched'

/** Needs the trained adapter attached; writes responses_tokens.jsonl into outDir. */
export async function writeAnswerTokens(
  session: Pick<ModelSession, 'native' | 'tokenizer' | 'info'>,
  outDir: string,
  original: readonly ResponseRow[],
  trained: readonly ResponseRow[],
  params: PairTokenParams,
  padId: number,
): Promise<AnswerTokensRow[]> {
  const tok = session.tokenizer
  const lengths = withContextLengths(params, session.info.config.context)
  const sequences = original.map((o, i) => {
    const t = tokenizeTrainingPair(
      tok,
      { id: o.id, prompt: o.prompt, chosen: o.response, rejected: trained[i]!.response, position: null },
      lengths,
    )
    return {
      chosen: { ids: t.chosen.ids, labels: t.chosen.labels },
      rejected: { ids: t.rejected.ids, labels: t.rejected.labels },
    }
  })
  const ref = await scorePairsBatched(session.native, sequences, padId, false)
  const after = await scorePairsBatched(session.native, sequences, padId, true)
  const rows: AnswerTokensRow[] = original.map((o, i) => {
    const side = (which: 'chosen' | 'rejected', answer: string) => ({
      answer,
      logp_ref: stored(ref[i]![which].logp),
      logp_trained: stored(after[i]![which].logp),
      ...tokenSide(tok, sequences[i]![which], ref[i]![which].tokenLogps, after[i]![which].tokenLogps),
    })
    return {
      index: i,
      id: o.id,
      prompt: o.prompt,
      original: side('chosen', o.response),
      trained: side('rejected', trained[i]!.response),
    }
  })
  writeFileAtomic(join(outDir, ANSWER_TOKENS_FILE), toJsonl(rows))
  return rows
}
