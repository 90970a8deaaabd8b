// How the reference pass groups pairs into engine calls on the engine's packed layout
// (docs/performance.md#reference-calls-by-length). Without the logits metric (referencePass.ts asks for none) the
// engine runs each pair as one tight decoder row of chosen + rejected - shared-prefix positions (prompt-prefix
// sharing, docs/performance.md#tight-rows-without-the-logits-metric) and pads every row of a call to the call's
// longest, so a call that mixes short and long pairs computes padding. Pairs are taken shortest first and a call closes before its longest
// row would exceed its shortest by more than maxWaste: a call then spends at most that share on padding. The
// log-probs do not depend on the grouping (every op is row-invariant and padding is masked; the native test
// batched_logps_equal_one_at_a_time), only the calls' cost does.
import { REFERENCE_BATCH_MAX_PAIRS, REFERENCE_BATCH_TOKENS } from './referenceBatches'

/** The two token-id sequences of a pair. */
export interface PairIds {
  chosen: { ids: ArrayLike<number> }
  rejected: { ids: ArrayLike<number> }
}

/** Padding a call may carry, as a share of its shortest row (10%). */
export const REFERENCE_MAX_PADDING = 0.1

/** Leading ids the two answers share: the positions the engine computes once for both. */
export function sharedPrefixLength(a: ArrayLike<number>, b: ArrayLike<number>): number {
  // Each answer keeps at least one position of its own (the engine's layout, model/shared_prefix.cpp).
  const limit = Math.min(a.length, b.length) - 1
  let n = 0
  while (n < limit && a[n] === b[n]) n++
  return n
}

/** Decoder positions the engine spends on a pair in a tight row: both sequences, the shared prefix once. */
export function packedRows(pair: PairIds): number {
  const { chosen, rejected } = pair
  return chosen.ids.length + rejected.ids.length - sharedPrefixLength(chosen.ids, rejected.ids)
}

/**
 * Splits pair indices into engine calls: sorted by packed rows (ties by index), a call holds pairs while
 * pairs x longest row stays within maxTokens (a longer pair gets a call of its own), it has at most
 * REFERENCE_BATCH_MAX_PAIRS pairs, and its longest row is at most (1 + maxPadding) x its shortest.
 */
export function referenceGroups(
  pairs: readonly number[],
  rows: (i: number) => number,
  maxTokens = REFERENCE_BATCH_TOKENS,
  maxPadding = REFERENCE_MAX_PADDING,
): number[][] {
  const sorted = [...pairs].sort((a, b) => rows(a) - rows(b) || a - b)
  const out: number[][] = []
  let cur: number[] = []
  for (const i of sorted) {
    const r = rows(i)
    const full =
      cur.length >= REFERENCE_BATCH_MAX_PAIRS ||
      (cur.length + 1) * r > maxTokens ||
      r > (1 + maxPadding) * rows(cur[0] ?? i)
    if (cur.length > 0 && full) {
      out.push(cur)
      cur = []
    }
    cur.push(i)
  }
  if (cur.length > 0) out.push(cur)
  return out
}
