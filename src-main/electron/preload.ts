// Preload bridge: exposes named functions on window.api (never ipcRenderer itself).
import { contextBridge, ipcRenderer } from 'electron'

contextBridge.exposeInMainWorld('api', {
  engineInfo: () => ipcRenderer.invoke('engine:info', undefined),
})
