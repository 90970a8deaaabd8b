// The engine host: a child process that loads the native addon and runs model work through the services, so a CUDA
// fault or an OOM kill ends only this process (docs/architecture.md#the-engine-host). Started by EngineHost with node's
// fork or Electron's utilityProcess; speaks protocol.ts over whichever channel it was given.
import type { JobEvent } from '../../src-shared/api/contract'
import { toApiError } from '../api/errorInfo'
import { loadAddon } from '../addon/loadAddon'
import type { BackendChoice, NativeCancelToken, QuantMode } from '../addon/addonTypes'
import { generateResponses } from '../services/session/generateResponses'
import { openModel, type ModelSession } from '../services/session/modelSession'
import { exportGguf } from '../services/export/ggufExport'
import { importAdapter } from '../services/export/importAdapter'
import { exportMergedModel, runModelAndAdapter } from '../services/export/mergedModel'
import { FROM_NAME } from '../services/export/mergedWeights'
import { readRunConfig } from '../services/export/runConfig'
import { runSweep, type SweepProgress } from '../services/insights/sweep'
import { resumeNotebook } from '../services/training/notebookRun'
import type { RunEvents } from '../../src-shared/run/runTypes'
import {
  DEVICE_FAULT_EXIT_CODE,
  type HostCalls,
  type HostMethod,
  type HostToParent,
  type ParentToHost,
} from './protocol'
import { loadRunNotebook } from './training'

interface Port {
  post(msg: HostToParent): void
  listen(fn: (msg: ParentToHost) => void): void
}

/** Electron utilityProcess gives process.parentPort; node's fork gives process.send. */
function openPort(): Port {
  const parentPort = (
    process as unknown as {
      parentPort?: { postMessage(m: unknown): void; on(e: 'message', fn: (e: { data: unknown }) => void): void }
    }
  ).parentPort
  if (parentPort) {
    return {
      post: (m) => parentPort.postMessage(m),
      listen: (fn) => parentPort.on('message', (e) => fn(e.data as ParentToHost)),
    }
  }
  if (!process.send) throw new Error('hostMain must be started as a child process with an IPC channel')
  return {
    post: (m) => process.send!(m),
    listen: (fn) => process.on('message', (m) => fn(m as ParentToHost)),
  }
}

const port = openPort()
let session: { key: string; s: ModelSession } | null = null
/** Cancellation per call id: abort controllers for runs, native tokens for generation. */
const cancels = new Map<number, () => void>()

function releaseSession(): boolean {
  if (!session) return false
  session.s.dispose()
  session = null
  return true
}

async function ensureSession(
  dir: string,
  quant: QuantMode,
  backend: BackendChoice,
  emit: (e: JobEvent) => void,
): Promise<ModelSession> {
  const key = `${dir}\0${quant}\0${backend}`
  if (session?.key === key) return session.s
  releaseSession()
  const s = await openModel(dir, { quant, backend, onProgress: (fraction) => emit({ kind: 'loadProgress', fraction }) })
  session = { key, s }
  return s
}

/** A run's events as job events on the channel. */
function runEvents(emit: (e: JobEvent) => void): RunEvents {
  return {
    phase: (phase, detail) => emit({ kind: 'phase', phase, ...(detail === undefined ? {} : { detail }) }),
    metrics: (row) => emit({ kind: 'metrics', row }),
    progress: (progress) => emit({ kind: 'progress', progress }),
    responseText: (which, index, delta) => emit({ kind: 'text', which, index, delta }),
    response: (which, index, row) => emit({ kind: 'response', which, index, row }),
    log: (line) => emit({ kind: 'log', line }),
  }
}

type Handler<M extends HostMethod> = (
  params: HostCalls[M]['params'],
  emit: (e: JobEvent) => void,
  id: number,
) => Promise<HostCalls[M]['result']>

