// How the reference pass groups pairs into engine calls (docs/performance.md#reference-calls-by-length). Without the
// logits metric (referencePass.ts asks for none) the CPU engine chains a call's pairs into one unpadded decoder row
// (model info `chainedScoring`, docs/performance.md#chained-rows-without-the-logits-metric): there a call only needs
// to stay within the token budget, and the more pairs it holds the more often it reuses their common start (a chat
// template). An engine without chaining (CUDA) pads every sequence of a call to the call's longest, so a call that
// mixes short and long pairs computes padding: pairs are taken shortest first and a call closes before its longest
// row would exceed its shortest by more than maxPadding. The log-probs do not depend on the grouping (every op is
// row-invariant and padding is masked; the native tests batched_logps_equal_one_at_a_time and
// tight_reference_logps_equal_padded_bit_for_bit), only the calls' cost does.
import { REFERENCE_BATCH_MAX_PAIRS, REFERENCE_BATCH_TOKENS } from './referenceBatches'

/** The two token-id sequences of a pair. */
export interface PairIds {
  chosen: { ids: ArrayLike<number> }
  rejected: { ids: ArrayLike<number> }
}

/** Padding a call may carry, as a share of its shortest row (10%), on an engine that pads. */
export const REFERENCE_MAX_PADDING = 0.1

/** The padding bound for an engine: none where it chains a call's pairs without padding. */
export function referenceMaxPadding(chainedScoring: boolean): number {
  return chainedScoring ? Infinity : REFERENCE_MAX_PADDING
}

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
