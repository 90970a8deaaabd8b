// The renderer's one way to the main side: window.api in Electron, the WebSocket bridge in a browser. Envelopes
// are unwrapped here, so callers get results or ApiError (with the service's code and details).
import { API_METHOD_NAMES } from '@shared/api/methods'
import { ApiError, type ApiEvent, type BridgeApi, type StudioApi } from '@shared/api/contract'
import { createWsBridge, takeToken } from './wsClient'

export function unwrapBridge(bridge: BridgeApi): StudioApi {
  const api: Record<string, unknown> = {}
  for (const m of API_METHOD_NAMES) {
    api[m] = async (input: unknown) => {
      const env = await (bridge[m] as (i: unknown) => Promise<import('@shared/api/contract').Envelope>)(input)
      if (!env.ok) throw new ApiError(env.error)
      return env.result
    }
  }
  api.onEvent = (l: (e: ApiEvent) => void) => bridge.onEvent(l)
  return api as StudioApi
}

let instance: StudioApi | null = null
/** Connection state of the web bridge (always up in Electron), and a way to retry at once. */
export const connection = { up: true, listeners: new Set<(up: boolean) => void>(), retry: () => {} }

export function useApi(): StudioApi {
  if (instance) return instance
  if (window.api) instance = unwrapBridge(window.api)
  else {
    const token = takeToken()
    const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:'
    const bridge = createWsBridge(`${proto}//${window.location.host}/api?token=${encodeURIComponent(token)}`, (up) => {
      if (up === connection.up) return
      connection.up = up
      connection.listeners.forEach((l) => l(up))
    })
    connection.retry = () => bridge.reconnectNow()
    instance = unwrapBridge(bridge)
  }
  return instance
}

/** Tests install a fake API. */
export function setApi(api: StudioApi | null): void {
  instance = api
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
