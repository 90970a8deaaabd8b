// Preload bridge (sandboxed, CommonJS): window.api gets one named function per API method plus onEvent; the page
// never sees ipcRenderer. Results are envelopes ({ok, result} | {ok, error}); the renderer's client unwraps them.
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron'
import type { ApiEvent } from '../../src-shared/api/contract'
import { API_METHOD_NAMES, IPC_EVENT_CHANNEL, IPC_PREFIX } from '../../src-shared/api/methods'

const api: Record<string, unknown> = {}
for (const method of API_METHOD_NAMES) api[method] = (input: unknown) => ipcRenderer.invoke(IPC_PREFIX + method, input)
api.onEvent = (listener: (e: ApiEvent) => void) => {
  const wrapped = (_event: IpcRendererEvent, e: ApiEvent) => listener(e)
  ipcRenderer.on(IPC_EVENT_CHANNEL, wrapped)
  return () => void ipcRenderer.removeListener(IPC_EVENT_CHANNEL, wrapped)
}

contextBridge.exposeInMainWorld('api', api)
