// Talks to a running web host for tests: a `serve` child process, its API over WebSocket, and raw WebSocket frames
// on a plain TCP socket (for protocol errors no well-behaved client library would send).
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { connect } from 'node:net'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import WebSocket from 'ws'
import { repoRoot } from './sharedPath'

export interface ServeChild {
  child: ChildProcess
  url: string
  port: number
  token: string
  stderr(): string
  exited: Promise<number | null>
}

/** Starts test/helpers/serveChild.ts (the real `serve` command) on a free port with `dataDir`. */
export async function startServe(dataDir: string, env: NodeJS.ProcessEnv = {}): Promise<ServeChild> {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href
  const child = spawn(
    process.execPath,
    ['--import', tsx, path.join(repoRoot, 'test/helpers/serveChild.ts'), dataDir, path.join(dataDir, 'renderer')],
    {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let err = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d))
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const m = out.match(/running at (http:\/\/\S+)/)
      if (m) resolve(m[1]!)
    })
    void exited.then(() => reject(new Error(`serve ended before it printed its URL:\n${err}`)))
  })
  const u = new URL(url)
  return { child, url, port: Number(u.port), token: u.searchParams.get('token')!, stderr: () => err, exited }
}

/** The API over one WebSocket: call(method, input) and every event received. */
export class ApiClient {
  readonly events: any[] = []
  private nextId = 1
  private pending = new Map<number, (frame: any) => void>()
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data))
      if (frame.event) this.events.push(frame.event)
      else this.pending.get(frame.id)?.(frame)
    })
  }

  static async open(port: number, token: string): Promise<ApiClient> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api?token=${token}`)
    await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)))
    return new ApiClient(ws)
  }

  call(method: string, input: unknown = {}): Promise<any> {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, (f) =>
        f.ok ? resolve(f.result) : reject(Object.assign(new Error(f.error.message), f.error)),
      )
      this.ws.send(JSON.stringify({ id, method, input }))
    })
  }

  /** Resolves with the first job event matching `pred` (already received or still to come). */
  async waitForJob(pred: (e: any) => boolean, timeoutMs = 120_000): Promise<any> {
    const t0 = Date.now()
    for (;;) {
      const hit = this.events.find((e) => e.type === 'job' && pred(e.event))
      if (hit) return hit.event
      if (Date.now() - t0 > timeoutMs) throw new Error('timed out waiting for a job event')
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  close(): void {
    this.ws.close()
  }
}

export interface RawFrame {
  opcode: number
  payload?: Buffer
  fin?: boolean
  rsv?: number
  masked?: boolean
  /** Claim this payload length in the header instead of the real one (and send no payload). */
  claimedLength?: number
}

function encodeFrame(f: RawFrame): Buffer {
  const payload = f.payload ?? Buffer.alloc(0)
  const len = f.claimedLength ?? payload.length
  const head: number[] = [((f.fin ?? true) ? 0x80 : 0) | ((f.rsv ?? 0) << 4) | f.opcode]
  const maskBit = (f.masked ?? true) ? 0x80 : 0
  if (len < 126) head.push(maskBit | len)
  else if (len < 65536) head.push(maskBit | 126, len >> 8, len & 255)
  else {
    head.push(maskBit | 127)
    const b = Buffer.alloc(8)
    b.writeBigUInt64BE(BigInt(len))
    head.push(...b)
  }
  if (!(f.masked ?? true))
    return Buffer.concat([Buffer.from(head), f.claimedLength === undefined ? payload : Buffer.alloc(0)])
  const key = randomBytes(4)
  const body = f.claimedLength === undefined ? Buffer.from(payload.map((x, i) => x ^ key[i % 4]!)) : Buffer.alloc(0)
  return Buffer.concat([Buffer.from(head), key, body])
}

/**
 * Opens a WebSocket by hand (token in the query), sends one frame, and returns the close code the server answered
 * with (null when it just dropped the connection) once the connection ends.
 */
export function sendRawFrame(port: number, token: string, frame: RawFrame): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1')
    let buf = Buffer.alloc(0)
    let upgraded = false
    sock.on('connect', () => {
      const key = randomBytes(16).toString('base64')
      sock.write(
        `GET /api?token=${token} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      )
    })
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = buf.subarray(0, end).toString()
        if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`))
        upgraded = true
        buf = buf.subarray(end + 4)
        sock.write(encodeFrame(frame))
      }
    })
    sock.on('error', () => undefined)
    sock.on('close', () => {
      // The server's close frame: opcode 8, then a 2-byte status code.
      const i = buf.findIndex((b, k) => (b & 0x0f) === 8 && (b & 0x80) !== 0 && k + 3 < buf.length)
      resolve(i >= 0 && (buf[i + 1]! & 0x7f) >= 2 ? buf.readUInt16BE(i + 2) : null)
    })
    setTimeout(() => sock.destroy(), 10_000)
  })
}
