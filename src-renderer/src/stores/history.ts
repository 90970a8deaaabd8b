// Past runs from their run directories: the list, reopening one (into the run and responses views), and comparing
// two runs' answers side by side.
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import type { RunDetail, RunListItem } from '../../../src-main/api/contract'
import { errorText, useApi } from '../api/client'
import { useAppStore } from './app'
import { useResponsesStore } from './responses'
import { useRunStore } from './run'

export const useHistoryStore = defineStore('history', () => {
  const api = useApi()
  const runs = ref<RunListItem[]>([])
  const loading = ref(false)
  const error = ref('')
  const picked = ref<string[]>([])
  const compareA = ref<RunDetail | null>(null)
  const compareB = ref<RunDetail | null>(null)
  const compareIndex = ref(0)

  async function refresh(): Promise<void> {
    loading.value = true
    try {
      runs.value = await api.runsList(undefined)
      error.value = ''
    } catch (e) {
      error.value = errorText(e)
    } finally {
      loading.value = false
    }
  }

  async function open(runId: string): Promise<RunDetail | null> {
    try {
      const run = await api.runOpen({ run: runId })
      useRunStore().showPast(run)
      useResponsesStore().loadRun(run)
      return run
    } catch (e) {
      useAppStore().notify('error', errorText(e))
      return null
    }
  }

  function togglePick(runId: string): void {
    picked.value = picked.value.includes(runId) ? picked.value.filter((x) => x !== runId) : [...picked.value.slice(-1), runId]
  }

  async function compare(): Promise<void> {
    if (picked.value.length !== 2) return
    try {
      // Older run on the left, newer on the right.
      const order = [...picked.value].sort((x, y) => (runs.value.find((r) => r.runId === x)?.startedAt ?? '').localeCompare(runs.value.find((r) => r.runId === y)?.startedAt ?? ''))
      const [a, b] = await Promise.all(order.map((run) => api.runOpen({ run })))
      compareA.value = a!
      compareB.value = b!
      compareIndex.value = 0
    } catch (e) {
      useAppStore().notify('error', errorText(e))
    }
  }

  function closeCompare(): void {
    compareA.value = null
    compareB.value = null
  }

  /** Rows of the comparison: each question with both runs' trained (or, lacking that, original) answers. */
  const compareRows = computed(() => {
    const a = compareA.value
    const b = compareB.value
    if (!a || !b) return []
    const answers = (r: RunDetail) => r.trained ?? r.comparison?.map((c) => ({ id: c.id, prompt: c.prompt, response: c.response_from_trained_model })) ?? r.original ?? []
    const ra = answers(a)
    const rb = answers(b)
    return ra.map((row, i) => ({ id: row.id, prompt: row.prompt, a: row.response, b: rb.find((x) => x.id === row.id)?.response ?? rb[i]?.response ?? '' }))
  })

  api.onEvent((e) => {
    if (e.type === 'job' && e.jobKind === 'run' && e.event.kind === 'end') void refresh()
  })

  return { runs, loading, error, picked, compareA, compareB, compareIndex, compareRows, refresh, open, togglePick, compare, closeCompare }
})
