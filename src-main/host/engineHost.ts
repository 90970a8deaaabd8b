// The parent's handle on the engine host: starts it, calls it by request id, routes streamed events, and when the
// process dies (CUDA fault, OOM kill, crash) rejects what was in flight with the reason and starts a fresh one.
import type { ApiErrorInfo, HostStatus, JobEvent } from '../../src-shared/api/contract'
import { StudioError } from '../services/errors'
import {
  describeExit,
  type HostCalls,
  type HostMethod,
  type HostSpawner,
  type HostToParent,
  type HostTransport,
} from './protocol'

export interface HostCall<T> {
  id: number
  promise: Promise<T>
  cancel(): void
}

interface Pending {
  resolve(v: unknown): void
  reject(e: unknown): void
  onEvent?: (e: JobEvent) => void
}

export interface EngineHostOptions {
  spawn: HostSpawner
  onStatus?: (status: HostStatus) => void
  /** More crashes than this within crashWindowMs stop the automatic restarts (state 'failed'). */
  maxCrashes?: number
  crashWindowMs?: number
  restartDelayMs?: number
}

export class EngineHost {
  private transport: HostTransport | null = null
  private nextId = 1
  private pending = new Map<number, Pending>()
  private crashTimes: number[] = []
  private stopping = false
  private readyWaiters: Array<() => void> = []
  private ready = false
  status: HostStatus = { state: 'stopped', message: '', pid: null, restarts: 0 }

  constructor(private readonly opts: EngineHostOptions) {}

  start(): void {
    this.stopping = false
    this.spawn()
  }

  /** Kills the current process (if any) and starts a new one; used by the UI's "Restart engine". */
  restart(): HostStatus {
    this.crashTimes = []
    if (this.transport) {
      const t = this.transport
      this.transport = null
      this.failPending(new StudioError('E_HOST_RESTARTED', 'the engine was restarted'))
      t.kill()
    }
    this.spawn()
    return this.status
  }

  async stop(): Promise<void> {
    this.stopping = true
    this.transport?.kill()
    this.transport = null
    this.setStatus({ state: 'stopped', message: '', pid: null })
  }

  call<M extends HostMethod>(
    method: M,
    params: HostCalls[M]['params'],
    onEvent?: (e: JobEvent) => void,
  ): HostCall<HostCalls[M]['result']> {
    const id = this.nextId++
    const promise = new Promise<HostCalls[M]['result']>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, ...(onEvent ? { onEvent } : {}) })
    })
    void this.whenReady().then(() => {
      if (!this.pending.has(id)) return
      if (!this.transport) {
        this.settle(id, false, {
          code: 'E_HOST_DOWN',
          message: `the engine process is not running: ${this.status.message}`,
        })
        return
      }
      this.transport.send({ type: 'call', id, method, params })
    })
    return { id, promise, cancel: () => this.transport?.send({ type: 'cancel', id }) }
  }

  private whenReady(): Promise<void> {
    if (this.ready || this.status.state === 'failed' || this.status.state === 'stopped') return Promise.resolve()
    return new Promise((r) => this.readyWaiters.push(r))
  }

  private spawn(): void {
    this.ready = false
    this.setStatus({
      state: this.status.restarts > 0 || this.crashTimes.length > 0 ? 'restarting' : 'starting',
      message: this.status.message,
    })
    let t: HostTransport
    try {
      t = this.opts.spawn()
    } catch (e) {
      this.setStatus({
        state: 'failed',
        message: `the engine process could not start: ${(e as Error).message}`,
        pid: null,
      })
      this.flushReady()
      return
    }
    this.transport = t
    t.onMessage((msg) => this.onMessage(t, msg))
    t.onExit((code, signal, tail) => this.onExit(t, code, signal, tail))
  }

  private onMessage(t: HostTransport, msg: HostToParent): void {
    if (t !== this.transport) return
    if (msg.type === 'ready') {
      this.ready = true
      this.setStatus({
        state: 'ready',
        message: this.status.state === 'restarting' ? this.status.message : '',
        pid: msg.pid,
      })
      this.flushReady()
    } else if (msg.type === 'event') {
      this.pending.get(msg.id)?.onEvent?.(msg.event)
    } else if (msg.ok) {
      this.settle(msg.id, true, msg.value)
    } else {
      this.settle(msg.id, false, msg.error)
    }
  }

  private onExit(t: HostTransport, code: number | null, signal: string | null, tail: string): void {
    if (t !== this.transport) return
    this.transport = null
    this.ready = false
    if (this.stopping) return
    const reason = `The engine process ${describeExit(code, signal, tail)}.`
    this.failPending(new StudioError('E_HOST_CRASHED', reason, { details: { code, signal } }))
    const now = Date.now()
    const windowMs = this.opts.crashWindowMs ?? 60_000
    this.crashTimes = [...this.crashTimes.filter((x) => now - x < windowMs), now]
    if (this.crashTimes.length > (this.opts.maxCrashes ?? 3)) {
      this.setStatus({
        state: 'failed',
        message: `${reason} It crashed ${this.crashTimes.length} times in a row; restart it when ready.`,
        pid: null,
      })
      this.flushReady()
      return
    }
    this.setStatus({
      state: 'crashed',
      message: `${reason} Restarting it.`,
      pid: null,
      restarts: this.status.restarts + 1,
    })
    setTimeout(() => {
      if (!this.stopping && !this.transport) this.spawn()
    }, this.opts.restartDelayMs ?? 300)
  }

  private settle(id: number, ok: boolean, value: unknown): void {
    const p = this.pending.get(id)
    if (!p) return
    this.pending.delete(id)
    if (ok) p.resolve(value)
    else {
      const info = value as ApiErrorInfo
      p.reject(new StudioError(info.code, info.message, info.details ? { details: info.details } : {}))
    }
  }

  private failPending(err: Error): void {
    for (const [, p] of this.pending) p.reject(err)
    this.pending.clear()
  }

  private flushReady(): void {
    const w = this.readyWaiters
    this.readyWaiters = []
    w.forEach((f) => f())
  }

  private setStatus(s: Partial<HostStatus>): void {
    this.status = { ...this.status, ...s }
    this.opts.onStatus?.(this.status)
  }
}
