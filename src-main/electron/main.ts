// Electron main process: one secure window (context isolation, sandbox, CSP, no navigation or new windows), the
// application menu, native dialogs, single-instance lock, the engine host in a utilityProcess, and one IPC handler
// per API method that validates its input (api/dispatch.ts) before it reaches the services.
import { app, BrowserWindow, dialog, ipcMain, Menu, session, shell, type MenuItemConstructorOptions } from 'electron'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { API_METHODS, IPC_EVENT_CHANNEL, IPC_PREFIX, type ApiEvent, type ViewName } from '../../src-shared/api/contract'
import { studioDataDir } from '../api/appPaths'
import { dispatch } from '../api/dispatch'
import { createApi, type Dialogs } from '../api/handlers'
import { openPolicy } from '../api/pathPolicy'
import { EngineHost } from '../host/engineHost'
import { utilitySpawner } from './utilityTransport'

const here = dirname(fileURLToPath(import.meta.url))
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; " +
  "connect-src 'self' ws://127.0.0.1:* ws://localhost:*; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

let mainWindow: BrowserWindow | null = null

function rendererUrl(): string {
  return process.env.ELECTRON_RENDERER_URL ?? pathToFileURL(join(here, '../renderer/index.html')).href
}

/** IPC is answered only for our own page, never for anything else that might end up in a frame. */
function trustedSender(url: string | undefined): boolean {
  if (!url) return false
  const base = rendererUrl()
  return (
    url === base ||
    url.startsWith(base.replace(/index\.html$/, '')) ||
    url.startsWith(process.env.ELECTRON_RENDERER_URL ?? '\0')
  )
}

function broadcast(e: ApiEvent): void {
  for (const w of BrowserWindow.getAllWindows()) if (!w.isDestroyed()) w.webContents.send(IPC_EVENT_CHANNEL, e)
}

function createWindow(): BrowserWindow {
  const win = new BrowserWindow({
    width: 1360,
    height: 900,
    minWidth: 980,
    minHeight: 640,
    title: 'DPO Studio',
    backgroundColor: '#f7f8fa',
    webPreferences: {
      preload: join(here, '../preload/index.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      spellcheck: false,
    },
  })
  win.webContents.setWindowOpenHandler(({ url }) => {
    if (/^https:\/\//.test(url)) void shell.openExternal(url)
    return { action: 'deny' }
  })
  win.webContents.on('will-navigate', (event) => event.preventDefault())
  win.webContents.on('will-redirect', (event) => event.preventDefault())
  win.webContents.on('will-attach-webview', (event) => event.preventDefault())
  void win.loadURL(rendererUrl())
  return win
}

const dialogs: Dialogs = {
  async open(opts) {
    const properties: Array<'openFile' | 'openDirectory'> =
      opts.kind === 'file'
        ? ['openFile']
        : opts.kind === 'directory'
          ? ['openDirectory']
          : ['openFile', 'openDirectory']
    const r = await dialog.showOpenDialog(mainWindow ?? BrowserWindow.getAllWindows()[0]!, {
      title: opts.title,
      properties,
      ...(opts.defaultPath ? { defaultPath: opts.defaultPath } : {}),
      ...(opts.filters ? { filters: opts.filters } : {}),
    })
    return r.canceled ? null : (r.filePaths[0] ?? null)
  },
  async save(opts) {
    const r = await dialog.showSaveDialog(mainWindow ?? BrowserWindow.getAllWindows()[0]!, {
      title: opts.title,
      ...(opts.defaultPath ? { defaultPath: opts.defaultPath } : {}),
    })
    return r.canceled ? null : (r.filePath ?? null)
  },
}

function buildMenu(): void {
  const send = (action: ViewName | 'openModel' | 'openDataset') => () => broadcast({ type: 'menu', action })
  const view = (label: string, v: ViewName, key: string): MenuItemConstructorOptions => ({
    label,
    accelerator: `CmdOrCtrl+${key}`,
    click: send(v),
  })
  const template: MenuItemConstructorOptions[] = [
    ...(process.platform === 'darwin' ? [{ role: 'appMenu' as const }] : []),
    {
      label: 'File',
      submenu: [
        { label: 'Open Model Folder…', accelerator: 'CmdOrCtrl+O', click: send('openModel') },
        { label: 'Open Dataset…', accelerator: 'CmdOrCtrl+Shift+O', click: send('openDataset') },
        { type: 'separator' },
        { label: 'Show Runs Folder', click: () => void shell.openPath(join(studioDataDir(), 'runs')) },
        { type: 'separator' },
        { role: 'quit' },
      ],
    },
    { role: 'editMenu' },
    {
      label: 'View',
      submenu: [
        view('Models', 'models', '1'),
        view('Dataset', 'dataset', '2'),
        view('Parameters', 'params', '3'),
        view('Training Run', 'run', '4'),
        view('Responses', 'responses', '5'),
        view('Pairs', 'pairs', '6'),
        view('Sweep', 'sweep', '7'),
        view('Export', 'export', '8'),
        view('Run History', 'history', '9'),
        { type: 'separator' },
        { role: 'resetZoom' },
        { role: 'zoomIn' },
        { role: 'zoomOut' },
        ...(app.isPackaged
          ? []
          : [{ type: 'separator' as const }, { role: 'reload' as const }, { role: 'toggleDevTools' as const }]),
      ],
    },
    { role: 'windowMenu' },
  ]
  Menu.setApplicationMenu(Menu.buildFromTemplate(template))
}

if (!app.requestSingleInstanceLock()) {
  app.quit()
} else {
  app.on('second-instance', () => {
    if (mainWindow?.isMinimized()) mainWindow.restore()
    mainWindow?.focus()
  })
  app.on('web-contents-created', (_e, contents) => {
    contents.on('will-navigate', (event) => event.preventDefault())
    contents.setWindowOpenHandler(() => ({ action: 'deny' }))
  })
  void app.whenReady().then(() => {
    session.defaultSession.webRequest.onHeadersReceived((details, callback) => {
      callback({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [CSP] } })
    })
    session.defaultSession.setPermissionRequestHandler((_wc, _permission, callback) => callback(false))

    const engine = new EngineHost({
      spawn: utilitySpawner(join(here, 'host.js')),
      onStatus: (status) => broadcast({ type: 'host', status }),
    })
    engine.start()
    const api = createApi({
      platform: 'electron',
      version: app.getVersion(),
      dataDir: studioDataDir(),
      host: engine,
      policy: openPolicy(),
      emit: broadcast,
      dialogs,
    })
    for (const method of API_METHODS) {
      ipcMain.handle(IPC_PREFIX + method, (event, input: unknown) => {
        if (!trustedSender(event.senderFrame?.url))
          return { ok: false, error: { code: 'E_FORBIDDEN', message: 'untrusted sender' } }
        return dispatch(api.handlers, method, input)
      })
    }
    buildMenu()
    mainWindow = createWindow()
    // Quitting during a run: the run stops cleanly and records it (at most 10 s), then the engine goes.
    let quitting = false
    app.on('before-quit', (event) => {
      if (quitting) return
      quitting = true
      event.preventDefault()
      void api.jobs.shutdown(10_000).finally(() => void engine.stop().finally(() => app.quit()))
    })
  })
  app.on('window-all-closed', () => app.quit())
}
