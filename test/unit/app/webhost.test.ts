// The web host's front door: token required (401 without), cookie after the first visit, CSP and other security
// headers, wrong Host refused, no directory traversal out of the renderer folder, WebSocket upgrades checked for
// token and Origin, and API inputs validated with the contract's zod schemas.
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { ApiHandlers } from '../../../src-main/api/dispatch'
import { COOKIE, startWebHost, type WebHost } from '../../../src-main/webhost/server'

let host: WebHost
let root: string
let outside: string

/** A raw GET (fetch would normalise ../ away before sending). */
function get(
  rawPath: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: host.port,
        path: rawPath,
        method: 'GET',
        headers: { host: `127.0.0.1:${host.port}`, ...headers },
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }))
      },
    )
    req.on('error', reject)
    req.end()
  })
}

const handlers = {
  async appInfo() {
    return { platform: 'web' }
  },
  async datasetRows(input: unknown) {
    return input
  },
} as unknown as ApiHandlers

beforeAll(async () => {
  const base = mkdtempSync(path.join(tmpdir(), 'dpo-webhost-'))
  root = path.join(base, 'renderer')
  mkdirSync(path.join(root, 'assets'), { recursive: true })
  writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>studio</title>')
  writeFileSync(path.join(root, 'assets', 'app.js'), 'console.log(1)')
  writeFileSync(path.join(root, '.secret'), 'hidden')
  outside = path.join(base, 'secret.txt')
  writeFileSync(outside, 'TOP SECRET')
  symlinkSync(outside, path.join(root, 'assets', 'link.txt'))
  host = await startWebHost({ rendererDir: root, handlers })
})
afterAll(async () => host?.close())

describe('web host HTTP', () => {
  it('listens on 127.0.0.1 and prints a URL with a long random token', () => {
    expect(host.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{32}$/)
  })

  it('answers 401 without the token, 200 with it, and sets a strict cookie', async () => {
    expect((await get('/')).status).toBe(401)
    expect((await get('/?token=wrong')).status).toBe(401)
    expect((await get(`/assets/app.js`)).status).toBe(401)
    const ok = await get(`/?token=${host.token}`)
    expect(ok.status).toBe(200)
    expect(ok.body).toContain('studio')
    expect(String(ok.headers['set-cookie'])).toMatch(new RegExp(`${COOKIE}=.+; HttpOnly; SameSite=Strict`))
    const withCookie = await get('/assets/app.js', { cookie: `${COOKIE}=${host.token}` })
    expect(withCookie.status).toBe(200)
    expect(withCookie.headers['content-type']).toContain('javascript')
  })

  it('sends a CSP and other security headers', async () => {
    const r = await get(`/?token=${host.token}`)
    const csp = String(r.headers['content-security-policy'])
    expect(csp).toContain("default-src 'self'")
    expect(csp).toContain("script-src 'self'")
    expect(csp).toContain(`connect-src 'self' ws://127.0.0.1:${host.port}`)
    expect(csp).toContain("frame-ancestors 'none'")
    expect(r.headers['x-content-type-options']).toBe('nosniff')
  })

  it('refuses another Host header (DNS rebinding)', async () => {
    expect((await get(`/?token=${host.token}`, { host: 'evil.example:80' })).status).toBe(421)
  })

  it.each([
    '/../secret.txt',
    '/..%2fsecret.txt',
    '/%2e%2e/secret.txt',
    '/%2e%2e%2fsecret.txt',
    '/assets/..%2f..%2fsecret.txt',
    '/assets/%2e%2e/%2e%2e/secret.txt',
    '/..\\secret.txt',
    '/..%5csecret.txt',
    '/%00index.html',
    '/.secret',
    '/assets/link.txt',
    `/${'..%2f'.repeat(8)}etc/passwd`,
    '/%E0%A4%A',
  ])('never serves a path outside the renderer folder: %s', async (p) => {
    const r = await get(p, { cookie: `${COOKIE}=${host.token}` })
    expect(r.status).toBe(404)
    expect(r.body).not.toContain('TOP SECRET')
    expect(r.body).not.toContain('root:')
  })

  it('accepts only GET and HEAD', async () => {
    const r = await new Promise<number>((resolve) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: host.port,
          path: '/',
          method: 'POST',
          headers: { host: `127.0.0.1:${host.port}`, cookie: `${COOKIE}=${host.token}` },
        },
        (res) => resolve(res.statusCode ?? 0),
      )
      req.end()
    })
    expect(r).toBe(405)
  })
})

describe('web host WebSocket', () => {
  const open = (url: string, origin?: string) =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(url, origin ? { origin } : {})
      ws.once('open', () => resolve(ws))
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)))
      ws.once('error', reject)
    })

  it('refuses connections without the token or from another origin', async () => {
    await expect(open(`ws://127.0.0.1:${host.port}/api`)).rejects.toThrow('401')
    await expect(open(`ws://127.0.0.1:${host.port}/api?token=nope`)).rejects.toThrow('401')
    await expect(open(`ws://127.0.0.1:${host.port}/api?token=${host.token}`, 'https://evil.example')).rejects.toThrow(
      '403',
    )
  })

  it('answers calls, and validates input with the contract schemas', async () => {
    const ws = await open(`ws://127.0.0.1:${host.port}/api?token=${host.token}`, `http://127.0.0.1:${host.port}`)
    const call = (id: number, method: string, input: unknown) =>
      new Promise<Record<string, unknown>>((resolve) => {
        const onMsg = (d: WebSocket.RawData) => {
          const f = JSON.parse(String(d)) as Record<string, unknown>
          if (f.id === id) {
            ws.off('message', onMsg)
            resolve(f)
          }
        }
        ws.on('message', onMsg)
        ws.send(JSON.stringify({ id, method, input }))
      })
    expect(await call(1, 'appInfo', undefined)).toEqual({ id: 1, ok: true, result: { platform: 'web' } })
    const bad = await call(2, 'datasetRows', { datasetId: '../x', limit: 10_000 })
    expect(bad.ok).toBe(false)
    expect((bad.error as { code: string }).code).toBe('E_BAD_INPUT')
    const filled = await call(3, 'datasetRows', { datasetId: 'abc123' })
    expect(filled.result).toEqual({ datasetId: 'abc123', query: '', offset: 0, limit: 20 })
    const unknown = await call(4, 'rmRf', {})
    expect((unknown.error as { message: string }).message).toContain('unknown API method')
    ws.close()
  })
})
