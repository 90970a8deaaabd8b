// The built-in demo (appInfo.demo): on start, a session with no model or dataset of its own opens the demo model and
// the sample dataset with its test prompts; a remembered choice is reopened instead. While the demo model is in use
// the parameters follow the Demo preset, and a real model puts the notebook's values back (params.tuneFor).
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { DemoInfo } from '@shared/api/contract'
import { classifyStance, type StanceRow } from '@shared/data/stance'
import { useApi } from '../api/client'
import { insidePath, samePath } from '../lib/paths'
import { useAppStore } from './app'
import { useDatasetStore } from './dataset'
import { useModelsStore } from './models'
import { useParamsStore, type ModelKind } from './params'

export type Stance = 'support' | 'oppose'

export const useDemoStore = defineStore('demo', () => {
  const api = useApi()
  const app = useAppStore()
  const models = useModelsStore()
  const dataset = useDatasetStore()
  const params = useParamsStore()

  const info = computed<DemoInfo | null>(() => app.info?.demo ?? null)
  /** The demo model is the model in use. */
  const modelActive = computed(() => samePath(models.dir, info.value?.modelDir))
  /** The bundled sample dataset is the dataset in use. */
  const datasetActive = computed(() => !!dataset.opened && insidePath(dataset.opened.file, info.value?.datasetDir))
  /** The kind of model in use; null while none is chosen, its folder is being read, or the app info is not in. */
  const modelKind = computed<ModelKind | null>(() => {
    if (!app.info || !models.dir || models.busy === 'inspect') return null
    return modelActive.value ? 'demo' : 'real'
  })

  /**
   * Start of a session (after app.load): the remembered model and dataset, else the demo model and the sample
   * dataset (test_prompt.json beside it fills the test prompts).
   */
  async function startSession(): Promise<void> {
    const demo = info.value
    const tasks: Array<Promise<unknown>> = []
    if (models.dir) {
      if (!models.summary && models.busy !== 'inspect') tasks.push(models.select(models.dir))
    } else if (demo) tasks.push(models.select(demo.modelDir))
    if (dataset.path) {
      if (!dataset.opened && !dataset.busy) tasks.push(dataset.open(dataset.path))
    } else if (demo) tasks.push(dataset.open(demo.datasetDir))
    await Promise.all(tasks)
  }

  async function useDemoModel(): Promise<boolean> {
    return info.value ? models.select(info.value.modelDir) : false
  }
  async function useSampleDataset(): Promise<boolean> {
    return info.value ? dataset.open(info.value.datasetDir) : false
  }

  watch(
    modelKind,
    (k) => {
      if (k) params.tuneFor(k)
    },
    { immediate: true },
  )

  /** The sample's answers while it is open, to label each generated answer with the side of its nearest one. */
  const sampleRows = ref<StanceRow[] | null>(null)
  watch(
    () => (datasetActive.value ? (dataset.opened?.datasetId ?? null) : null),
    async (id) => {
      sampleRows.value = null
      if (!id) return
      try {
        const page = await api.datasetRows({ datasetId: id, query: '', offset: 0, limit: 500 })
        if (dataset.opened?.datasetId === id)
          sampleRows.value = page.rows.map((r) => ({ support: r.first, oppose: r.second }))
      } catch {
        /* no labels then */
      }
    },
    { immediate: true },
  )
  /** 'support' / 'oppose' for an answer while the sample dataset is open; null otherwise or for an empty answer. */
  function stanceOf(answer: string): Stance | null {
    return sampleRows.value?.length && answer.trim() ? classifyStance(answer, sampleRows.value) : null
  }

  return {
    info,
    modelActive,
    datasetActive,
    modelKind,
    sampleRows,
    startSession,
    useDemoModel,
    useSampleDataset,
    stanceOf,
  }
})
