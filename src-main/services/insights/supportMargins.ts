// A sweep run's stance numbers (docs/insights.md): for every labelled row of an HW6 dataset, the trained model's
// preference for the support answer over the oppose answer relative to the reference, as TRL's margin with support
// in the chosen place; and, for test answers, the side of the nearest exemplar (src-shared/data/stance.ts).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { PreferenceRow } from '../data/preferenceFile'
import { classifyStance, type StanceRow } from '../../../src-shared/data/stance'
import { withContextLengths } from '../session/contextLimits'
import type { ModelSession } from '../session/modelSession'
import type { TrainParams } from '../../../src-shared/params/trainParams'
import { RefLogpsCache, pairKey, swappedPairKey, type RefLogps } from '../training/refCache'
import { tokenizeTrainingPair } from '../training/tokenizePair'
import { pairRewards, stored } from './implicitReward'
import {
  PAIRS_FILE,
  type PairInsightRow,
  type StanceCount,
  type StoredLogp,
} from '../../../src-shared/insights/insightTypes'
import { scorePairsBatched } from './scoreBatched'

/** Parses a JSONL file written by this project (every line one JSON value). */
export function readJsonl<T>(file: string): T[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T)
}

/** A row's margin toward support from its training pair: the pair's margin, negated when the pair prefers oppose. */
export function supportMarginOfPair(p: Pick<PairInsightRow, 'position' | 'margin'>): StoredLogp {
  if (p.margin === null || p.position === null) return null
  return p.position === 'support' ? p.margin : -p.margin
}

/**
 * Margins toward support of every labelled row, in file order. Rows that were training pairs come from the run's
 * pairs.jsonl; the others are scored now with the attached (trained) adapter and, where the cache lacks them, by the
 * reference model (adapter disabled), which the cache then keeps.
 */
export async function supportMargins(
  session: Pick<ModelSession, 'native' | 'tokenizer' | 'info' | 'dir'>,
  runDir: string,
  rows: readonly PreferenceRow[],
  params: TrainParams,
  cache: RefLogpsCache,
): Promise<StoredLogp[]> {
  const pairs = readJsonl<PairInsightRow>(join(runDir, PAIRS_FILE))
  const out: StoredLogp[] = rows.map((_, i) => (i < pairs.length ? supportMarginOfPair(pairs[i]!) : null))
  const rest = rows.map((_, i) => i).filter((i) => i >= pairs.length)
  if (rest.length === 0) return out
  const tok = session.tokenizer
  const padId = tok.padId ?? tok.eosId ?? 0
  // Tokenized as the run's training tokenized its pairs (max_length within the context): the same cache keys.
  const lengths = withContextLengths(params, session.info.config.context)
  const seqs = rest.map((i) => {
    const r = rows[i]!
    const t = tokenizeTrainingPair(
      tok,
      { id: r.id, prompt: r.prompt, chosen: r.support!, rejected: r.oppose!, position: 'support' },
      lengths,
    )
    const s = {
      chosen: { ids: t.chosen.ids, labels: t.chosen.labels },
      rejected: { ids: t.rejected.ids, labels: t.rejected.labels },
    }
    return { ...s, key: pairKey(s), swappedKey: swappedPairKey(s) }
  })
  const refs: Array<RefLogps | undefined> = seqs.map((s) => cache.lookup(s.key, s.swappedKey))
  const missing = refs.map((r, k) => (r ? -1 : k)).filter((k) => k >= 0)
  const computed = await scorePairsBatched(
    session.native,
    missing.map((k) => seqs[k]!),
    padId,
    false,
  )
  missing.forEach((k, j) => {
    const c = computed[j]!
    const r = {
      chosen: c.chosen.logp,
      rejected: c.rejected.logp,
      chosenTokens: c.chosen.tokenLogps,
      rejectedTokens: c.rejected.tokenLogps,
    }
    refs[k] = r
    cache.set(seqs[k]!.key, r)
  })
  const trained = await scorePairsBatched(session.native, seqs, padId, true)
  rest.forEach((i, k) => {
    const t = trained[k]!
    const r = refs[k]!
    const m = pairRewards(params.beta, params.lossType, {
      chosenRef: r.chosen,
      rejectedRef: r.rejected,
      chosenTrained: t.chosen.logp,
      rejectedTrained: t.rejected.logp,
      chosenTokens: t.chosen.tokens,
      rejectedTokens: t.rejected.tokens,
    })
    out[i] = stored(m.margin)
  })
  return out
}

/** Test answers by the side of their nearest exemplar. */
export function stanceCount(answers: readonly string[], exemplars: readonly StanceRow[]): StanceCount {
  const support = answers.filter((a) => classifyStance(a, exemplars) === 'support').length
  const total = answers.length
  return { support, oppose: total - support, total, share_support: total === 0 ? 0 : support / total }
}

/** Mean of the finite margins, or null when there is none. */
export function meanMargin(margins: readonly StoredLogp[]): number | null {
  const xs = margins.filter((m): m is number => m !== null)
  return xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length
}
