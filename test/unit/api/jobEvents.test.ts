// applyJobEvent: the one reducer of job events, shared by the main process's job snapshot and the renderer's run store.
import { describe, expect, it } from 'vitest'
import { applyJobEvent, LOG_KEEP, type JobView } from '../../../src-shared/api/jobEvents'
import type { MetricsRow, TrainProgress } from '../../../src-shared/api/contract'

function view(extra: Partial<JobView> = {}): JobView {
  return {
    status: 'running',
    phase: 'load',
    detail: '',
    metrics: [],
    progress: null,
    log: [],
    error: null,
    original: ['', ''],
    trained: ['', ''],
    ...extra,
  }
}

const row = { step: 1, epoch: 0.5, loss: 0.6931 } as MetricsRow

describe('applyJobEvent', () => {
  it('phase sets the phase and its detail (empty when none)', () => {
    expect(applyJobEvent(view(), { kind: 'phase', phase: 'train', detail: '4 steps' })).toMatchObject({
      phase: 'train',
      detail: '4 steps',
    })
    expect(applyJobEvent(view({ detail: 'old' }), { kind: 'phase', phase: 'save' })).toMatchObject({
      phase: 'save',
      detail: '',
    })
  })

  it('metrics appends the row to a new array, leaving the old view as it was', () => {
    const before = view({ metrics: [row] })
    const after = applyJobEvent(before, { kind: 'metrics', row: { ...row, step: 2 } })
    expect(after.metrics.map((r) => r.step)).toEqual([1, 2])
    expect(before.metrics).toHaveLength(1)
  })

  it('progress replaces the progress', () => {
    const progress: TrainProgress = {
      stage: 'train',
      step: 1,
      totalSteps: 4,
      pairsDone: 2,
      pairsTotal: 8,
      elapsedS: 1,
      etaS: 3,
      pairsPerS: 2,
    }
    expect(applyJobEvent(view(), { kind: 'progress', progress }).progress).toEqual(progress)
  })

  it('text appends to one answer; response replaces it; a view without answers ignores both', () => {
    let v = applyJobEvent(view(), { kind: 'text', which: 'original', index: 1, delta: 'Hel' })
    v = applyJobEvent(v, { kind: 'text', which: 'original', index: 1, delta: 'lo' })
    expect(v.original).toEqual(['', 'Hello'])
    v = applyJobEvent(v, { kind: 'response', which: 'trained', index: 0, row: { id: 1, prompt: 'p', response: 'Hi.' } })
    expect(v.trained).toEqual(['Hi.', ''])
    const bare = view({ original: undefined, trained: undefined })
    expect(applyJobEvent(bare, { kind: 'text', which: 'original', index: 0, delta: 'x' })).toBe(bare)
    expect(
      applyJobEvent(bare, { kind: 'response', which: 'trained', index: 0, row: { id: 1, prompt: 'p', response: 'x' } }),
    ).toBe(bare)
  })

  it('sweep records the run in progress and collects finished rows', () => {
    let v = applyJobEvent(view(), { kind: 'sweep', index: 0, total: 2, ratio: 0.5, runDir: '/r0' })
    expect(v.sweep).toEqual({ index: 0, total: 2, ratio: 0.5, runDir: '/r0', rows: [] })
    const done = { ratio: 0.5 } as never
    v = applyJobEvent(v, { kind: 'sweep', index: 0, total: 2, ratio: 0.5, runDir: '/r0', row: done })
    v = applyJobEvent(v, { kind: 'sweep', index: 1, total: 2, ratio: 1, runDir: '/r1' })
    expect(v.sweep).toEqual({ index: 1, total: 2, ratio: 1, runDir: '/r1', rows: [done] })
  })

  it(`log keeps the latest ${LOG_KEEP} lines`, () => {
    let v = view()
    for (let i = 0; i < LOG_KEEP + 5; i++) v = applyJobEvent(v, { kind: 'log', line: `line ${i}` })
    expect(v.log).toHaveLength(LOG_KEEP)
    expect(v.log[0]).toBe('line 5')
    expect(v.log[LOG_KEEP - 1]).toBe(`line ${LOG_KEEP + 4}`)
  })

  it('end sets the status, the error and the closing phase', () => {
    expect(applyJobEvent(view({ phase: 'save' }), { kind: 'end', status: 'completed' })).toMatchObject({
      status: 'completed',
      phase: 'done',
      error: null,
    })
    expect(applyJobEvent(view(), { kind: 'end', status: 'cancelled' })).toMatchObject({
      status: 'cancelled',
      phase: 'cancelled',
      error: null,
    })
    const error = { code: 'E_OOM', message: 'out of memory' }
    expect(applyJobEvent(view(), { kind: 'end', status: 'failed', error })).toMatchObject({
      status: 'failed',
      phase: 'failed',
      error,
    })
  })

  it('loadProgress leaves the view as it is', () => {
    const v = view()
    expect(applyJobEvent(v, { kind: 'loadProgress', fraction: 0.5 })).toBe(v)
  })
})
