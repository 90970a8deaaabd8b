// @vitest-environment happy-dom
// Pinia stores against a fake API: the dataset's pairs follow data_size / support_ratio, the run store follows live
// events (metrics, progress, end), and the responses store streams text per prompt.
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiError, type MetricsRow, type PairsPage } from '../../../src-shared/api/contract'
import { setApi } from '../../../src-renderer/src/api/client'
import { useDatasetStore } from '../../../src-renderer/src/stores/dataset'
import { useExportStore } from '../../../src-renderer/src/stores/export'
import { useParamsStore } from '../../../src-renderer/src/stores/params'
import { useResponsesStore } from '../../../src-renderer/src/stores/responses'
import { useRunStore } from '../../../src-renderer/src/stores/run'
import { fakeApi, type FakeApi } from './fakeApi'

const flush = () => new Promise((r) => setTimeout(r, 0))
let fake: FakeApi

function pairs(input: { dataSize: number; supportRatio: number }): PairsPage {
  const total = Math.min(input.dataSize, 50)
  const supportCount = Math.floor(total * input.supportRatio)
  return { total, supportCount, opposeCount: total - supportCount, offset: 0, pairs: [] }
}

beforeEach(() => {
  localStorage.clear()
  fake = fakeApi({
    appInfo: () => ({ platform: 'web', training: true }),
    datasetOpen: () => ({
      datasetId: 'ds1',
      file: '/d/labelled_data.json',
      format: 'hw6',
      conversational: false,
      rowCount: 50,
      testPrompts: {
        path: '/d/test_prompt.json',
        prompts: [
          { id: 1, prompt: 'q1' },
          { id: 2, prompt: 'q2' },
        ],
      },
    }),
    datasetRows: () => ({ total: 50, matched: 50, offset: 0, rows: [] }),
    datasetPairs: pairs,
    runStart: () => ({ jobId: 'job1', runId: 'run1', outDir: '/runs/run1' }),
    jobCancel: () => ({ cancelled: true }),
  })
  setApi(fake.api)
  setActivePinia(createPinia())
})

describe('dataset store', () => {
  it('asks for new pairs when support_ratio or data_size change', async () => {
    const dataset = useDatasetStore()
    const params = useParamsStore()
    expect(await dataset.open('/d')).toBe(true)
    expect(dataset.pairs).toMatchObject({ total: 50, supportCount: 5 })
    expect(dataset.prompts?.prompts).toHaveLength(2)
    params.set('supportRatio', 0.5)
    await flush()
    await flush()
    expect(dataset.pairs).toMatchObject({ total: 50, supportCount: 25, opposeCount: 25 })
    params.set('dataSize', 10)
    await flush()
    await flush()
    expect(dataset.pairs).toMatchObject({ total: 10, supportCount: 5 })
    // An invalid value is not sent; the field names its error and the preview keeps the last valid values.
    const before = fake.calls.filter((c) => c.method === 'datasetPairs').length
    params.set('supportRatio', 1.5)
    await flush()
    expect(fake.calls.filter((c) => c.method === 'datasetPairs').length).toBe(before)
    expect(params.errors.supportRatio).toBe('Must be at most 1')
    expect(dataset.pairsFor).toEqual({ dataSize: 10, supportRatio: 0.5 })
  })

  it('keeps the row and field of a data error', async () => {
    const { ApiError } = await import('../../../src-shared/api/contract')
    fake.api.datasetOpen = async () => {
      throw new ApiError({
        code: 'E_BAD_INPUT',
        message: 'x.json: row 3 (id 3): field "oppose" is missing',
        details: { row: 3, field: 'oppose', file: 'x.json' },
      })
    }
    const dataset = useDatasetStore()
    expect(await dataset.open('/x.json')).toBe(false)
    expect(dataset.error).toContain('row 3')
    expect(dataset.errorWhere).toMatchObject({ row: 3, field: 'oppose' })
  })
})

