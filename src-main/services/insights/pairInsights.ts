// The pair inspector's data, made once at the end of training (docs/insights.md): every training pair scored by the
// trained model in one pass with the adapter, next to the reference log-probs the run computed (or took from the
// cache) before training, with TRL's implicit rewards, the margin, the ranking before and after and how often
// training saw the pair. Written as pairs.jsonl and, per token, pairs_tokens.jsonl, so past runs need no engine.
import { join } from 'node:path'
import type { NativeCancelToken, SequenceLogp } from '../../addon/addonTypes'
import type { PreferencePair } from '../data/preferenceFile'
import type { ModelSession } from '../session/modelSession'
import { writeFileAtomic } from '../fsAtomic'
import type { TrainParams } from '../../../src-shared/params/trainParams'
import type { RefLogps, ScoredPair } from '../training/refCache'
import { scheduleSteps, type ScheduleInput } from '../training/schedule'
import { pairRewards, stored } from './implicitReward'
import {
  PAIRS_FILE,
  PAIRS_TOKENS_FILE,
  type PairInsightRow,
  type PairTokensRow,
  type TokenSide,
} from '../../../src-shared/insights/insightTypes'
import { scorePairsBatched, type EngineCall } from './scoreBatched'
import { scoredTokenIds, tokenPieces } from './tokenPieces'

export interface PairInsightsInput {
  outDir: string
  pairs: readonly PreferencePair[]
  /** The pairs as training tokenized them, same order. */
  sequences: readonly ScoredPair[]
  /** Reference log-probs by pair index, from the run's reference pass; pairs training never used may be absent. */
  refs: ReadonlyMap<number, RefLogps>
  params: Pick<TrainParams, 'beta' | 'lossType'>
  schedule: ScheduleInput
  padId: number
  cancel?: NativeCancelToken | undefined
  call?: EngineCall
}

/** Scores the pairs with the attached (trained) adapter and writes pairs_tokens.jsonl, then pairs.jsonl. */
export async function writePairInsights(
  session: Pick<ModelSession, 'native' | 'tokenizer'>,
  input: PairInsightsInput,
): Promise<PairInsightRow[]> {
  const { sequences, padId } = input
  const opts = { cancel: input.cancel, ...(input.call ? { call: input.call } : {}) }
  // The reference model scores only what the reference pass did not (pairs no step used).
  const missing = sequences
    .map((_, i) => i)
    .filter((i) => !input.refs.get(i)?.chosenTokens || !input.refs.get(i)?.rejectedTokens)
  const extra = await scorePairsBatched(
    session.native,
    missing.map((i) => sequences[i]!),
    padId,
    false,
    opts,
  )
  const refs = new Map<
    number,
    { chosen: Float32Array; rejected: Float32Array; chosenSum: number; rejectedSum: number }
  >()
  sequences.forEach((_, i) => {
    const r = input.refs.get(i)
    if (r?.chosenTokens && r.rejectedTokens)
      refs.set(i, { chosen: r.chosenTokens, rejected: r.rejectedTokens, chosenSum: r.chosen, rejectedSum: r.rejected })
  })
  missing.forEach((i, k) => refs.set(i, fromScores(extra[k]!.chosen, extra[k]!.rejected)))
  const trained = await scorePairsBatched(session.native, sequences, padId, true, opts)

  const seen = seenCounts(input.schedule)
  const rows: PairInsightRow[] = []
  const tokenRows: PairTokensRow[] = []
  input.pairs.forEach((p, i) => {
    const ref = refs.get(i)!
    const t = trained[i]!
    const logps = {
      chosenRef: ref.chosenSum,
      rejectedRef: ref.rejectedSum,
      chosenTrained: t.chosen.logp,
      rejectedTrained: t.rejected.logp,
      chosenTokens: t.chosen.tokens,
      rejectedTokens: t.rejected.tokens,
    }
    const r = pairRewards(input.params.beta, input.params.lossType, logps)
    rows.push({
      index: i,
      id: p.id,
      prompt: p.prompt,
      chosen: p.chosen,
      rejected: p.rejected,
      position: p.position,
      chosen_tokens: t.chosen.tokens,
      rejected_tokens: t.rejected.tokens,
      chosen_logp_ref: stored(logps.chosenRef),
      rejected_logp_ref: stored(logps.rejectedRef),
      chosen_logp_trained: stored(logps.chosenTrained),
      rejected_logp_trained: stored(logps.rejectedTrained),
      reward_chosen: stored(r.rewardChosen),
      reward_rejected: stored(r.rewardRejected),
      margin: stored(r.margin),
      logratio_ref: stored(logps.chosenRef - logps.rejectedRef),
      logratio_trained: stored(logps.chosenTrained - logps.rejectedTrained),
      correct_before: logps.chosenRef > logps.rejectedRef,
      correct_after: logps.chosenTrained > logps.rejectedTrained,
      seen: seen[i] ?? 0,
    })
    tokenRows.push({
      index: i,
      id: p.id,
      chosen: tokenSide(session.tokenizer, sequences[i]!.chosen, ref.chosen, t.chosen.tokenLogps),
      rejected: tokenSide(session.tokenizer, sequences[i]!.rejected, ref.rejected, t.rejected.tokenLogps),
    })
  })
  // The token file first: a pairs.jsonl on disk means both are complete.
  writeFileAtomic(join(input.outDir, PAIRS_TOKENS_FILE), toJsonl(tokenRows))
  writeFileAtomic(join(input.outDir, PAIRS_FILE), toJsonl(rows))
  return rows
}

function fromScores(c: SequenceLogp, r: SequenceLogp) {
  return { chosen: c.tokenLogps, rejected: r.tokenLogps, chosenSum: c.logp, rejectedSum: r.logp }
}

/** How many times each pair index is in a micro-batch of the schedule (all steps: the run completed). */
export function seenCounts(schedule: ScheduleInput): number[] {
  const n = new Array<number>(schedule.numPairs).fill(0)
  for (const step of scheduleSteps(schedule)) for (const mb of step.microBatches) for (const i of mb.pairs) n[i]!++
  return n
}

/** One answer's tokens with both models' per-token log-probs (the engine's float32 values, exactly). */
export function tokenSide(
  tok: Parameters<typeof tokenPieces>[0],
  seq: ScoredPair['chosen'],
  ref: Float32Array,
  trained: Float32Array,
): TokenSide {
  const ids = scoredTokenIds(seq)
  if (ids.length !== ref.length || ids.length !== trained.length) {
    throw new Error(
      `per-token log-probs cover ${ref.length} / ${trained.length} tokens but the answer has ${ids.length}`,
    )
  }
  return { ids, text: tokenPieces(tok, ids), ref: Array.from(ref, stored), trained: Array.from(trained, stored) }
}

export function toJsonl(rows: readonly unknown[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '')
}
