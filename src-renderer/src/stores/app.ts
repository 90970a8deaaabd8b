// App-wide state: the current view, app info (platform, folders, training available), host status, notices.
import { defineStore } from 'pinia'
import { ref } from 'vue'
import type { AppInfo, HostStatus, ViewName } from '@shared/api/contract'
import { connection, errorText, useApi } from '../api/client'

export interface Notice {
  id: number
  kind: 'info' | 'error' | 'success'
  text: string
}

export const useAppStore = defineStore('app', () => {
  const api = useApi()
  const view = ref<ViewName>('models')
  const info = ref<AppInfo | null>(null)
  const host = ref<HostStatus | null>(null)
  const notices = ref<Notice[]>([])
  /** Whether the page reaches its server (web mode; always true on the desktop). */
  const connected = ref(connection.up)
  connection.listeners.add((up) => (connected.value = up))
  /** Set by the desktop menu to open a picker in the view it shows. */
  const pendingAction = ref<'openModel' | 'openDataset' | null>(null)
  let nextId = 1

  function notify(kind: Notice['kind'], text: string, ms = kind === 'error' ? 9000 : 3500): void {
    const id = nextId++
    notices.value = [...notices.value.slice(-2), { id, kind, text }]
    setTimeout(() => dismiss(id), ms)
  }
  function dismiss(id: number): void {
    notices.value = notices.value.filter((n) => n.id !== id)
  }
  function go(v: ViewName): void {
    view.value = v
  }

  async function load(): Promise<void> {
    try {
      info.value = await api.appInfo(undefined)
    } catch (e) {
      notify('error', errorText(e))
    }
  }

  api.onEvent((e) => {
    if (e.type === 'host') {
      const was = host.value?.state
      host.value = e.status
      if (e.status.state === 'crashed' || e.status.state === 'failed') notify('error', e.status.message, 15000)
      else if (e.status.state === 'ready' && (was === 'crashed' || was === 'restarting'))
        notify('info', 'The engine process was restarted and is ready.')
    } else if (e.type === 'menu') {
      if (e.action === 'openModel') {
        view.value = 'models'
        pendingAction.value = 'openModel'
      } else if (e.action === 'openDataset') {
        view.value = 'dataset'
        pendingAction.value = 'openDataset'
      } else view.value = e.action
    }
  })

  return { view, info, host, notices, connected, pendingAction, notify, dismiss, go, load }
})
