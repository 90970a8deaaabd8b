// Our side of the logits comparisons: the real addon on the CPU in fp32 (quant none). The engine returns log-prob
// sums over labelled positions, so one token's log-prob at one position is a sequence labelled only there; the
// mean logit over the whole [T, V] block comes with every sequence (the logits/* metric of
// docs/reference/dpo-loss.md#metrics).
import { loadAddon } from '../../src-main/addon/loadAddon'
import type { NativeModel, QuantMode } from '../../src-main/addon/addonTypes'

/** A token sequence and the (position t, token v) pairs to score: log_softmax(logits[t - 1])[v]. */
export interface ProbeSequence {
  ids: number[]
  probes: Array<[number, number]>
}

export interface ProbeScores {
  logps: number[]
  logitsMean: number
}

export async function openEngine(dir: string, quant: QuantMode = 'none'): Promise<NativeModel> {
  return loadAddon().loadModel(dir, { quant, backend: 'cpu' })
}

/** Every probe of every sequence as its own labelled copy, in one engine call per sequence. */
export async function scoreProbes(
  model: NativeModel,
  seqs: readonly ProbeSequence[],
  padId = 0,
): Promise<ProbeScores[]> {
  const out: ProbeScores[] = []
  for (const s of seqs) {
    const batch = s.probes.map(([t, v]) => {
      const labels = new Array<number>(s.ids.length).fill(-100)
      labels[t] = v
      return { ids: s.ids, labels }
    })
    const r = await model.logps(batch, padId)
    out.push({ logps: r.map((x) => x.logp), logitsMean: r[0]!.logitsMean })
  }
  return out
}

/** A seeded generator (mulberry32) so fixtures are the same on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * `count` random sequences of `length` ids in [3, vocab) after BOS 1, each probed at every position with the true
 * next token and with a random one.
 */
export function probeSequences(vocab: number, count: number, length: number, seed: number): ProbeSequence[] {
  const rnd = seededRandom(seed)
  const id = () => 3 + Math.floor(rnd() * (vocab - 3))
  return Array.from({ length: count }, () => {
    const ids = [1, ...Array.from({ length: length - 1 }, id)]
    const probes: Array<[number, number]> = []
    for (let t = 1; t < length; t++) probes.push([t, ids[t]!], [t, id()])
    return { ids, probes }
  })
}

/** Largest |a - b| over paired arrays. */
export function maxAbsDiff(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

/** Largest |a - b| / max(1, |b|): absolute below 1, relative above (b is the reference). */
export function maxScaledDiff(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)))
  return m
}