describe('run store', () => {
  const row = (step: number): MetricsRow => ({
    step,
    epoch: step / 10,
    loss: 0.6931 - step * 0.01,
    grad_norm: 1,
    learning_rate: 2e-4,
    'rewards/chosen': 0,
    'rewards/rejected': -0.01 * step,
    'rewards/accuracies': 0.5,
    'rewards/margins': 0.01 * step,
    'logps/chosen': -10,
    'logps/rejected': -11,
    'logits/chosen': 0,
    'logits/rejected': 0,
    elapsed_s: step,
    pairs_per_s: 8,
  })

  it('starts a run and follows its events to the end', async () => {
    const dataset = useDatasetStore()
    await dataset.open('/d')
    const run = useRunStore()
    const responses = useResponsesStore()
    await run.start()
    expect(run.status).toBe('running')
    expect(fake.calls.find((c) => c.method === 'runStart')?.input).toMatchObject({
      datasetPath: '/d',
      testPromptsPath: '/d/test_prompt.json',
      params: { dataSize: 50, supportRatio: 0.1 },
    })
    const ev = (event: unknown) =>
      fake.emit({ type: 'job', jobId: 'job1', jobKind: 'run', runId: 'run1', event: event as never })
    ev({ kind: 'phase', phase: 'original' })
    ev({ kind: 'text', which: 'original', index: 1, delta: '你' })
    ev({ kind: 'text', which: 'original', index: 1, delta: '好' })
    expect(responses.original[1]).toBe('你好')
    expect(responses.streaming).toBe('original')
    ev({ kind: 'phase', phase: 'train' })
    ev({ kind: 'metrics', row: row(1) })
    ev({ kind: 'metrics', row: row(2) })
    ev({
      kind: 'progress',
      progress: { step: 2, totalSteps: 4, pairsDone: 16, pairsTotal: 32, elapsedS: 2, etaS: 2, pairsPerS: 8 },
    })
    expect(run.metrics.map((m) => m.step)).toEqual([1, 2])
    expect(run.fraction).toBe(0.5)
    ev({ kind: 'end', status: 'completed' })
    expect(run.status).toBe('completed')
    expect(run.phase).toBe('done')
    expect(responses.streaming).toBe(null)
  })

  it('says what blocks a start', async () => {
    const run = useRunStore()
    expect(run.blockers).toContain('Open a dataset.')
    useParamsStore().set('beta', -1)
    expect(run.blockers).toContain('Fix the parameter errors: Beta (beta).')
  })

  it('offers Resume for a cancelled run and continues it with the steps already done', async () => {
    fake = fakeApi({
      ...Object.fromEntries(['appInfo', 'datasetOpen'].map((m) => [m, () => ({})])),
      runResume: () => ({ jobId: 'job2', runId: 'run1', outDir: '/runs/run1' }),
      jobActive: () => ({
        jobId: 'job2',
        kind: 'run',
        runId: 'run1',
        status: 'running',
        phase: 'load',
        detail: '',
        metrics: [row(1), row(2)],
        progress: null,
        original: ['a', 'b'],
        trained: ['', ''],
        prompts: [
          { id: 1, prompt: 'q1' },
          { id: 2, prompt: 'q2' },
        ],
        log: [],
        error: null,
        startedAt: new Date().toISOString(),
      }),
    })
    setApi(fake.api)
    setActivePinia(createPinia())
    const run = useRunStore()
    run.showPast({
      runId: 'run1',
      status: 'cancelled',
      metrics: [row(1), row(2), row(3)],
      config: {},
      error: null,
      resumable: true,
      resumeFromStep: 2,
    } as never)
    expect(run.canResume).toBe(true)
    await run.resume()
    expect(fake.calls.find((c) => c.method === 'runResume')?.input).toEqual({ run: 'run1' })
    expect(run).toMatchObject({ status: 'running', jobId: 'job2', reopened: false, canResume: false })
    expect(run.metrics.map((m) => m.step)).toEqual([1, 2])
    fake.emit({ type: 'job', jobId: 'job2', jobKind: 'run', runId: 'run1', event: { kind: 'metrics', row: row(3) } })
    fake.emit({
      type: 'job',
      jobId: 'job2',
      jobKind: 'run',
      runId: 'run1',
      event: { kind: 'end', status: 'cancelled' },
    })
    expect(run.metrics.map((m) => m.step)).toEqual([1, 2, 3])
    expect(run.canResume).toBe(true)
    // A past run the server says cannot be resumed (completed, or not a run of ours) gets no button.
    run.showPast({
      runId: 'run2',
      status: 'failed',
      metrics: [],
      config: {},
      error: 'x',
      resumable: false,
      resumeFromStep: 0,
    } as never)
    expect(run.canResume).toBe(false)
  })

  it('follows a run started in another window', () => {
    const run = useRunStore()
    fake.emit({ type: 'job', jobId: 'other', jobKind: 'run', runId: 'run9', event: { kind: 'metrics', row: row(1) } })
    expect(run.runId).toBe('run9')
    expect(run.status).toBe('running')
    expect(run.metrics).toHaveLength(1)
  })
})

describe('export store', () => {
  it('asks before replacing an earlier export and sends overwrite only after the user says so', async () => {
    const calls: Array<{ overwrite?: boolean }> = []
    setApi(
      fakeApi({
        appInfo: () => ({ platform: 'web', training: true, exportsDir: '/x' }),
        exportComparison: (input: { path: string; overwrite?: boolean }) => {
          calls.push(input)
          if (!input.overwrite)
            throw new ApiError({
              code: 'E_EXPORT_EXISTS',
              message: `${input.path} holds an earlier export; replace it?`,
              details: { earlierExport: true },
            })
          return { path: input.path, metadataPath: '/x/c.meta.json', files: [input.path, '/x/c.meta.json'] }
        },
      }).api,
    )
    const ex = useExportStore()
    ex.runId = 'run1'
    ex.comparisonPath = '/x/c.json'
    expect(await ex.exportComparison()).toBeNull()
    expect(ex.confirmOverwrite).toBe('/x/c.json')
    expect(ex.error).toBe('')
    ex.cancelOverwrite()
    expect(ex.confirmOverwrite).toBe('')
    await ex.exportComparison()
    const r = await ex.exportComparison(true)
    expect(r?.path).toBe('/x/c.json')
    expect(ex.confirmOverwrite).toBe('')
    expect(calls.map((c) => c.overwrite)).toEqual([false, false, true])
  })

  it('shows the refusal for a file that is not an export, with nothing to confirm', async () => {
    setApi(
      fakeApi({
        exportComparison: () => {
          throw new ApiError({
            code: 'E_EXPORT_NOT_OURS',
            message: '/d/labelled_data.json exists and is not an earlier DPO Studio export',
            details: { earlierExport: false },
          })
        },
      }).api,
    )
    const ex = useExportStore()
    ex.comparisonPath = '/d/labelled_data.json'
    await ex.exportComparison()
    expect(ex.confirmOverwrite).toBe('')
    expect(ex.error).toMatch(/not an earlier DPO Studio export/)
  })
})
