// Exports of a run: the comparison JSON in the notebook's shape (with a metadata file beside it) and the PEFT
// adapter, each to a path the user picks (defaults under the app's exports folder).
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { ApiError, type ExportResult } from '@shared/api/contract'
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
  /** The comparison target that holds an earlier export, waiting for the user to say "replace" (or ''). */
  const confirmOverwrite = ref('')

  /** Fills default targets for a run: <exports>/<run>/comparison.json and <exports>/<run>/adapter. */
  function target(run: string): void {
    const app = useAppStore()
    runId.value = run
    const base = app.info?.exportsDir ?? ''
    const sep = base.includes('\\') ? '\\' : '/'
    comparisonPath.value = base ? `${base}${sep}${run}${sep}comparison.json` : ''
    adapterDir.value = base ? `${base}${sep}${run}${sep}adapter` : ''
  }

  /** Exports the comparison; over an earlier export only once the user confirmed (the API refuses otherwise). */
  async function exportComparison(overwrite = false): Promise<ExportResult | null> {
    confirmOverwrite.value = ''
    const path = comparisonPath.value
    return run(
      'comparison',
      () => api.exportComparison({ run: runId.value, path, overwrite }),
      (e) => {
        if (!(e instanceof ApiError) || e.code !== 'E_EXPORT_EXISTS') return false
        confirmOverwrite.value = path
        return true
      },
    )
  }
  function cancelOverwrite(): void {
    confirmOverwrite.value = ''
  }
  async function exportAdapter(): Promise<ExportResult | null> {
    return run('adapter', () => api.exportAdapter({ run: runId.value, dir: adapterDir.value }))
  }

  /** `ask` handles an error by asking the user instead of showing it (true = handled). */
  async function run(
    kind: 'comparison' | 'adapter',
    f: () => Promise<ExportResult>,
    ask?: (e: unknown) => boolean,
  ): Promise<ExportResult | null> {
    busy.value = kind
    error.value = ''
    try {
      const r = await f()
      results.value = [r, ...results.value.filter((x) => x.path !== r.path)]
      useAppStore().notify(
        'success',
        `Exported ${kind === 'comparison' ? 'the comparison' : 'the adapter'} to ${r.path}`,
      )
      return r
    } catch (e) {
      if (!ask?.(e)) error.value = errorText(e)
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

  return {
    download,
    runId,
    comparisonPath,
    adapterDir,
    busy,
    results,
    error,
    confirmOverwrite,
    target,
    exportComparison,
    cancelOverwrite,
    exportAdapter,
  }
})
