// Puts the web host together: engine host (node child process), API handlers with the rooted path policy, and the
// HTTP/WebSocket server. Used by `dpo-studio serve` and by the E2E tests.
import { homedir } from 'node:os'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ApiEvent, FsRoot } from '../../src-shared/api/contract'
import { extraRoots, rendererDir, resourcesDir, studioDataDir } from '../api/appPaths'
import { createApi } from '../api/handlers'
import { rootedPolicy } from '../api/pathPolicy'
import { appRoot } from '../addon/loadAddon'
import { EngineHost } from '../host/engineHost'
import { forkSpawner } from '../host/forkTransport'
import { hfHubCacheDir } from '../services/models/hfCache'
import { StudioError } from '../services/errors'
import { startWebHost, type WebHost } from './server'

export interface ServeOptions {
  port?: number
  token?: string
  dataDir?: string
  rendererDir?: string
  /** Extra readable roots (besides $DPO_STUDIO_ROOTS). */
  roots?: string[]
  log?: (line: string) => void
}

export interface RunningWebHost extends WebHost {
  engine: EngineHost
  stop(): Promise<void>
}

export function webRoots(dataDir: string, extra: string[] = []): FsRoot[] {
  return [
    { label: 'Home', path: homedir() },
    { label: 'Hugging Face cache', path: hfHubCacheDir() },
    { label: 'DPO Studio data', path: dataDir },
    { label: 'Bundled resources', path: resourcesDir() },
    ...[...extraRoots(), ...extra].map((p) => ({ label: p, path: p })),
  ]
}

export async function serveStudio(opts: ServeOptions = {}): Promise<RunningWebHost> {
  const dir = opts.rendererDir ?? rendererDir()
  if (!existsSync(join(dir, 'index.html')))
    throw new StudioError(
      'E_NO_RENDERER',
      `the renderer is not built (${join(dir, 'index.html')} is missing): run \`npx electron-vite build\``,
    )
  const dataDir = opts.dataDir ?? studioDataDir()
  mkdirSync(dataDir, { recursive: true })
  let web: WebHost | null = null
  const emit = (e: ApiEvent) => web?.broadcast(e)
  const engine = new EngineHost({
    spawn: forkSpawner(),
    onStatus: (status) => {
      emit({ type: 'host', status })
      if (status.state === 'crashed' || status.state === 'failed') opts.log?.(`engine host: ${status.message}`)
    },
  })
  engine.start()
  const version = (JSON.parse(readFileSync(join(appRoot(), 'package.json'), 'utf8')) as { version: string }).version
  const api = createApi({
    platform: 'web',
    version,
    dataDir,
    host: engine,
    policy: rootedPolicy(webRoots(dataDir, opts.roots)),
    emit,
    dialogs: null,
  })
  web = await startWebHost({
    ...(opts.port !== undefined ? { port: opts.port } : {}),
    ...(opts.token ? { token: opts.token } : {}),
    rendererDir: dir,
    handlers: api.handlers,
  })
  const host = web
  return {
    ...host,
    engine,
    async stop() {
      // A run in progress stops cleanly and records that it was cancelled, before the engine goes (issue 10 item 6).
      await api.jobs.shutdown()
      await host.close()
      await engine.stop()
    },
  }
}
