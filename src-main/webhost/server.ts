// The web host (`dpo-studio serve`): the built renderer and the typed API over WebSocket on 127.0.0.1 only, behind
// a random access token. The token arrives in the printed URL (?token=); the first page load turns it into a
// SameSite=Strict HttpOnly cookie so the page's own assets load. Every other request without the token gets 401,
// WebSocket upgrades without it (or from another origin / Host) are refused, and only out/renderer is served.
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'
import type { ApiEvent, WsClientFrame, WsServerFrame } from '../../src-shared/api/contract'
import { dispatch, type ApiHandlers } from '../api/dispatch'
import { readStatic, resolveStatic } from './staticFiles'

export const COOKIE = 'dpo_studio_token'

export function webCsp(port: number): string {
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    `connect-src 'self' ws://127.0.0.1:${port} ws://localhost:${port}`,
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ')
}

export interface WebHostOptions {
  port?: number
  token?: string
  rendererDir: string
  /** Built per connection set: the API's handlers, and a hook to receive its events. */
  handlers: ApiHandlers
}

export interface WebHost {
  url: string
  port: number
  token: string
  /** Sends an event to every connected browser tab. */
  broadcast(e: ApiEvent): void
  close(): Promise<void>
}

function tokenEquals(a: string | null | undefined, b: string): boolean {
  if (!a) return false
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

function cookieToken(req: IncomingMessage): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=')
    if (k === COOKIE) return v.join('=')
  }
  return null
}

export async function startWebHost(opts: WebHostOptions): Promise<WebHost> {
  const token = opts.token ?? randomBytes(24).toString('base64url')
  let port = 0
  const allowedHosts = () => new Set([`127.0.0.1:${port}`, `localhost:${port}`])
  const allowedOrigins = () => new Set([`http://127.0.0.1:${port}`, `http://localhost:${port}`])

  const securityHeaders = (res: ServerResponse) => {
    res.setHeader('Content-Security-Policy', webCsp(port))
    res.setHeader('X-Content-Type-Options', 'nosniff')
    res.setHeader('Referrer-Policy', 'no-referrer')
    res.setHeader('X-Frame-Options', 'DENY')
    res.setHeader('Cache-Control', 'no-store')
  }

  const server = createServer((req, res) => {
    void (async () => {
      securityHeaders(res)
      // DNS rebinding: a page on another name that resolves to 127.0.0.1 must not reach us.
      if (!allowedHosts().has(req.headers.host ?? '')) {
        res.writeHead(421).end('wrong host')
        return
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD' }).end()
        return
      }
      const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`)
      const queryToken = url.searchParams.get('token')
      const authorized = tokenEquals(queryToken, token) || tokenEquals(cookieToken(req), token)
      if (!authorized) {
        res
          .writeHead(401, { 'Content-Type': 'text/plain; charset=utf-8' })
          .end('401: open the URL that `dpo-studio serve` printed (it carries the access token)\n')
        return
      }
      if (tokenEquals(queryToken, token))
        res.setHeader('Set-Cookie', `${COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`)
      const file = resolveStatic(opts.rendererDir, url.pathname)
      if (!file) {
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('404\n')
        return
      }
      const { body, type } = await readStatic(file)
      res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length })
      res.end(req.method === 'HEAD' ? undefined : body)
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end()
    })
  })

  const wss = new WebSocketServer({ noServer: true, maxPayload: 4 * 2 ** 20 })
  const clients = new Set<WebSocket>()
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    // A socket error (reset, garbage) concerns this connection only; without a listener it would end the process.
    socket.on('error', () => socket.destroy())
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`)
    const okToken = tokenEquals(url.searchParams.get('token'), token) || tokenEquals(cookieToken(req), token)
    const okHost = allowedHosts().has(req.headers.host ?? '')
    // Browsers always send Origin on WebSocket upgrades; cross-site pages must not ride the cookie.
    const origin = req.headers.origin
    const okOrigin = origin === undefined || allowedOrigins().has(origin)
    if (url.pathname !== '/api' || !okToken || !okHost || !okOrigin) {
      socket.write(
        `HTTP/1.1 ${okToken ? 403 : 401} ${okToken ? 'Forbidden' : 'Unauthorized'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
      )
      socket.destroy()
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      clients.add(ws)
      ws.on('close', () => clients.delete(ws))
      // Protocol errors (oversize, invalid UTF-8, unmasked or reserved frames, RSV bits): ws closes this connection
      // with the matching code; the host, its other tabs and any run in progress carry on.
      ws.on('error', () => undefined)
      ws.on('message', (data) => {
        let frame: WsClientFrame
        try {
          frame = JSON.parse(String(data)) as WsClientFrame
          if (typeof frame?.id !== 'number') throw new Error('frame without id')
        } catch {
          ws.close(1003, 'bad frame')
          return
        }
        void dispatch(opts.handlers, frame.method, frame.input).then((env) => {
          const reply: WsServerFrame = env.ok
            ? { id: frame.id, ok: true, result: env.result }
            : { id: frame.id, ok: false, error: env.error }
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(reply))
        })
      })
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve())
  })
  port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}/?token=${token}`,
    port,
    token,
    broadcast(e) {
      const text = JSON.stringify({ event: e } satisfies WsServerFrame)
      for (const ws of clients) if (ws.readyState === ws.OPEN) ws.send(text)
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of clients) ws.terminate()
        wss.close()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
