// The preference dataset: the opened file, a searchable paged view of its rows, the pairs that data_size and
// support_ratio produce (asked again whenever they change), and the test prompts found beside it.
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { DatasetOpened, DatasetRowsPage, PairsPage, PromptsOpened } from '../../../src-main/api/contract'
import { ApiError } from '../../../src-main/api/contract'
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
  const prompts = ref<PromptsOpened | null>(null)
  const promptsPath = ref(localStorage.getItem(PROMPTS_KEY) ?? '')
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
      if (opened.value.testPrompts) {
        prompts.value = opened.value.testPrompts
        promptsPath.value = opened.value.testPrompts.path
      }
      await Promise.all([loadRows(), loadPairs()])
      return true
    } catch (e) {
      opened.value = null
      rows.value = null
      pairs.value = null
      error.value = errorText(e)
      if (e instanceof ApiError) errorWhere.value = e.details as { row?: number; field?: string; file?: string }
      return false
    } finally {
      busy.value = false
    }
  }

  async function openPrompts(p: string): Promise<void> {
    try {
      prompts.value = await api.promptsOpen({ path: p })
      promptsPath.value = p
    } catch (e) {
      error.value = errorText(e)
    }
  }

  async function loadRows(): Promise<void> {
    if (!opened.value) return
    rows.value = await api.datasetRows({ datasetId: opened.value.datasetId, query: query.value, offset: page.value * PAGE_SIZE, limit: PAGE_SIZE })
  }

  let pairsSeq = 0
  async function loadPairs(): Promise<void> {
    if (!opened.value) return
    const dataSize = Number(params.values.dataSize)
    const supportRatio = Number(params.values.supportRatio)
    if (params.errors.dataSize || params.errors.supportRatio) {
      pairsError.value = params.errors.dataSize ?? params.errors.supportRatio ?? ''
      return
    }
    const seq = ++pairsSeq
    try {
      const r = await api.datasetPairs({ datasetId: opened.value.datasetId, dataSize, supportRatio, offset: pairsPage.value * PAGE_SIZE, limit: PAGE_SIZE })
      if (seq !== pairsSeq) return
      pairs.value = r
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
  watch(promptsPath, (p) => localStorage.setItem(PROMPTS_KEY, bundled(p) ? '' : p))

  const pageCount = computed(() => Math.max(1, Math.ceil((rows.value?.matched ?? 0) / PAGE_SIZE)))
  const pairsPageCount = computed(() => Math.max(1, Math.ceil((pairs.value?.total ?? 0) / PAGE_SIZE)))

  return {
    path, opened, error, errorWhere, query, page, rows, pairsPage, pairs, pairsError, prompts, promptsPath, busy,
    open, openPrompts, loadRows, loadPairs, pageCount, pairsPageCount,
  }
})
