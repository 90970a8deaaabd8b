// "Where next" exports of a run (docs/where-next.md): the merged model, GGUF files for llama.cpp / Ollama, the
// TRL + accelerate project for a cluster, and an adapter trained elsewhere brought back as a run. Each goes to a
// folder the user picks; the API refuses folders that are not an earlier export of the same kind and asks
// (E_EXPORT_EXISTS) before replacing one, which this store turns into a question for the user.
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { ApiError, type ExportResult } from '@shared/api/contract'
import { DEFAULT_GGUF_FILE_TYPES, type GgufFileType, type MERGE_BASES } from '@shared/params/enumValues'
import { errorText, useApi } from '../api/client'
import { useAppStore } from './app'
import { useHistoryStore } from './history'

export type ElsewhereKind = 'merged' | 'gguf' | 'project'
export { GGUF_FILE_TYPES as GGUF_TYPES } from '@shared/params/enumValues'

export const useExportElsewhereStore = defineStore('exportElsewhere', () => {
  const api = useApi()
  const runId = ref('')
  const dirs = ref<Record<ElsewhereKind, string>>({ merged: '', gguf: '', project: '' })
  const mergeInto = ref<(typeof MERGE_BASES)[number]>('auto')
  const ggufTypes = ref<GgufFileType[]>([...DEFAULT_GGUF_FILE_TYPES])
  const gpus = ref<number | null>(null)
  const adapterDir = ref('')
  const busy = ref<'' | ElsewhereKind | 'import'>('')
  const error = ref('')
  const done = ref<Partial<Record<ElsewhereKind, ExportResult>>>({})
  /** The export waiting for "replace the earlier export?" (or ''). */
  const confirm = ref<'' | ElsewhereKind>('')
  const imported = ref<{ runId: string; path: string } | null>(null)

  /** Default folders for a run: <exports>/<run>/{merged-model,gguf,project}. */
  function target(run: string): void {
    runId.value = run
    const base = useAppStore().info?.exportsDir ?? ''
    const sep = base.includes('\\') ? '\\' : '/'
    const at = (name: string) => (base ? `${base}${sep}${run}${sep}${name}` : '')
    dirs.value = { merged: at('merged-model'), gguf: at('gguf'), project: at('project') }
    done.value = {}
    confirm.value = ''
    error.value = ''
  }

  async function exportTo(kind: ElsewhereKind, overwrite = false): Promise<ExportResult | null> {
    confirm.value = ''
    busy.value = kind
    error.value = ''
    const base = { run: runId.value, dir: dirs.value[kind], overwrite }
    try {
      const r =
        kind === 'merged'
          ? await api.exportMerged({ ...base, mergeInto: mergeInto.value })
          : kind === 'gguf'
            ? await api.exportGguf({ ...base, types: [...ggufTypes.value] })
            : await api.exportProject({ ...base, ...(gpus.value ? { gpus: gpus.value } : {}) })
      done.value = { ...done.value, [kind]: r }
      useAppStore().notify('success', `Exported to ${r.path}`)
      return r
    } catch (e) {
      if (e instanceof ApiError && e.code === 'E_EXPORT_EXISTS') confirm.value = kind
      else error.value = errorText(e)
      return null
    } finally {
      busy.value = ''
    }
  }

  async function importAdapter(): Promise<void> {
    busy.value = 'import'
    error.value = ''
    try {
      imported.value = await api.importAdapter({ run: runId.value, adapterDir: adapterDir.value })
      await useHistoryStore().refresh()
      useAppStore().notify('success', `Imported as run ${imported.value.runId}`)
    } catch (e) {
      error.value = errorText(e)
    } finally {
      busy.value = ''
    }
  }

  return {
    runId,
    dirs,
    mergeInto,
    ggufTypes,
    gpus,
    adapterDir,
    busy,
    error,
    done,
    confirm,
    imported,
    target,
    exportTo,
    importAdapter,
  }
})
