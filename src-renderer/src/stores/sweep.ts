// The support_ratio sweep on screen (docs/insights.md): start one with the chosen model, dataset and parameters,
// follow it (run k of n, the finished runs' rows as they come), and open past sweeps from the data folder.
import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import type { SweepDetail, SweepJobState, SweepListItem, SweepRunRow } from '@shared/api/contract'
import { errorText, useApi } from '../api/client'
import { useAppStore } from './app'
import { useDatasetStore } from './dataset'
import { useModelsStore } from './models'
import { useParamsStore } from './params'

/** "0, 0.25,1" -> sorted unique ratios, or a message saying what is wrong. */
export function parseRatios(text: string): number[] | string {
  const parts = text.split(/[,\s]+/).filter(Boolean)
  if (!parts.length) return 'Enter at least one support_ratio.'
  const values = parts.map(Number)
  const bad = parts.find((_, i) => !Number.isFinite(values[i]) || values[i]! < 0 || values[i]! > 1)
  if (bad !== undefined) return `“${bad}” is not a number between 0 and 1.`
  if (values.length > 21) return 'At most 21 ratios.'
  return [...new Set(values)].sort((a, b) => a - b)
}

export const useSweepStore = defineStore('sweep', () => {
  const api = useApi()
  const ratiosText = ref('0, 0.25, 0.5, 0.75, 1')
  const list = ref<SweepListItem[]>([])
  const current = shallowRef<SweepDetail | null>(null)
  const jobId = ref<string | null>(null)
  const sweepId = ref<string | null>(null)
  const status = ref<'idle' | 'running' | 'completed' | 'cancelled' | 'failed'>('idle')
  const progress = ref<SweepJobState | null>(null)
  /** The running sweep's finished runs' directories (absolute), in order. */
  const liveDirs = ref<string[]>([])
  const phase = ref('')
  const error = ref('')

  const ratios = computed(() => parseRatios(ratiosText.value))
  const running = computed(() => status.value === 'running')
  /** The rows on screen: the open sweep's, or the running sweep's finished runs. */
  const live = computed(() => running.value && progress.value !== null && current.value?.sweepId !== sweepId.value)
  const rows = computed<SweepRunRow[]>(() => (live.value ? progress.value!.rows : (current.value?.sweep.runs ?? [])))
  /** Absolute run directories of the rows on screen. */
  const dirs = computed<string[]>(() => (live.value ? liveDirs.value : (current.value?.runDirs ?? [])))

  const blockers = computed(() => {
    const out: string[] = []
    if (!useModelsStore().dir) out.push('Choose a model.')
    const ds = useDatasetStore()
    if (!ds.opened) out.push('Open a dataset.')
    else if (ds.opened.format !== 'hw6') out.push('A sweep needs the HW6 layout (support / oppose answers).')
    if (!useParamsStore().valid) out.push(useParamsStore().errorSummary)
    if (typeof ratios.value === 'string') out.push(ratios.value)
    return out
  })

  async function refresh(): Promise<void> {
    try {
      list.value = await api.sweepsList(undefined)
    } catch (e) {
      error.value = errorText(e)
    }
  }

  async function open(sweep: string): Promise<void> {
    try {
      current.value = await api.sweepOpen({ sweep })
      error.value = ''
    } catch (e) {
      error.value = errorText(e)
    }
  }

  async function start(): Promise<void> {
    const params = useParamsStore()
    const dataset = useDatasetStore()
    if (blockers.value.length || typeof ratios.value === 'string' || !params.resolved) return
    try {
      const r = await api.sweepStart({
        modelDir: useModelsStore().dir,
        datasetPath: dataset.path,
        ...(dataset.promptsPath ? { testPromptsPath: dataset.promptsPath } : {}),
        params: params.resolved,
        ratios: ratios.value,
      })
      jobId.value = r.jobId
      sweepId.value = r.runId
      status.value = 'running'
      progress.value = null
      liveDirs.value = []
      phase.value = 'load'
      error.value = ''
      current.value = null
      useAppStore().notify('info', `Sweep ${r.runId} started.`)
    } catch (e) {
      error.value = errorText(e)
      useAppStore().notify('error', errorText(e))
    }
  }

  /** A sweep already going (started in another window, or before a reload): follow it from its snapshot. */
  async function attach(): Promise<void> {
    const snap = await api.jobActive(undefined).catch(() => null)
    if (snap?.kind !== 'sweep' || snap.status !== 'running') return
    jobId.value = snap.jobId
    sweepId.value = snap.runId
    status.value = 'running'
    phase.value = snap.phase ?? ''
    progress.value = snap.sweep ?? null
    current.value = null
  }

  async function cancel(): Promise<void> {
    if (jobId.value && running.value) await api.jobCancel({ jobId: jobId.value }).catch(() => undefined)
  }

  api.onEvent((e) => {
    if (e.type !== 'job' || e.jobKind !== 'sweep') return
    if (e.jobId !== jobId.value) {
      jobId.value = e.jobId
      sweepId.value = e.runId
      status.value = 'running'
    }
    const ev = e.event
    if (ev.kind === 'sweep') {
      const rows = progress.value?.rows ?? []
      progress.value = {
        index: ev.index,
        total: ev.total,
        ratio: ev.ratio,
        runDir: ev.runDir,
        rows: ev.row ? [...rows, ev.row] : rows,
      }
      if (ev.row) liveDirs.value = [...liveDirs.value, ev.runDir]
    } else if (ev.kind === 'phase') phase.value = ev.phase
    else if (ev.kind === 'end') {
      status.value = ev.status
      if (ev.error) error.value = ev.error.message
      void refresh()
      if (sweepId.value) void open(sweepId.value)
      const app = useAppStore()
      if (ev.status === 'completed') app.notify('success', `Sweep ${sweepId.value} finished.`)
      else if (ev.status === 'failed')
        app.notify('error', `Sweep ${sweepId.value} failed: ${ev.error?.message ?? 'unknown error'}`, 15000)
    }
  })

  return {
    ratiosText,
    list,
    current,
    jobId,
    sweepId,
    status,
    progress,
    liveDirs,
    phase,
    error,
    ratios,
    running,
    rows,
    dirs,
    blockers,
    refresh,
    open,
    start,
    attach,
    cancel,
  }
})
