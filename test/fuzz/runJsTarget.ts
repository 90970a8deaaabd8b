// Supervises one TypeScript fuzz target for a time budget (docs/fuzzing.md): runs worker.ts in a worker thread,
// stops it when one input runs longer than the exec timeout (a hang) or exhausts its heap (out of memory), records
// that input from shared memory, and starts a fresh worker for the time left, seeded with everything found so far.
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { SAB_DATA_OFFSET, type FindingKind, type WorkerInit, type WorkerMessage } from './protocol'

export interface JsFinding {
  kind: FindingKind
  signature: string
  message: string
  input: Uint8Array
}

export interface JsFuzzResult {
  target: string
  seconds: number
  execs: number
  /** Coverage features (block ranges x hit-count buckets) seen. */
  features: number
  corpus: number
  /** Inputs that joined the corpus during this run. */
  newInputs: Uint8Array[]
  findings: JsFinding[]
}

export interface JsFuzzOptions {
  target: string
  seconds: number
  seed: number
  inputs: Uint8Array[]
  /** One input running longer than this is a hang. */
  execTimeoutMs: number
  maxLength: number
  /** Heap limit of the worker; an input that exceeds it is an out-of-memory finding. */
  heapMb: number
}

/** A private scratch folder, in memory (/dev/shm) when the system has one. */
function scratchDir(): string {
  const base = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
  return mkdtempSync(path.join(base, 'dpo-fuzz-'))
}

/** A worker running worker.ts through tsx, as the rest of the TypeScript runs here. */
function startWorker(init: WorkerInit, heapMb: number): Worker {
  const url = new URL('./worker.ts', import.meta.url).href
  const boot = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(url)}); })`
  return new Worker(boot, { eval: true, workerData: init, resourceLimits: { maxOldGenerationSizeMb: heapMb } })
}

export async function fuzzJsTarget(o: JsFuzzOptions): Promise<JsFuzzResult> {
  const t0 = Date.now()
  const deadline = t0 + o.seconds * 1000
  const sab = new SharedArrayBuffer(SAB_DATA_OFFSET + o.maxLength)
  const state = new Int32Array(sab, 0, 4)
  const started = new Float64Array(sab, 16, 1)
  const result: JsFuzzResult = {
    target: o.target,
    seconds: 0,
    execs: 0,
    features: 0,
    corpus: 0,
    newInputs: [],
    findings: [],
  }
  const scratch = scratchDir()
  const lastInput = () => new Uint8Array(sab, SAB_DATA_OFFSET, Atomics.load(state, 1)).slice()
  let execsBefore = 0
  try {
    for (let attempt = 0; Date.now() < deadline - 500 && attempt < 8; attempt++) {
      Atomics.store(state, 0, 0)
      Atomics.store(state, 2, 0)
      const init: WorkerInit = {
        target: o.target,
        deadline,
        seed: o.seed + attempt,
        inputs: [...o.inputs, ...result.newInputs],
        scratch,
        sab,
        maxLength: o.maxLength,
        knownSignatures: result.findings.map((f) => f.signature),
      }
      const stopped = await new Promise<JsFinding | null>((resolve) => {
        const worker = startWorker(init, o.heapMb)
        let settled = false
        const finish = (f: JsFinding | null) => {
          if (settled) return
          settled = true
          clearInterval(watchdog)
          resolve(f)
        }
        const watchdog = setInterval(() => {
          const running = Atomics.load(state, 0) === 1
          const late = Date.now() > deadline + Math.max(30_000, 3 * o.execTimeoutMs)
          if ((running && Date.now() - started[0]! > o.execTimeoutMs) || late) {
            const input = lastInput()
            void worker.terminate()
            finish(
              running
                ? { kind: 'timeout', signature: 'timeout', message: `one input ran over ${o.execTimeoutMs} ms`, input }
                : null,
            )
          }
        }, 50)
        worker.on('message', (m: WorkerMessage) => {
          if (m.type === 'corpus') result.newInputs.push(m.input)
          else if (m.type === 'finding')
            result.findings.push({ kind: m.kind, signature: m.signature, message: m.message, input: m.input })
          else if (m.type === 'stats') {
            result.features = Math.max(result.features, m.features)
            result.corpus = m.corpus
          } else finish(null)
        })
        worker.on('error', (e: Error & { code?: string }) => {
          const oom = e.code === 'ERR_WORKER_OUT_OF_MEMORY'
          finish({
            kind: oom ? 'oom' : 'crash',
            signature: oom ? 'oom' : `worker died: ${e.message}`.slice(0, 200),
            message: e.stack ?? e.message,
            input: lastInput(),
          })
        })
        worker.on('exit', () => finish(null))
      })
      result.execs = execsBefore + Atomics.load(state, 2)
      execsBefore = result.execs
      if (stopped === null) break
      // The same hang or out-of-memory twice: there is nothing more to learn from this target in this run.
      if (result.findings.some((f) => f.signature === stopped.signature)) break
      result.findings.push(stopped)
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
  result.seconds = (Date.now() - t0) / 1000
  return result
}
