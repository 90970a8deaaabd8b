// The TypeScript fuzzer's loop, run in a worker thread so that the supervisor (runJsTarget.ts) can stop a hung input
// and record it. Coverage starts before the code under test is imported (its functions then carry block counters);
// each exec publishes its input in shared memory first, so a hang or an out-of-memory still names its input.
import { parentPort, workerData } from 'node:worker_threads'
import { CoverageFeedback } from './coverage'
import { mutate, Rng, type MutationContext } from './mutate'
import { findingSignature, type WorkerInit, type WorkerMessage, SAB_DATA_OFFSET } from './protocol'

const init = workerData as WorkerInit
const coverage = CoverageFeedback.start(
  (url) => url.includes('/src-main/') || url.includes('/node_modules/@huggingface/'),
)
const { jsTarget } = await import('./targets/index')
const target = jsTarget(init.target)

const state = new Int32Array(init.sab, 0, 4)
const started = new Float64Array(init.sab, 16, 1)
const slot = new Uint8Array(init.sab, SAB_DATA_OFFSET)
const post = (m: WorkerMessage) => parentPort!.postMessage(m)

/** Runs one input; returns the failure message, or null when the property held. */
async function exec(input: Uint8Array): Promise<string | null> {
  slot.set(input.subarray(0, slot.length))
  Atomics.store(state, 1, Math.min(input.length, slot.length))
  started[0] = Date.now()
  Atomics.store(state, 0, 1)
  try {
    await target.run(input, init.scratch)
    return null
  } catch (e) {
    return e instanceof Error ? e.message : String(e)
  } finally {
    Atomics.store(state, 0, 0)
    Atomics.add(state, 2, 1)
  }
}

/** Removes chunks while the same signature still fails (delta debugging), for at most `budgetMs`. */
async function minimize(input: Uint8Array, signature: string, budgetMs: number): Promise<Uint8Array> {
  const stop = Date.now() + budgetMs
  let best = input
  for (let size = best.length >> 1; size >= 1 && Date.now() < stop; size >>= 1) {
    for (let i = 0; i + size <= best.length && Date.now() < stop;) {
      const candidate = new Uint8Array(best.length - size)
      candidate.set(best.subarray(0, i))
      candidate.set(best.subarray(i + size), i)
      const msg = await exec(candidate)
      if (msg !== null && findingSignature(msg, init.scratch) === signature) best = candidate
      else i += size
    }
  }
  return best
}

const rng = new Rng(init.seed)
const known = new Set(init.knownSignatures)
const corpus: Uint8Array[] = []
const ctx: MutationContext = {
  rng,
  kind: target.kind,
  dictionary: target.dictionary,
  fragments: target.fragments,
  corpus,
  maxLength: init.maxLength,
}
let lastStats = Date.now()
let reported = 0

target.prepare(init.scratch)

async function consider(input: Uint8Array, fromCorpus: boolean): Promise<void> {
  const msg = await exec(input)
  const fresh = coverage.takeNew()
  if (msg !== null) {
    const signature = findingSignature(msg, init.scratch)
    // A dozen distinct findings per run is plenty to act on; more would only flood the regression folder.
    if (!known.has(signature) && reported < 12) {
      known.add(signature)
      reported++
      const small = await minimize(input, signature, 3000)
      coverage.takeNew()
      post({
        type: 'finding',
        kind: 'crash',
        signature,
        message: msg.split(init.scratch).join('<dir>'),
        input: small.slice(),
      })
    }
    return
  }
  if (fromCorpus || fresh > 0) {
    corpus.push(input)
    if (!fromCorpus) post({ type: 'corpus', input: input.slice() })
  }
}

for (const input of init.inputs) await consider(input, true)
if (corpus.length === 0) corpus.push(new Uint8Array(0))
while (Date.now() < init.deadline) {
  // Recent finds are mutated more often: they are where coverage last grew.
  const parent = rng.chance(0.3)
    ? corpus[corpus.length - 1 - rng.below(Math.min(16, corpus.length))]!
    : rng.pick(corpus)
  let child = parent
  for (let i = 1 + rng.below(2); i > 0; i--) child = mutate(child, ctx)
  await consider(child, false)
  if (Date.now() - lastStats > 1000) {
    lastStats = Date.now()
    post({ type: 'stats', execs: Atomics.load(state, 2), features: coverage.size, corpus: corpus.length })
  }
}
post({ type: 'stats', execs: Atomics.load(state, 2), features: coverage.size, corpus: corpus.length })
post({ type: 'done' })
