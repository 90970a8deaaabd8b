// The arithmetic of `npm run bench:peers` (peersBench.ts): medians and ranges of interleaved runs, the floors a
// workload cannot beat on the measured machine, and the check that two engines computed the same log-probs.

export interface Spread {
  median: number
  min: number
  max: number
  runs: number
}

export function spread(values: number[]): Spread {
  if (values.length === 0) throw new Error('spread: no values')
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
  return { median, min: s[0], max: s[s.length - 1], runs: s.length }
}

/**
 * The ratio ours / peer of each round: both engines ran back to back in it, so a slow phase of a shared machine that
 * lasts a round slows both, and the ratio keeps what the medians of the two sides, taken apart, can lose.
 */
export function roundRatios(ours: number[], peer: number[]): number[] {
  if (ours.length !== peer.length)
    throw new Error(`roundRatios: ${ours.length} rounds of ours, ${peer.length} of the peer`)
  return ours.map((o, i) => o / peer[i]!)
}

/**
 * The thread count whose runs have the highest median rate, of a series per thread count (the fewer threads on a
 * tie). An engine whose threads spin can run slower on every core of a small machine than on fewer, so the bench also
 * sets each engine's fastest decode beside the other's.
 */
export function fastestThreadCount(series: ReadonlyMap<number, number[]>): number {
  let best: { threads: number; median: number } | null = null
  for (const [threads, values] of [...series].sort((a, b) => a[0] - b[0])) {
    const median = spread(values).median
    if (best === null || median > best.median) best = { threads, median }
  }
  if (best === null) throw new Error('fastestThreadCount: no thread counts')
  return best.threads
}

export interface ModelShape {
  hidden: number
  layers: number
  heads: number
  kvHeads: number
  ffn: number
  vocab: number
}

/** Weights of the linear layers (q, k, v, o, gate, up, down) of every layer: what a token's matmuls multiply by. */
export function linearWeights(m: ModelShape): number {
  const hd = m.hidden / m.heads
  const perLayer = 2 * m.hidden * m.hidden + 2 * m.hidden * (m.kvHeads * hd) + 3 * m.hidden * m.ffn
  return m.layers * perLayer
}

export interface PairTokens {
  tokens: number
  scored: number
} // per pair: chosen + rejected; tokens with a label

/** Multiply-add FLOPs of one pair's forward (2 per weight per token; lm_head only on scored rows, as the engine does). */
export function forwardFlops(m: ModelShape, p: PairTokens): number {
  return 2 * linearWeights(m) * p.tokens + 2 * m.vocab * m.hidden * p.scored
}

/** A frozen base trains with a forward and an input-gradient backward of the same size (LoRA adds under 1%). */
export function trainingFlops(m: ModelShape, p: PairTokens): number {
  return 2 * forwardFlops(m, p)
}

/** Bytes one batch-1 decode step streams: NF4 weights (0.5159 bytes each with double quantization) + a 16-bit lm_head. */
export function decodeBytesNf4(m: ModelShape): number {
  return linearWeights(m) * (0.5 + 1 / 64 + 4 / (64 * 256)) + 2 * m.vocab * m.hidden
}

/**
 * Bytes one batch-1 decode step of llama.cpp streams from a Q4_0 GGUF written by our writer (ggufModel.ts tensorType):
 * Q4_0 linear weights (18 bytes per 32: 0.5625 each) and a Q8_0 output matrix (34 bytes per 32).
 */
export function decodeBytesQ4_0(m: ModelShape): number {
  return linearWeights(m) * (18 / 32) + m.vocab * m.hidden * (34 / 32)
}

/**
 * Greedy tokens of two engines agree: `ours` may stop early at one of `eos` (our generate stops there, the peer's
 * loop does not), otherwise every position must match. Returns the first differing position, or -1.
 */
export function greedyParting(ours: number[], theirs: number[], eos: number[]): number {
  for (let i = 0; i < ours.length; i++) if (ours[i] !== theirs[i]) return i
  const stoppedAtEos = ours.length > 0 && eos.includes(ours[ours.length - 1]!)
  return ours.length === theirs.length || stoppedAtEos ? -1 : ours.length
}

/** Whether a ratio (ours / peer) meets its issue-16 target, as the table prints it; a row without a target (the
 * cold passes) prints the ratio alone. */
export function againstTarget(ratio: number | null, target: number | null): string {
  if (ratio === null) return '-'
  if (target === null) return `${ratio.toFixed(2)} (no target)`
  return `${ratio.toFixed(2)} ${ratio >= target ? '>=' : '<'} ${target}`
}

export interface ColdWarmRates {
  train: number
  trainCold: number
  reference: number
  referenceCold: number
}

/**
 * Pairs per second of the warm and cold passes of one bench-hw6 / peer_peft_dpo.py JSON (BENCHMARKS.md, "Cold and
 * warm passes"). A field that is missing or not a positive number of seconds (an older binary or script) stops the
 * bench with its name, rather than printing NaN.
 */
export function coldWarmRates(j: Record<string, unknown>, pairs: number, who: string): ColdWarmRates {
  const rate = (field: string) => pairsPerSecond(j, field, pairs, who)
  return {
    train: rate('train_s'),
    trainCold: rate('train_cold_s'),
    reference: rate('reference_s'),
    referenceCold: rate('reference_cold_s'),
  }
}

/**
 * Pairs per second of scripts/bench/peer_trl_dpo.py's one run: TRL's DPOTrainer trains once, so its rates meet every
 * pair shape for the first time and stand beside our cold passes. Its reference pass is the trainer's precompute of
 * the reference log-probs (adapter disabled).
 */
export function trlRates(j: Record<string, unknown>, pairs: number): { train: number; reference: number } {
  const rate = (field: string) => pairsPerSecond(j, field, pairs, 'peer_trl_dpo.py')
  return { train: rate('train_s'), reference: rate('reference_s') }
}

/** pairs / j[field], where the field must be a positive number of seconds (else an error naming `who` and it). */
function pairsPerSecond(j: Record<string, unknown>, field: string, pairs: number, who: string): number {
  const s = j[field]
  if (typeof s !== 'number' || !(s > 0)) throw new Error(`${who}: ${field} is ${JSON.stringify(s)}, not seconds > 0`)
  return pairs / s
}

export interface Agreement {
  ok: boolean
  worst: number
  compared: number
}

/** Per-pair reference log-probs (chosen, rejected) of two engines agree within |a - b| <= rtol |b| + atol. */
export function logpsAgree(a: number[][], b: number[][], rtol = 1e-4, atol = 1e-3): Agreement {
  const n = Math.min(a.length, b.length)
  let worst = 0
  let ok = n > 0 && a.length === b.length
  for (let i = 0; i < n; i++) {
    for (let s = 0; s < 2; s++) {
      const err = Math.abs(a[i][s] - b[i][s])
      worst = Math.max(worst, err)
      if (!(err <= rtol * Math.abs(b[i][s]) + atol)) ok = false
    }
  }
  return { ok, worst, compared: n }
}
