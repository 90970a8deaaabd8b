// The pair inspector on screen (docs/insights.md): a run's pairs.jsonl (and optionally a second run's, side by side),
// filter / search / sort, the selected pair's per-token log-probs, and the test answers' token view. Everything is
// read from run directories: past runs need no engine.
import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import type { AnswerTokensRow, PairTokensRow, RunPairs } from '@shared/api/contract'
import { errorText, useApi } from '../api/client'
import { pairSummary, pairTableRows, type PairFilter, type PairSortKey } from '../lib/pairTable'

export type PairsTab = 'pairs' | 'answers'

export const usePairsStore = defineStore('pairs', () => {
  const api = useApi()
  /** Run ids or run directories. */
  const runA = ref<string | null>(null)
  const runB = ref<string | null>(null)
  const dataA = shallowRef<RunPairs | null>(null)
  const dataB = shallowRef<RunPairs | null>(null)
  const error = ref('')
  const loading = ref(false)
  const tab = ref<PairsTab>('pairs')
  const filter = ref<PairFilter>('all')
  const query = ref('')
  const sortKey = ref<PairSortKey>('margin')
  const sortDir = ref<'asc' | 'desc'>('desc')
  const selected = ref<number | null>(null)
  const tokensA = shallowRef<PairTokensRow | null>(null)
  const tokensB = shallowRef<PairTokensRow | null>(null)
  const answerIndex = ref<number | null>(null)
  const answerA = shallowRef<AnswerTokensRow | null>(null)
  const answerB = shallowRef<AnswerTokensRow | null>(null)

  const rows = computed(() =>
    dataA.value?.pairs
      ? pairTableRows(dataA.value.pairs, dataB.value?.pairs ?? null, {
          filter: filter.value,
          query: query.value,
          sortKey: sortKey.value,
          sortDir: sortDir.value,
        })
      : [],
  )
  const summaryA = computed(() => (dataA.value?.pairs ? pairSummary(dataA.value.pairs) : null))
  const summaryB = computed(() => (dataB.value?.pairs ? pairSummary(dataB.value.pairs) : null))
  const current = computed(() => (selected.value === null ? null : (dataA.value?.pairs?.[selected.value] ?? null)))
  const currentB = computed(() => (selected.value === null ? null : (dataB.value?.pairs?.[selected.value] ?? null)))

  async function load(run: string): Promise<RunPairs | null> {
    try {
      return await api.runPairs({ run })
    } catch (e) {
      error.value = errorText(e)
      return null
    }
  }

  /** Shows run A (an id or a directory); keeps the selection when the run is the same. */
  async function open(run: string): Promise<void> {
    loading.value = true
    error.value = ''
    const same = run === runA.value
    runA.value = run
    dataA.value = await load(run)
    loading.value = false
    if (!same) {
      selected.value = null
      tokensA.value = null
      tokensB.value = null
      answerIndex.value = null
      answerA.value = null
      answerB.value = null
    }
    if (same && selected.value !== null) await select(selected.value)
  }

  /** Run B beside run A, or none. */
  async function compareWith(run: string | null): Promise<void> {
    runB.value = run
    dataB.value = run ? await load(run) : null
    if (sortKey.value === 'marginB' && !run) sortKey.value = 'margin'
    if (selected.value !== null) await select(selected.value)
    if (answerIndex.value !== null) await selectAnswer(answerIndex.value)
  }

  function sortBy(key: PairSortKey): void {
    if (sortKey.value === key) sortDir.value = sortDir.value === 'asc' ? 'desc' : 'asc'
    else {
      sortKey.value = key
      sortDir.value = key === 'index' ? 'asc' : 'desc'
    }
  }

  /** Selects pair `index` and fetches its tokens for both runs. */
  async function select(index: number): Promise<void> {
    selected.value = index
    error.value = ''
    try {
      const [a, b] = await Promise.all([
        runA.value ? api.runPairTokens({ run: runA.value, index }) : null,
        runB.value && dataB.value?.pairs?.[index] ? api.runPairTokens({ run: runB.value, index }) : null,
      ])
      if (selected.value !== index) return
      tokensA.value = a
      tokensB.value = b
    } catch (e) {
      error.value = errorText(e)
    }
  }

  /** Moves the selection through the visible rows (keyboard ↑ ↓). */
  function step(delta: number): void {
    const list = rows.value
    if (!list.length) return
    const at = list.findIndex((r) => r.a.index === selected.value)
    const next = list[Math.max(0, Math.min(list.length - 1, at < 0 ? 0 : at + delta))]!
    void select(next.a.index)
  }

  async function selectAnswer(index: number): Promise<void> {
    answerIndex.value = index
    error.value = ''
    try {
      const hasB = runB.value && dataB.value?.answers.some((x) => x.index === index)
      const [a, b] = await Promise.all([
        runA.value ? api.runAnswerTokens({ run: runA.value, index }) : null,
        hasB ? api.runAnswerTokens({ run: runB.value!, index }) : null,
      ])
      if (answerIndex.value !== index) return
      answerA.value = a
      answerB.value = b
    } catch (e) {
      error.value = errorText(e)
    }
  }

  return {
    runA,
    runB,
    dataA,
    dataB,
    error,
    loading,
    tab,
    filter,
    query,
    sortKey,
    sortDir,
    selected,
    tokensA,
    tokensB,
    answerIndex,
    answerA,
    answerB,
    rows,
    summaryA,
    summaryB,
    current,
    currentB,
    open,
    compareWith,
    sortBy,
    select,
    step,
    selectAnswer,
  }
})
