// Exports of a run: the comparison JSON in the notebook's shape (with a metadata file beside it) and the PEFT
// adapter, each to a path the user picks (defaults under the app's exports folder).
import { defineStore } from 'pinia'
import { ref } from 'vue'
import type { ExportResult } from '../../../src-main/api/contract'
import { errorText, useApi } from '../api/client'
import { downloadText } from '../lib/download'
import { useAppStore } from './app'

export const useExportStore = defineStore('export', () => {
  const api = useApi()
  const runId = ref('')
  const comparisonPath = ref('')
  const adapterDir = ref('')
  const busy = ref<'' | 'comparison' | 'adapter'>('')
  const results = ref<ExportResult[]>([])
  const error = ref('')

  /** Fills default targets for a run: <exports>/<run>/comparison.json and <exports>/<run>/adapter. */
  function target(run: string): void {
    const app = useAppStore()
    runId.value = run
    const base = app.info?.exportsDir ?? ''
    const sep = base.includes('\\') ? '\\' : '/'
    comparisonPath.value = base ? `${base}${sep}${run}${sep}comparison.json` : ''
    adapterDir.value = base ? `${base}${sep}${run}${sep}adapter` : ''
  }

  async function exportComparison(): Promise<ExportResult | null> {
    return run('comparison', () => api.exportComparison({ run: runId.value, path: comparisonPath.value }))
  }
  async function exportAdapter(): Promise<ExportResult | null> {
    return run('adapter', () => api.exportAdapter({ run: runId.value, dir: adapterDir.value }))
  }

  async function run(kind: 'comparison' | 'adapter', f: () => Promise<ExportResult>): Promise<ExportResult | null> {
    busy.value = kind
    error.value = ''
    try {
      const r = await f()
      results.value = [r, ...results.value.filter((x) => x.path !== r.path)]
      useAppStore().notify('success', `Exported ${kind === 'comparison' ? 'the comparison' : 'the adapter'} to ${r.path}`)
      return r
    } catch (e) {
      error.value = errorText(e)
      return null
    } finally {
      busy.value = ''
    }
  }

  /** Web mode: the exported file (on the server) as a browser download. */
  async function download(path: string): Promise<void> {
    try {
      const f = await api.exportRead({ path })
      downloadText(f.name, f.text)
    } catch (e) {
      error.value = errorText(e)
    }
  }

  return { download, runId, comparisonPath, adapterDir, busy, results, error, target, exportComparison, exportAdapter }
})
