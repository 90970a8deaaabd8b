// @vitest-environment happy-dom
// The run history (issue 12 items 3, 6, 7): filters and sorts by the parameters that tell runs apart, the comparison
// follows the ticked runs, a run stopped before its trained answers has none in a comparison (never its original
// ones), and a comparison exports with both runs' parameters.
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import type { RunDetail, RunListItem } from '../../../src-shared/api/contract'
import { setApi } from '../../../src-renderer/src/api/client'
import { filterOptions, historyRows, NO_FILTER } from '../../../src-renderer/src/lib/historyTable'
import { useHistoryStore } from '../../../src-renderer/src/stores/history'
import { fakeApi } from './fakeApi'

const flush = () => new Promise((r) => setTimeout(r, 0))

function item(
  runId: string,
  startedAt: string,
  status: RunListItem['status'],
  params: Record<string, unknown> | null,
): RunListItem {
  return {
    runId,
    dir: `/runs/${runId}`,
    status,
    startedAt,
    endedAt: null,
    modelDir: '/m/demo-model',
    datasetPath: params?.supportRatio === 0.5 ? '/d/other' : '/d/zh',
    steps: 4,
    finalLoss: params ? 0.6 - Number(params.supportRatio) / 10 : null,
    finalMargin: null,
    hasComparison: status === 'completed',
    hasAdapter: status === 'completed',
    error: null,
    resumable: status === 'cancelled',
    resumeFromStep: 2,
    params,
    reason: null,
  }
}
const RUNS = [
  item('r1', '2026-01-01T10:00:00Z', 'completed', { supportRatio: 0.1, epochs: 4, beta: 0.1, lossType: 'sigmoid' }),
  item('r2', '2026-01-02T10:00:00Z', 'cancelled', { supportRatio: 0.9, epochs: 2, beta: 0.2, lossType: 'ipo' }),
  item('r3', '2026-01-03T10:00:00Z', 'completed', { supportRatio: 0.5, epochs: 1, beta: 0.1, lossType: 'sigmoid' }),
  item('cli', '2026-01-04T10:00:00Z', 'unknown', null),
]
const prompts = [
  { id: 1, prompt: 'q1' },
  { id: 2, prompt: 'q2' },
]
function detail(r: RunListItem): RunDetail {
  const rows = (tag: string) => prompts.map((p) => ({ ...p, response: `${tag} ${r.runId} ${p.id}` }))
  return {
    ...r,
    config: { params: r.params },
    metrics: [],
    original: rows('original'),
    trained: r.status === 'completed' ? rows('trained') : null,
    comparison: null,
  }
}

beforeEach(() => {
  setApi(
    fakeApi({ runsList: () => RUNS, runOpen: ({ run }: { run: string }) => detail(RUNS.find((r) => r.runId === run)!) })
      .api,
  )
  setActivePinia(createPinia())
})

describe('historyRows', () => {
  it('sorts by a parameter either way, runs without it last', () => {
    const ids = (desc: boolean) => historyRows(RUNS, NO_FILTER, { key: 'supportRatio', desc }).map((r) => r.runId)
    expect(ids(false)).toEqual(['r1', 'r3', 'r2', 'cli'])
    expect(ids(true)).toEqual(['r2', 'r3', 'r1', 'cli'])
    expect(historyRows(RUNS, NO_FILTER, { key: 'startedAt', desc: true })[0]!.runId).toBe('cli')
    expect(historyRows(RUNS, NO_FILTER, { key: 'lossType', desc: false }).map((r) => r.runId)).toEqual([
      'r2',
      'r1',
      'r3',
      'cli',
    ])
  })

  it('filters by status, loss, support_ratio, dataset and text', () => {
    const ids = (f: Partial<typeof NO_FILTER>) =>
      historyRows(RUNS, { ...NO_FILTER, ...f }, { key: 'startedAt', desc: false }).map((r) => r.runId)
    expect(ids({ status: 'cancelled' })).toEqual(['r2'])
    expect(ids({ lossType: 'sigmoid' })).toEqual(['r1', 'r3'])
    expect(ids({ supportRatio: '0.9' })).toEqual(['r2'])
    expect(ids({ dataset: '/d/other' })).toEqual(['r3'])
    expect(ids({ text: 'CLI' })).toEqual(['cli'])
    expect(filterOptions(RUNS)).toMatchObject({
      supportRatio: ['0.1', '0.5', '0.9'],
      lossType: ['ipo', 'sigmoid'],
      status: ['cancelled', 'completed', 'unknown'],
    })
  })
})

describe('history store', () => {
  it('keeps the comparison on the ticked runs: a third tick compares the new pair, an untick closes it', async () => {
    const h = useHistoryStore()
    await h.refresh()
    h.togglePick('r1')
    h.togglePick('r3')
    await h.compare()
    expect([h.compareA?.runId, h.compareB?.runId]).toEqual(['r1', 'r3'])
    h.togglePick('r2') // replaces r1, the earlier pick
    await flush()
    await flush()
    expect(h.picked).toEqual(['r3', 'r2'])
    expect([h.compareA?.runId, h.compareB?.runId]).toEqual(['r2', 'r3'])
    h.togglePick('r2')
    await flush()
    expect(h.compareA).toBe(null)
  })

  it("a cancelled run has no trained answers in a comparison, and the export says so with both runs' parameters", async () => {
    const h = useHistoryStore()
    await h.refresh()
    h.togglePick('r1')
    h.togglePick('r2')
    await h.compare()
    expect(h.compareRows).toEqual([
      { id: 1, prompt: 'q1', a: 'trained r1 1', b: null },
      { id: 2, prompt: 'q2', a: 'trained r1 2', b: null },
    ])
    const file = h.compareExport()!
    expect(file.name).toBe('compare-r1-r2.json')
    const body = JSON.parse(file.text)
    expect(
      body.runs.map((r: { run_id: string; params: { supportRatio: number }; has_trained_answers: boolean }) => [
        r.run_id,
        r.params.supportRatio,
        r.has_trained_answers,
      ]),
    ).toEqual([
      ['r1', 0.1, true],
      ['r2', 0.9, false],
    ])
    expect(body.rows[0]).toEqual({
      id: 1,
      prompt: 'q1',
      response_from_run_a: 'trained r1 1',
      response_from_run_b: null,
    })
  })
})
