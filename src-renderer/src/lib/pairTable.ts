// The pair inspector's table logic (docs/insights.md), pure so it is tested on its own: what each filter keeps, how
// rows sort (nulls last), a pair's ranking outcome in words, and the counts above the table.
import type { PairInsightRow } from '@shared/api/contract'

export const PAIR_FILTERS = {
  all: 'All pairs',
  flipped: 'Flipped to right',
  'still-wrong': 'Still wrong',
  'got-worse': 'Flipped to wrong',
  'already-right': 'Right before training',
  'never-seen': 'Never seen in training',
  'no-move': 'Barely moved',
} as const
export type PairFilter = keyof typeof PAIR_FILTERS

export const PAIR_SORT_KEYS = ['index', 'margin', 'logratio_ref', 'logratio_trained', 'seen', 'marginB'] as const
export type PairSortKey = (typeof PAIR_SORT_KEYS)[number]

/** A table row: run A's pair and, when comparing, run B's pair at the same index. */
export interface PairTableRow {
  a: PairInsightRow
  b: PairInsightRow | null
}

/** |margin| below this counts as "barely moved" (implicit-reward units: beta × log-ratio). */
export const NO_MOVE_MARGIN = 1e-3

export type PairOutcome = 'flipped' | 'still-wrong' | 'got-worse' | 'stayed-right'

export function pairOutcome(p: Pick<PairInsightRow, 'correct_before' | 'correct_after'>): PairOutcome {
  if (p.correct_after) return p.correct_before ? 'stayed-right' : 'flipped'
  return p.correct_before ? 'got-worse' : 'still-wrong'
}

export const OUTCOME_LABEL: Record<PairOutcome, string> = {
  flipped: 'flipped to right',
  'still-wrong': 'still wrong',
  'got-worse': 'flipped to wrong',
  'stayed-right': 'right before and after',
}

export function keepPair(p: PairInsightRow, filter: PairFilter): boolean {
  switch (filter) {
    case 'flipped':
      return pairOutcome(p) === 'flipped'
    case 'still-wrong':
      return !p.correct_after
    case 'got-worse':
      return pairOutcome(p) === 'got-worse'
    case 'already-right':
      return p.correct_before
    case 'never-seen':
      return p.seen === 0
    case 'no-move':
      return p.margin === null || Math.abs(p.margin) < NO_MOVE_MARGIN
    default:
      return true
  }
}

/** Text of a prompt (a message list shows its contents). */
export function promptText(prompt: PairInsightRow['prompt']): string {
  return typeof prompt === 'string' ? prompt : prompt.map((m) => m.content).join('\n')
}

function matches(p: PairInsightRow, query: string): boolean {
  if (!query) return true
  const q = query.toLowerCase()
  return [promptText(p.prompt), p.chosen, p.rejected, String(p.id)].some((t) => t.toLowerCase().includes(q))
}

function sortValue(r: PairTableRow, key: PairSortKey): number | null {
  if (key === 'marginB') return r.b?.margin ?? null
  return r.a[key]
}

/** Filtered by run A's pair, searched, sorted; rows without a value for the key go last either way. */
export function pairTableRows(
  a: readonly PairInsightRow[],
  b: readonly PairInsightRow[] | null,
  opts: { filter: PairFilter; query: string; sortKey: PairSortKey; sortDir: 'asc' | 'desc' },
): PairTableRow[] {
  const rows = a
    .filter((p) => keepPair(p, opts.filter) && matches(p, opts.query.trim()))
    .map((p) => ({ a: p, b: b?.[p.index] ?? null }))
  const dir = opts.sortDir === 'asc' ? 1 : -1
  return rows.sort((x, y) => {
    const vx = sortValue(x, opts.sortKey)
    const vy = sortValue(y, opts.sortKey)
    if (vx === null || vy === null) return vx === vy ? x.a.index - y.a.index : vx === null ? 1 : -1
    return vx === vy ? x.a.index - y.a.index : (vx - vy) * dir
  })
}

export interface PairSummary {
  pairs: number
  rightBefore: number
  rightAfter: number
  flipped: number
  gotWorse: number
  stillWrong: number
  neverSeen: number
  meanMargin: number | null
}

export function pairSummary(pairs: readonly PairInsightRow[]): PairSummary {
  const margins = pairs.map((p) => p.margin).filter((m): m is number => m !== null)
  return {
    pairs: pairs.length,
    rightBefore: pairs.filter((p) => p.correct_before).length,
    rightAfter: pairs.filter((p) => p.correct_after).length,
    flipped: pairs.filter((p) => pairOutcome(p) === 'flipped').length,
    gotWorse: pairs.filter((p) => pairOutcome(p) === 'got-worse').length,
    stillWrong: pairs.filter((p) => !p.correct_after).length,
    neverSeen: pairs.filter((p) => p.seen === 0).length,
    meanMargin: margins.length ? margins.reduce((x, y) => x + y, 0) / margins.length : null,
  }
}
