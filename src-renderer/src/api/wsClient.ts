// The typed API over the web host's WebSocket (same contract as the preload bridge): request ids, envelopes,
// pushed events, and reconnection with the access token the page was opened with.
import { API_METHOD_NAMES } from '@shared/api/methods'
import type { ApiEvent, BridgeApi, Envelope, WsServerFrame } from '@shared/api/contract'

const TOKEN_KEY = 'dpo-studio-token'

/** The token from ?token= (kept in sessionStorage, then removed from the address bar). */
export function takeToken(): string {
  const url = new URL(window.location.href)
  const fromUrl = url.searchParams.get('token')
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl)
    url.searchParams.delete('token')
    window.history.replaceState(null, '', url.pathname + url.search + url.hash)
  }
  return fromUrl ?? sessionStorage.getItem(TOKEN_KEY) ?? ''
}

/** What a call made while the server is unreachable answers at once (instead of waiting for it to come back). */
export const DISCONNECTED = {
  code: 'E_DISCONNECTED',
  message: 'not connected to the DPO Studio server; the page reconnects by itself when it is back',
}

export interface WsBridge extends BridgeApi {
  /** Tries to reconnect now instead of at the next scheduled attempt. */
  reconnectNow(): void
}

export function createWsBridge(wsUrl: string, onConnection?: (up: boolean) => void): WsBridge {
  let ws: WebSocket | null = null
  let nextId = 1
  let retry = 0
  /** Set once the first connection opened: from then on, a lost connection fails calls at once. */
  let wasUp = false
  let timer: ReturnType<typeof setTimeout> | undefined
  const pending = new Map<number, (env: Envelope) => void>()
  const queue: string[] = []
  const listeners = new Set<(e: ApiEvent) => void>()

  const connect = () => {
    clearTimeout(timer)
    const sock = new WebSocket(wsUrl)
    ws = sock
    sock.onopen = () => {
      retry = 0
      wasUp = true
      onConnection?.(true)
      for (const q of queue.splice(0)) sock.send(q)
    }
    sock.onmessage = (m) => {
      const frame = JSON.parse(String(m.data)) as WsServerFrame
      if ('event' in frame) listeners.forEach((l) => l(frame.event))
      else {
        const done = pending.get(frame.id)
        pending.delete(frame.id)
        done?.(frame.ok ? { ok: true, result: frame.result } : { ok: false, error: frame.error })
      }
    }
    sock.onclose = () => {
      if (ws !== sock) return
      onConnection?.(false)
      for (const [, done] of pending)
        done({ ok: false, error: { code: 'E_DISCONNECTED', message: 'lost the connection to the DPO Studio server' } })
      pending.clear()
      ws = null
      // Every 250 ms at first, then at most every 3 s: a server that comes back is found within seconds.
      timer = setTimeout(connect, Math.min(3000, 250 * 2 ** retry++))
    }
  }
  connect()

  const call = (method: string, input: unknown) =>
    new Promise<Envelope>((resolve) => {
      if (wasUp && ws?.readyState !== WebSocket.OPEN) return resolve({ ok: false, error: DISCONNECTED })
      const id = nextId++
      pending.set(id, resolve)
      const text = JSON.stringify({ id, method, input })
      if (ws?.readyState === WebSocket.OPEN) ws.send(text)
      else queue.push(text)
    })

  const bridge: Record<string, unknown> = {}
  for (const m of API_METHOD_NAMES) bridge[m] = (input: unknown) => call(m, input)
  bridge.onEvent = (l: (e: ApiEvent) => void) => {
    listeners.add(l)
    return () => void listeners.delete(l)
  }
  bridge.reconnectNow = () => {
    if (ws) return
    retry = 0
    connect()
  }
  return bridge as unknown as WsBridge
}
