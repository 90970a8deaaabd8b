// The training run on screen: start / cancel, phase, live metrics (one row per logging step, TRL's names),
// progress, throughput and ETA. Follows a run started in another window, and shows past runs reopened from history.
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import type { ApiErrorInfo, JobSnapshot, MetricsRow, RunDetail, RunPhase, TrainProgress } from '@shared/api/contract'
import { applyJobEvent } from '@shared/api/jobEvents'
import { errorText, useApi } from '../api/client'
import { useAppStore } from './app'
import { useDatasetStore } from './dataset'
import { useModelsStore } from './models'
import { useParamsStore } from './params'
import { useResponsesStore } from './responses'

export type RunStatus = 'idle' | 'running' | 'completed' | 'cancelled' | 'failed'

export const useRunStore = defineStore('run', () => {
  const api = useApi()
  const jobId = ref<string | null>(null)
  const runId = ref<string | null>(null)
  const status = ref<RunStatus>('idle')
  const phase = ref<RunPhase | null>(null)
  const detail = ref('')
  const metrics = ref<MetricsRow[]>([])
  const progress = ref<TrainProgress | null>(null)
  const error = ref<ApiErrorInfo | null>(null)
  const log = ref<string[]>([])
  const startedAt = ref<number | null>(null)
  const config = ref<unknown>(null)
  /** The model and dataset of the run on screen (for its parameters table). */
  const where = ref<{ model: string | null; dataset: string | null } | null>(null)
  /** Whether what is shown is a reopened past run rather than a live one. */
  const reopened = ref(false)
  const cancelling = ref(false)
  /** Between Start and the run existing: Start is not pressed twice. */
  const starting = ref(false)
  /** Whether the stopped run on screen can be resumed: from the run list for past runs, assumed for live ones. */
  const resumeOk = ref(false)
  const resuming = ref(false)

  const running = computed(() => status.value === 'running')
  const last = computed(() => metrics.value[metrics.value.length - 1] ?? null)
  /** A cancelled or failed run that runResume may continue (the server checks everything and says what differs). */
  const canResume = computed(
    () =>
      !running.value &&
      runId.value !== null &&
      (status.value === 'cancelled' || status.value === 'failed') &&
      resumeOk.value,
  )
  const fraction = computed(() =>
    progress.value && progress.value.totalSteps > 0
      ? progress.value.step / progress.value.totalSteps
      : status.value === 'completed'
        ? 1
        : 0,
  )

  /** What is missing before a run can start, in words (empty when ready). */
  const blockers = computed(() => {
    const out: string[] = []
    const app = useAppStore()
    if (app.info && !app.info.training) out.push('This build has no DPO training service yet.')
    if (!useModelsStore().dir) out.push('Choose a model.')
    if (!useDatasetStore().opened) out.push('Open a dataset.')
    if (!useParamsStore().valid) out.push(useParamsStore().errorSummary)
    return out
  })

  function clear(): void {
    metrics.value = []
    progress.value = null
    error.value = null
    log.value = []
    phase.value = null
    detail.value = ''
  }

  async function start(): Promise<void> {
    const app = useAppStore()
    const models = useModelsStore()
    const dataset = useDatasetStore()
    const params = useParamsStore()
    const responses = useResponsesStore()
    if (!params.resolved || !dataset.opened || starting.value) return
    clear()
    starting.value = true
    try {
      const r = await api.runStart({
        modelDir: models.dir,
        datasetPath: dataset.path,
        ...(dataset.promptsPath ? { testPromptsPath: dataset.promptsPath } : {}),
        params: params.resolved,
      })
      // Only now: until the run exists, a reopened past run stays labelled as one (not "completed").
      reopened.value = false
      jobId.value = r.jobId
      runId.value = r.runId
      status.value = 'running'
      phase.value = 'load'
      startedAt.value = Date.now()
      config.value = params.resolved
      where.value = { model: models.dir, dataset: dataset.path }
      responses.reset(dataset.prompts?.prompts ?? [])
      responses.source = r.runId ?? 'live'
      app.notify('info', `Run ${r.runId} started.`)
    } catch (e) {
      reopened.value = false
      status.value = 'failed'
      error.value = { code: 'E_START', message: errorText(e) }
      app.notify('error', errorText(e))
    } finally {
      starting.value = false
    }
  }

  /** Continues the stopped run on screen in its own directory (docs/resume.md), through the same API as the CLI. */
  async function resume(): Promise<void> {
    const app = useAppStore()
    const id = runId.value
    if (!id || !canResume.value) return
    resuming.value = true
    try {
      const r = await api.runResume({ run: id })
      const snap = await api.jobActive(undefined).catch(() => null)
      clear()
      if (snap && snap.jobId === r.jobId) adopt(snap)
      else {
        jobId.value = r.jobId
        status.value = 'running'
        phase.value = 'load'
        startedAt.value = Date.now()
        reopened.value = false
      }
      const responses = useResponsesStore()
      if (snap) responses.reset(snap.prompts, responses.source === id)
      responses.source = id
      app.notify('info', `Run ${id} resumed.`)
    } catch (e) {
      app.notify('error', errorText(e), 15000)
    } finally {
      resuming.value = false
    }
  }

  async function cancel(): Promise<void> {
    if (!jobId.value || !running.value || cancelling.value) return
    cancelling.value = true
    await api.jobCancel({ jobId: jobId.value }).catch(() => undefined)
  }

  function adopt(snap: JobSnapshot): void {
    jobId.value = snap.jobId
    runId.value = snap.runId
    status.value = snap.status
    phase.value = snap.phase
    detail.value = snap.detail
    metrics.value = [...snap.metrics]
    progress.value = snap.progress
    error.value = snap.error
    log.value = [...snap.log]
    startedAt.value = Date.parse(snap.startedAt)
    reopened.value = false
  }

  /**
   * On startup, and when the page reconnects: a run may be going (another window, or a reload), so follow it.
   * Otherwise a page that shows no run yet (a reload) shows the latest run from disk, and one that lost track of its
   * run (it ended while the server was out of reach) shows how that run ended.
   */
  async function attach(): Promise<void> {
    const snap = await api.jobActive(undefined).catch(() => null)
    if (snap?.kind === 'run' && snap.status === 'running') {
      adopt(snap)
      const responses = useResponsesStore()
      responses.reset(snap.prompts)
      snap.original.forEach((t, i) => (responses.original[i] = t))
      snap.trained.forEach((t, i) => (responses.trained[i] = t))
      return
    }
    if (status.value !== 'idle' && status.value !== 'running') return
    const before = { status: status.value, runId: runId.value }
    const id =
      before.status === 'running' ? before.runId : ((await api.runsList(undefined).catch(() => []))[0]?.runId ?? null)
    if (!id) return
    const detail = await api.runOpen({ run: id }).catch(() => null)
    // Something started meanwhile (Start, a run from another window): that wins.
    if (!detail || status.value !== before.status || runId.value !== before.runId) return
    showPast(detail)
    const responses = useResponsesStore()
    if (
      before.status === 'running' ||
      (responses.source === 'live' && !responses.hasOriginal && !responses.hasTrained && !responses.streaming)
    )
      responses.loadRun(detail)
  }

  function showPast(run: RunDetail): void {
    clear()
    jobId.value = null
    runId.value = run.runId
    status.value = run.status === 'unknown' ? 'completed' : run.status === 'running' ? 'failed' : run.status
    metrics.value = run.metrics
    phase.value = run.status === 'completed' ? 'done' : null
    config.value = run.config
    where.value = { model: run.modelDir, dataset: run.datasetPath }
    error.value = run.error ? { code: 'E_RUN', message: run.error } : null
    reopened.value = true
    resumeOk.value = run.resumable
  }

  api.onEvent((e) => {
    if (e.type !== 'job' || e.jobKind !== 'run') return
    if (e.jobId !== jobId.value) {
      // A run started elsewhere (another window or tab): follow it from here on.
      clear()
      jobId.value = e.jobId
      runId.value = e.runId
      status.value = 'running'
      startedAt.value = Date.now()
      reopened.value = false
    }
    const ev = e.event
    const next = applyJobEvent(
      {
        status: status.value,
        phase: phase.value,
        detail: detail.value,
        metrics: metrics.value,
        progress: progress.value,
        log: log.value,
        error: error.value,
      },
      ev,
    )
    status.value = next.status
    phase.value = next.phase
    detail.value = next.detail
    metrics.value = next.metrics
    progress.value = next.progress
    log.value = next.log
    error.value = next.error
    if (ev.kind === 'end') {
      cancelling.value = false
      resumeOk.value = ev.status !== 'completed'
      const app = useAppStore()
      if (ev.status === 'completed') app.notify('success', `Run ${runId.value} finished.`)
      else if (ev.status === 'cancelled') app.notify('info', `Run ${runId.value} was cancelled.`)
      else app.notify('error', `Run ${runId.value} failed: ${ev.error?.message ?? 'unknown error'}`, 15000)
    }
  })

  return {
    jobId,
    runId,
    status,
    phase,
    detail,
    metrics,
    progress,
    error,
    log,
    startedAt,
    config,
    where,
    reopened,
    cancelling,
    starting,
    resuming,
    running,
    last,
    fraction,
    blockers,
    canResume,
    start,
    resume,
    cancel,
    attach,
    showPast,
  }
})
