// Past runs from their run directories: the list (filtered and sorted by the parameters that tell runs apart),
// reopening one (into the run and responses views), and comparing two runs' trained answers side by side.
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { ResponseRow, RunDetail, RunListItem } from '@shared/api/contract'
import { errorText, useApi } from '../api/client'
import { historyRows, NO_FILTER, type HistoryFilter, type HistorySort } from '../lib/historyTable'
import { useAppStore } from './app'
import { useResponsesStore } from './responses'
import { useRunStore } from './run'

/** A run's trained answers (responses_trained.json, else comparison.json's), or null when it has none. */
export function trainedAnswers(r: RunDetail): ResponseRow[] | null {
  if (r.trained?.length) return r.trained
  if (r.comparison?.length)
    return r.comparison.map((c) => ({ id: c.id, prompt: c.prompt, response: c.response_from_trained_model }))
  return null
}
/** The questions a run answered (its test prompts), from whichever answers it has. */
function questionsOf(r: RunDetail): Array<{ id: ResponseRow['id']; prompt: string }> {
  return r.trained ?? r.original ?? r.comparison?.map((c) => ({ id: c.id, prompt: c.prompt })) ?? []
}

export const useHistoryStore = defineStore('history', () => {
  const api = useApi()
  const runs = ref<RunListItem[]>([])
  const loading = ref(false)
  const error = ref('')
  const picked = ref<string[]>([])
  const compareA = ref<RunDetail | null>(null)
  const compareB = ref<RunDetail | null>(null)
  const compareIndex = ref(0)
  const filter = ref<HistoryFilter>({ ...NO_FILTER })
  const sort = ref<HistorySort>({ key: 'startedAt', desc: true })
  /** The runs on screen: filtered and sorted. */
  const shown = computed(() => historyRows(runs.value, filter.value, sort.value))

  function sortBy(key: HistorySort['key']): void {
    sort.value = sort.value.key === key ? { key, desc: !sort.value.desc } : { key, desc: key === 'startedAt' }
  }

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

  /** A third tick replaces the earlier of the two picks. */
  function togglePick(runId: string): void {
    picked.value = picked.value.includes(runId)
      ? picked.value.filter((x) => x !== runId)
      : [...picked.value.slice(-1), runId]
  }
  // The comparison on screen always shows the ticked runs: two ticked compare again, fewer close it.
  watch(picked, (ids) => {
    if (!compareA.value) return
    const same = ids.length === 2 && [compareA.value.runId, compareB.value?.runId].every((id) => ids.includes(id ?? ''))
    if (same) return
    if (ids.length === 2) void compare()
    else closeCompare()
  })

  async function compare(): Promise<void> {
    if (picked.value.length !== 2) return
    try {
      // Older run on the left, newer on the right.
      const order = [...picked.value].sort((x, y) =>
        (runs.value.find((r) => r.runId === x)?.startedAt ?? '').localeCompare(
          runs.value.find((r) => r.runId === y)?.startedAt ?? '',
        ),
      )
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

  /**
   * Rows of the comparison: each question with both runs' trained answers. A run stopped before its trained answers
   * has none (null), never its original answers in their place.
   */
  const compareRows = computed(() => {
    const a = compareA.value
    const b = compareB.value
    if (!a || !b) return []
    const ta = trainedAnswers(a)
    const tb = trainedAnswers(b)
    const questions = questionsOf(a).length ? questionsOf(a) : questionsOf(b)
    const answer = (rows: ResponseRow[] | null, id: ResponseRow['id'], i: number) =>
      rows ? ((rows.find((x) => x.id === id) ?? rows[i])?.response ?? null) : null
    return questions.map((q, i) => ({ id: q.id, prompt: q.prompt, a: answer(ta, q.id, i), b: answer(tb, q.id, i) }))
  })

  /** The two-run comparison as a file: both runs' parameters and each question's two trained answers. */
  function compareExport(): { name: string; text: string } | null {
    const a = compareA.value
    const b = compareB.value
    if (!a || !b) return null
    const run = (r: RunDetail) => ({
      run_id: r.runId,
      status: r.status,
      model: r.modelDir,
      dataset: r.datasetPath,
      params: r.params,
      has_trained_answers: trainedAnswers(r) !== null,
    })
    const body = {
      runs: [run(a), run(b)],
      rows: compareRows.value.map((r) => ({
        id: r.id,
        prompt: r.prompt,
        response_from_run_a: r.a,
        response_from_run_b: r.b,
      })),
    }
    return { name: `compare-${a.runId}-${b.runId}.json`, text: JSON.stringify(body, null, 2) + '\n' }
  }

  api.onEvent((e) => {
    if (e.type === 'job' && e.jobKind === 'run' && e.event.kind === 'end') void refresh()
  })

  return {
    runs,
    shown,
    filter,
    sort,
    loading,
    error,
    picked,
    compareA,
    compareB,
    compareIndex,
    compareRows,
    refresh,
    open,
    togglePick,
    sortBy,
    compare,
    closeCompare,
    compareExport,
  }
})
