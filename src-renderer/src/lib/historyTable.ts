// The run history's table logic (issue 12 item 6), pure so it is tested on its own: each run's parameters that tell
// runs apart, filters on them, and sorting by any of them (missing values last).
import type { RunListItem } from '@shared/api/contract'
import { shortPath } from './format'

/** Columns the table sorts by, with their header text. */
export const HISTORY_SORT = {
  startedAt: 'Started',
  status: 'Status',
  model: 'Model',
  dataset: 'Dataset',
  supportRatio: 'support_ratio',
  epochs: 'epochs',
  beta: 'beta',
  lossType: 'loss',
  finalLoss: 'Final loss',
  finalMargin: 'Margin',
} as const
export type HistorySortKey = keyof typeof HISTORY_SORT
export interface HistorySort {
  key: HistorySortKey
  desc: boolean
}

/** '' means "any". */
export interface HistoryFilter {
  text: string
  status: string
  model: string
  dataset: string
  lossType: string
  supportRatio: string
}
export const NO_FILTER: HistoryFilter = { text: '', status: '', model: '', dataset: '', lossType: '', supportRatio: '' }

/** The run's value of a parameter, when its config.json has it. */
export function runParam(r: RunListItem, key: string): unknown {
  return r.params?.[key] ?? null
}
export const modelName = (r: RunListItem) => shortPath(r.modelDir, 1)
export const datasetName = (r: RunListItem) => shortPath(r.datasetPath, 2)

export function sortValue(r: RunListItem, key: HistorySortKey): string | number | null {
  switch (key) {
    case 'startedAt':
      return r.startedAt
    case 'status':
      return r.status
    case 'model':
      return r.modelDir ? modelName(r) : null
    case 'dataset':
      return r.datasetPath ? datasetName(r) : null
    case 'finalLoss':
      return r.finalLoss
    case 'finalMargin':
      return r.finalMargin
    default: {
      const v = runParam(r, key)
      return typeof v === 'number' || typeof v === 'string' ? v : null
    }
  }
}

function keep(r: RunListItem, f: HistoryFilter): boolean {
  if (f.status && r.status !== f.status) return false
  if (f.model && r.modelDir !== f.model) return false
  if (f.dataset && r.datasetPath !== f.dataset) return false
  if (f.lossType && runParam(r, 'lossType') !== f.lossType) return false
  if (f.supportRatio && String(runParam(r, 'supportRatio')) !== f.supportRatio) return false
  const text = f.text.trim().toLowerCase()
  if (!text) return true
  return [r.runId, r.modelDir, r.datasetPath, r.status, r.error].some((s) => (s ?? '').toLowerCase().includes(text))
}

/** The runs to show: filtered, then sorted by one column (missing values last in either direction). */
export function historyRows(runs: RunListItem[], filter: HistoryFilter, sort: HistorySort): RunListItem[] {
  const rows = runs.filter((r) => keep(r, filter))
  return rows.sort((x, y) => {
    const a = sortValue(x, sort.key)
    const b = sortValue(y, sort.key)
    if (a === null || b === null) return a === b ? 0 : a === null ? 1 : -1
    const c = typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b))
    return sort.desc ? -c : c
  })
}

/** The values each filter offers: those the runs have. */
export function filterOptions(runs: RunListItem[]) {
  const uniq = <T>(xs: T[]) =>
    [...new Set(xs)].filter((x) => x !== null && x !== undefined && x !== '') as Array<NonNullable<T>>
  return {
    status: uniq(runs.map((r) => r.status)).sort(),
    model: uniq(runs.map((r) => r.modelDir)).sort(),
    dataset: uniq(runs.map((r) => r.datasetPath)).sort(),
    lossType: uniq(runs.map((r) => runParam(r, 'lossType')))
      .map(String)
      .sort(),
    supportRatio: uniq(runs.map((r) => runParam(r, 'supportRatio')))
      .map(Number)
      .sort((a, b) => a - b)
      .map(String),
  }
}
