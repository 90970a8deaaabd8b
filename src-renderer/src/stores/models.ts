// The model to work with: the chosen folder, what it holds (read without loading), models in the local Hugging Face
// cache, and, once loaded on the engine, the backend and resident memory it really uses.
import { defineStore } from 'pinia'
import { ref, watch } from 'vue'
import type { CachedModel, ModelLoaded, ModelSummary } from '@shared/api/contract'
import { errorText, useApi } from '../api/client'
import { samePath } from '../lib/paths'
import { useAppStore } from './app'

const STORAGE_KEY = 'dpo-studio.modelDir'

export const useModelsStore = defineStore('models', () => {
  const api = useApi()
  const dir = ref<string>(localStorage.getItem(STORAGE_KEY) ?? '')
  const summary = ref<ModelSummary | null>(null)
  const loaded = ref<ModelLoaded | null>(null)
  const cache = ref<CachedModel[]>([])
  const cacheDir = ref('')
  const error = ref('')
  const busy = ref<'' | 'inspect' | 'load' | 'cache'>('')
  const loadFraction = ref(0)

  async function refreshCache(): Promise<void> {
    busy.value = 'cache'
    try {
      const r = await api.modelsList(undefined)
      cache.value = r.models
      cacheDir.value = r.cacheDir
    } catch (e) {
      error.value = errorText(e)
    } finally {
      busy.value = ''
    }
  }

  /**
   * Makes `path` the model in use once it has been read. A folder that cannot be read changes nothing: the model in
   * use (and the parameters tuned for it) stays, and the error says why. A remembered folder that no longer opens
   * (session start, nothing in use yet) stays in the field with its error.
   */
  async function select(path: string): Promise<boolean> {
    busy.value = 'inspect'
    error.value = ''
    try {
      const next = await api.modelInspect({ dir: path })
      if (next.dir !== summary.value?.dir) loaded.value = null
      summary.value = next
      dir.value = next.dir
      return true
    } catch (e) {
      if (!summary.value) dir.value = path
      error.value = errorText(e)
      return false
    } finally {
      busy.value = ''
    }
  }

  async function load(quant: 'nf4' | 'none', backend: 'auto' | 'cpu' | 'cuda'): Promise<void> {
    if (!dir.value) return
    busy.value = 'load'
    loadFraction.value = 0
    error.value = ''
    try {
      loaded.value = await api.modelLoad({ dir: dir.value, quant, backend })
    } catch (e) {
      error.value = errorText(e)
    } finally {
      busy.value = ''
    }
  }

  api.onEvent((e) => {
    if (e.type === 'modelLoad' && busy.value === 'load') loadFraction.value = e.fraction
  })
  // The demo model is not remembered: it is the default anyway, and its path changes when the app moves (AppImage).
  watch(dir, (d) => localStorage.setItem(STORAGE_KEY, samePath(d, useAppStore().info?.demo?.modelDir) ? '' : d))
  return { dir, summary, loaded, cache, cacheDir, error, busy, loadFraction, refreshCache, select, load }
})
