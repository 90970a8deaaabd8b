// The preference dataset: the opened file, a searchable paged view of its rows, the pairs that data_size and
// support_ratio produce (asked again whenever they change), and the test prompts found beside it.
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { DatasetOpened, DatasetRowsPage, PairsPage, PromptsOpened } from '@shared/api/contract'
import { ApiError } from '@shared/api/contract'
import { errorText, useApi } from '../api/client'
import { insidePath } from '../lib/paths'
import { useAppStore } from './app'
import { useParamsStore } from './params'

const STORAGE_KEY = 'dpo-studio.datasetPath'
const PROMPTS_KEY = 'dpo-studio.promptsPath'
export const PAGE_SIZE = 10

export const useDatasetStore = defineStore('dataset', () => {
  const api = useApi()
  const params = useParamsStore()
  const path = ref(localStorage.getItem(STORAGE_KEY) ?? '')
  const opened = ref<DatasetOpened | null>(null)
  const error = ref('')
  /** Row / field of a data error, when the service named them. */
  const errorWhere = ref<{ row?: number; field?: string; file?: string } | null>(null)
  const query = ref('')
  const page = ref(0)
  const rows = ref<DatasetRowsPage | null>(null)
  const pairsPage = ref(0)
  const pairs = ref<PairsPage | null>(null)
  const pairsError = ref('')
  /** The data_size and support_ratio the pairs on screen were made with (the last valid values). */
  const pairsFor = ref<{ dataSize: number; supportRatio: number } | null>(null)
  const prompts = ref<PromptsOpened | null>(null)
  const promptsPath = ref('')
  /** Whether the test prompts are the user's choice (a file, or none) rather than test_prompt.json beside the data. */
  const promptsChosen = ref(false)
  const promptsError = ref('')
  /** A prompts file chosen in an earlier session, reopened with the first dataset this session opens. */
  let restorePrompts = localStorage.getItem(PROMPTS_KEY) ?? ''
  const busy = ref(false)

  async function open(p: string): Promise<boolean> {
    busy.value = true
    error.value = ''
    errorWhere.value = null
    try {
      opened.value = await api.datasetOpen({ path: p })
      path.value = p
      query.value = ''
      page.value = 0
      pairsPage.value = 0
      // Test prompts come with the dataset: test_prompt.json beside it, or none (never the previous dataset's).
      useBesidePrompts()
      if (restorePrompts) {
        const file = restorePrompts
        restorePrompts = ''
        await openPrompts(file)
      }
      await Promise.all([loadRows(), loadPairs()])
      return true
    } catch (e) {
      // The dataset already open stays open (and its rows, pairs and test prompts); the error says why the other did not.
      error.value = errorText(e)
      if (e instanceof ApiError) errorWhere.value = e.details as { row?: number; field?: string; file?: string }
      return false
    } finally {
      busy.value = false
    }
  }

  /** The user's own prompts file in place of the dataset's (a file that does not open changes nothing). */
  async function openPrompts(p: string): Promise<boolean> {
    promptsError.value = ''
    try {
      prompts.value = await api.promptsOpen({ path: p })
      promptsPath.value = p
      promptsChosen.value = true
      return true
    } catch (e) {
      promptsError.value = errorText(e)
      return false
    }
  }
  /** No test prompts: runs train and export without answering any. */
  function clearPrompts(): void {
    prompts.value = null
    promptsPath.value = ''
    promptsChosen.value = true
    promptsError.value = ''
  }
  /** Back to the dataset's own test_prompt.json (or none when it has none). */
  function useBesidePrompts(): void {
    const own = opened.value?.testPrompts ?? null
    prompts.value = own
    promptsPath.value = own?.path ?? ''
    promptsChosen.value = false
    promptsError.value = ''
  }

  async function loadRows(): Promise<void> {
    if (!opened.value) return
    rows.value = await api.datasetRows({
      datasetId: opened.value.datasetId,
      query: query.value,
      offset: page.value * PAGE_SIZE,
      limit: PAGE_SIZE,
    })
  }

  let pairsSeq = 0
  async function loadPairs(): Promise<void> {
    if (!opened.value) return
    const dataSize = Number(params.values.dataSize)
    const supportRatio = Number(params.values.supportRatio)
    // The view names the field in error; the preview keeps the last valid values meanwhile.
    if (params.errors.dataSize || params.errors.supportRatio) return
    const seq = ++pairsSeq
    try {
      const r = await api.datasetPairs({
        datasetId: opened.value.datasetId,
        dataSize,
        supportRatio,
        offset: pairsPage.value * PAGE_SIZE,
        limit: PAGE_SIZE,
      })
      if (seq !== pairsSeq) return
      pairs.value = r
      pairsFor.value = { dataSize, supportRatio }
      pairsError.value = ''
    } catch (e) {
      if (seq === pairsSeq) pairsError.value = errorText(e)
    }
  }

  let queryTimer: ReturnType<typeof setTimeout> | undefined
  watch(query, () => {
    clearTimeout(queryTimer)
    queryTimer = setTimeout(() => {
      page.value = 0
      void loadRows()
    }, 150)
  })
  watch(page, () => void loadRows())
  watch(pairsPage, () => void loadPairs())
  watch(
    () => [params.values.dataSize, params.values.supportRatio],
    () => {
      pairsPage.value = 0
      void loadPairs()
    },
  )
  // The bundled sample dataset is not remembered (it is the default, and the app's folder may move).
  const bundled = (p: string) => insidePath(p, useAppStore().info?.demo?.datasetDir)
  watch(path, (p) => localStorage.setItem(STORAGE_KEY, bundled(p) ? '' : p))
  // Only a prompts file the user chose is remembered; the dataset's own come back with it.
  watch([promptsPath, promptsChosen], ([p, chosen]) =>
    localStorage.setItem(PROMPTS_KEY, chosen && !bundled(p) ? p : ''),
  )

  const pageCount = computed(() => Math.max(1, Math.ceil((rows.value?.matched ?? 0) / PAGE_SIZE)))
  const pairsPageCount = computed(() => Math.max(1, Math.ceil((pairs.value?.total ?? 0) / PAGE_SIZE)))

  return {
    path,
    opened,
    error,
    errorWhere,
    query,
    page,
    rows,
    pairsPage,
    pairs,
    pairsError,
    pairsFor,
    prompts,
    promptsPath,
    promptsChosen,
    promptsError,
    busy,
    open,
    openPrompts,
    clearPrompts,
    useBesidePrompts,
    loadRows,
    loadPairs,
    pageCount,
    pairsPageCount,
  }
})