const handlers: { [M in HostMethod]: Handler<M> } = {
  async engineInfo() {
    const engine = loadAddon()
    return { version: engine.version(), backends: engine.probe(), training: (await loadRunNotebook()) !== null }
  },
  async modelCheck(p) {
    return loadAddon().checkModel(p.dir, { quant: p.quant })
  },
  async modelLoad(p, emit) {
    const t0 = performance.now()
    const s = await ensureSession(p.dir, p.quant, p.backend, emit)
    return { dir: s.dir, info: s.info, loadSeconds: (performance.now() - t0) / 1000 }
  },
  async generate(p, emit, id) {
    const s = await ensureSession(p.modelDir, p.quant, p.backend, emit)
    const token: NativeCancelToken = new (loadAddon().CancelToken)()
    cancels.set(id, () => token.cancel())
    emit({ kind: 'phase', phase: 'original' })
    const responses = await generateResponses(s, {
      prompts: p.prompts,
      system: p.system,
      ...(p.chatDate ? { chatDate: p.chatDate } : {}),
      ...(p.enableThinking !== undefined ? { enableThinking: p.enableThinking } : {}),
      maxNewTokens: p.maxNewTokens,
      cancel: token,
      onText: (index, delta) => emit({ kind: 'text', which: 'original', index, delta }),
    })
    responses.forEach((r, index) =>
      emit({ kind: 'response', which: 'original', index, row: { id: r.id, prompt: r.prompt, response: r.response } }),
    )
    if (token.cancelled) throw Object.assign(new Error('generation cancelled'), { code: 'E_CANCELLED' })
    return { responses }
  },
  async runNotebook(req, emit, id) {
    const runNotebook = await loadRunNotebook()
    if (!runNotebook)
      throw Object.assign(new Error('this build has no DPO training service yet'), { code: 'E_UNSUPPORTED' })
    // The run opens its own model: free the cached one first so both never sit in GPU memory together.
    releaseSession()
    const ac = new AbortController()
    cancels.set(id, () => ac.abort())
    return runNotebook(req, runEvents(emit), ac.signal, {
      onLoadProgress: (fraction) => emit({ kind: 'loadProgress', fraction }),
    })
  },
  async resumeRun(p, emit, id) {
    releaseSession()
    const ac = new AbortController()
    cancels.set(id, () => ac.abort())
    return resumeNotebook(p.runDir, {}, runEvents(emit), ac.signal, {
      onLoadProgress: (fraction) => emit({ kind: 'loadProgress', fraction }),
    })
  },
  async exportMerged(p) {
    const src = runModelAndAdapter(p.runDir)
    const r = await exportMergedModel({
      ...src,
      runDir: p.runDir,
      outDir: p.outDir,
      overwrite: p.overwrite,
      mergeBase: p.mergeInto === 'auto' ? src.mergeBase : p.mergeInto,
      ...(p.dtype !== 'auto' ? { dtype: FROM_NAME[p.dtype]! } : {}),
    })
    return { path: r.path, files: r.files }
  },
  async exportGguf(p) {
    const src = runModelAndAdapter(p.runDir)
    const r = await exportGguf({
      ...src,
      runDir: p.runDir,
      outDir: p.outDir,
      overwrite: p.overwrite,
      types: p.types,
      lora: p.lora,
      systemMessage: readRunConfig(p.runDir).params.systemMessage,
    })
    return { path: r.path, files: r.files }
  },
  async importAdapter(p) {
    releaseSession()
    const r = await importAdapter({ ...p, engineVersion: loadAddon().version() })
    return { path: r.path }
  },
  async runSweep(req, emit, id) {
    releaseSession()
    const ac = new AbortController()
    cancels.set(id, () => ac.abort())
    const events = { ...runEvents(emit), sweep: (p: SweepProgress) => emit({ kind: 'sweep', ...p }) }
    return runSweep(req, events, ac.signal, { onLoadProgress: (fraction) => emit({ kind: 'loadProgress', fraction }) })
  },
  async release() {
    return { released: releaseSession() }
  },
  async crashForTest(p) {
    if (process.env.DPO_STUDIO_TEST_HOOKS !== '1')
      throw Object.assign(new Error('test hooks are off'), { code: 'E_UNSUPPORTED' })
    if (p.signal === 'GPU_FAULT')
      throw Object.assign(new Error('the GPU reported cudaErrorIllegalAddress (test hook)'), { code: 'E_DEVICE_FAULT' })
    process.kill(process.pid, p.signal)
    return new Promise<never>(() => {})
  },
}

port.listen((msg) => {
  if (msg.type === 'cancel') {
    cancels.get(msg.id)?.()
    return
  }
  const handler = handlers[msg.method] as Handler<HostMethod> | undefined
  const emit = (event: JobEvent) => port.post({ type: 'event', id: msg.id, event })
  if (!handler) {
    port.post({
      type: 'result',
      id: msg.id,
      ok: false,
      error: { code: 'E_BAD_INPUT', message: `unknown host method ${String(msg.method)}` },
    })
    return
  }
  handler(msg.params as never, emit, msg.id)
    .then(
      (value) => port.post({ type: 'result', id: msg.id, ok: true, value }),
      (e) => {
        const error = toApiError(e)
        port.post({ type: 'result', id: msg.id, ok: false, error })
        // After a GPU fault every later CUDA call of this process fails: leave, and the parent starts a fresh engine.
        if (error.code === 'E_DEVICE_FAULT') setTimeout(() => process.exit(DEVICE_FAULT_EXIT_CODE), 100)
      },
    )
    .finally(() => cancels.delete(msg.id))
})

// A parent that died without stopping us (node fork) closes the IPC channel: nothing left to serve.
process.on('disconnect', () => process.exit(0))
// Ctrl-C in a terminal reaches the whole process group: the parent decides (it cancels the run in progress, which
// then stops cleanly here, and stops us afterwards).
process.on('SIGINT', () => undefined)

port.post({ type: 'ready', pid: process.pid })
