// Shared checks on the pair inspector's files (docs/insights.md): reading JSONL, and "the per-token values add up,
// in order, to the stored sums bit for bit".
import { readFileSync } from 'node:fs'
import { expect } from 'vitest'
import type { PairInsightRow, PairTokensRow } from '../../src-shared/insights/insightTypes'

export const readJsonl = <T>(file: string): T[] =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as T)

/** In-order sum, as the engine adds a sequence's token log-probs. */
export const sumInOrder = (xs: ReadonlyArray<number | null>): number => xs.reduce<number>((a, b) => a + b!, 0)

/** Both answers' reference and trained per-token values sum to the pair's four stored log-probs exactly. */
export function expectTokenSums(row: PairInsightRow, tokens: PairTokensRow): void {
  expect(sumInOrder(tokens.chosen.ref)).toBe(row.chosen_logp_ref)
  expect(sumInOrder(tokens.chosen.trained)).toBe(row.chosen_logp_trained)
  expect(sumInOrder(tokens.rejected.ref)).toBe(row.rejected_logp_ref)
  expect(sumInOrder(tokens.rejected.trained)).toBe(row.rejected_logp_trained)
}
