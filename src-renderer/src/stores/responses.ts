// Answers to the test prompts: the original model's (before training) and the trained model's, streamed token by
// token from a generation job or a run, or loaded from a past run; plus which question is on screen.
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import type { ResponseRow, RunDetail } from '@shared/api/contract'
import { errorText, useApi } from '../api/client'
import { useAppStore } from './app'
import { useDatasetStore } from './dataset'
import { useModelsStore } from './models'
import { useParamsStore } from './params'

type Which = 'original' | 'trained'

export const useResponsesStore = defineStore('responses', () => {
  const api = useApi()
  const prompts = ref<Array<{ id: number | string; prompt: string }>>([])
  const original = ref<string[]>([])
  const trained = ref<string[]>([])
  const streaming = ref<Which | null>(null)
  const jobId = ref<string | null>(null)
  /** Where the answers came from: 'live' or a run id. */
  const source = ref<string>('live')
  const selected = ref(0)
  const error = ref('')
  /** Text deltas per second while streaming (one delta is about one token). */
  const rate = ref(0)
  let deltas = 0
  let rateStart = 0

  const count = computed(() => prompts.value.length)
  const current = computed(() => ({
    index: selected.value,
    prompt: prompts.value[selected.value] ?? null,
    original: original.value[selected.value] ?? '',
    trained: trained.value[selected.value] ?? '',
  }))
  const hasOriginal = computed(() => original.value.some((t) => t.length > 0))
  const hasTrained = computed(() => trained.value.some((t) => t.length > 0))

  function reset(p: Array<{ id: number | string; prompt: string }>, keepOriginal = false): void {
    prompts.value = p
    if (!keepOriginal || original.value.length !== p.length) original.value = p.map(() => '')
    trained.value = p.map(() => '')
    selected.value = Math.min(selected.value, Math.max(0, p.length - 1))
  }

  function setText(which: Which, index: number, text: string): void {
    const arr = which === 'original' ? original : trained
    const next = [...arr.value]
    next[index] = text
    arr.value = next
  }

  function appendText(which: Which, index: number, delta: string): void {
    const arr = which === 'original' ? original.value : trained.value
    setText(which, index, (arr[index] ?? '') + delta)
    deltas++
    const secs = (performance.now() - rateStart) / 1000
    if (secs > 0.5) rate.value = deltas / secs
  }

  /** Greedy answers of the base model to the test prompts (before training). */
  async function generateOriginal(): Promise<void> {
    const app = useAppStore()
    const models = useModelsStore()
    const dataset = useDatasetStore()
    const params = useParamsStore()
    if (!models.dir || !dataset.promptsPath || !dataset.prompts || !params.resolved) {
      error.value = !models.dir
        ? 'Choose a model first.'
        : !dataset.prompts
          ? 'Open test prompts first (the dataset view finds test_prompt.json).'
          : params.errorSummary
      return
    }
    error.value = ''
    reset(dataset.prompts.prompts)
    original.value = dataset.prompts.prompts.map(() => '')
    source.value = 'live'
    try {
      const r = await api.generateStart({
        modelDir: models.dir,
        promptsPath: dataset.promptsPath,
        params: params.resolved,
      })
      jobId.value = r.jobId
      begin('original')
    } catch (e) {
      error.value = errorText(e)
      app.notify('error', error.value)
    }
  }

  function begin(which: Which): void {
    streaming.value = which
    deltas = 0
    rateStart = performance.now()
    rate.value = 0
  }

  async function cancel(): Promise<void> {
    if (jobId.value) await api.jobCancel({ jobId: jobId.value }).catch(() => undefined)
  }

  function loadRun(run: RunDetail): void {
    const rows: ResponseRow[] = run.original ?? run.trained ?? []
    const fromComparison = run.comparison?.map((c) => ({ id: c.id, prompt: c.prompt })) ?? []
    prompts.value = rows.length ? rows.map((r) => ({ id: r.id, prompt: r.prompt })) : fromComparison
    original.value =
      run.original?.map((r) => r.response) ?? run.comparison?.map((c) => c.response_from_original_model) ?? []
    trained.value =
      run.trained?.map((r) => r.response) ?? run.comparison?.map((c) => c.response_from_trained_model) ?? []
    source.value = run.runId
    selected.value = 0
    streaming.value = null
  }

  function go(delta: number): void {
    if (!count.value) return
    selected.value = (selected.value + delta + count.value) % count.value
  }

  api.onEvent((e) => {
    // A sweep's runs stream their answers into their own run directories, not into this view.
    if (e.type !== 'job' || e.jobKind === 'sweep') return
    const ev = e.event
    if (e.jobKind === 'generate' && e.jobId !== jobId.value) {
      // Started in another window: follow it.
      jobId.value = e.jobId
      source.value = 'live'
    }
    if (e.jobKind === 'run') {
      if (source.value !== 'live' && source.value !== e.runId) source.value = e.runId ?? 'live'
      jobId.value = e.jobId
    }
    if (ev.kind === 'phase' && (ev.phase === 'original' || ev.phase === 'trained')) begin(ev.phase)
    else if (ev.kind === 'phase') streaming.value = null
    else if (ev.kind === 'text') {
      if (streaming.value !== ev.which) begin(ev.which)
      appendText(ev.which, ev.index, ev.delta)
    } else if (ev.kind === 'response') setText(ev.which, ev.index, ev.row.response)
    else if (ev.kind === 'end') {
      streaming.value = null
      if (ev.error) error.value = ev.error.message
    }
  })

  return {
    prompts,
    original,
    trained,
    streaming,
    jobId,
    source,
    selected,
    error,
    rate,
    count,
    current,
    hasOriginal,
    hasTrained,
    reset,
    generateOriginal,
    cancel,
    loadRun,
    go,
  }
})
