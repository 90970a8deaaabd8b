// Choosing files and folders: native dialogs in the desktop app; in a browser, the server-side folder browser
// (limited to the web host's roots). Both end in a path string the views pass to the API.
import { ref } from 'vue'
import { errorText, useApi } from '../api/client'
import { useAppStore } from '../stores/app'

export type PickKind = 'file' | 'directory' | 'fileOrDirectory' | 'save'

/** The one open folder-browser dialog (web mode), shared by every path field. */
export const browser = ref<{
  kind: PickKind
  title: string
  start: string
  resolve: (p: string | null) => void
} | null>(null)

export function usePathPicker() {
  const api = useApi()
  const app = useAppStore()

  async function pick(kind: PickKind, title: string, start = ''): Promise<string | null> {
    if (app.info?.nativeDialogs) {
      try {
        if (kind === 'save') return (await api.dialogSave({ title, ...(start ? { defaultPath: start } : {}) })).path
        return (await api.dialogOpen({ kind, title, ...(start ? { defaultPath: start } : {}) })).path
      } catch (e) {
        app.notify('error', errorText(e))
        return null
      }
    }
    if (kind === 'save') {
      // Web mode: choose the folder; the file keeps its name.
      const name = start.split(/[\\/]/).pop() || 'comparison.json'
      const startDir = start.slice(0, Math.max(0, start.length - name.length - 1))
      const dir = await new Promise<string | null>((resolve) => {
        browser.value = { kind: 'directory', title, start: startDir, resolve }
      })
      return dir ? `${dir.replace(/[\\/]$/, '')}/${name}` : null
    }
    return new Promise((resolve) => {
      browser.value = { kind, title, start, resolve }
    })
  }

  return { pick }
}
