// How the reference pass groups pairs into engine calls. Reference log-probs do not depend on the batch (every op is
// row-invariant and padding is masked; the native tests check batched == alone bit for bit), so pairs are scored
// many per call: on a GPU one call of ~2k tokens keeps the kernels busy where 50 calls of one pair would mostly
// launch them. The budget bounds the activation memory of one call (~0.6 GB at Breeze-7B shape).

/** Padded tokens per reference call (chosen and rejected rows of every pair, at the batch's longest sequence). */
export const REFERENCE_BATCH_TOKENS = 2048
export const REFERENCE_BATCH_MAX_PAIRS = 64

/**
 * Splits pair indices, in order, into calls whose padded size 2 * pairs * longest stays within the budget (a pair
 * longer than the budget still gets a call of its own). longest(i) = the longer of pair i's two sequences.
 */
export function referenceBatches(
  pairs: readonly number[],
  longest: (i: number) => number,
  maxTokens = REFERENCE_BATCH_TOKENS,
): number[][] {
  const out: number[][] = []
  let cur: number[] = []
  let curMax = 0
  for (const i of pairs) {
    const len = longest(i)
    const max = Math.max(curMax, len)
    if (cur.length > 0 && (2 * (cur.length + 1) * max > maxTokens || cur.length >= REFERENCE_BATCH_MAX_PAIRS)) {
      out.push(cur)
      cur = []
      curMax = 0
    }
    cur.push(i)
    curMax = Math.max(curMax, len)
  }
  if (cur.length > 0) out.push(cur)
  return out
}
