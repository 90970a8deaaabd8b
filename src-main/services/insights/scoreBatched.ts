// Scores many chosen/rejected pairs with one model (the reference: adapter disabled, or the trained adapter), a
// budget of tokens per engine call as the reference pass does (training/referenceBatches.ts): results do not depend
// on the batching (native test batched_logps_equal_one_at_a_time).
import type { NativeCancelToken, NativeModel, SequenceLogp } from '../../addon/addonTypes'
import { fromEngineError } from '../session/modelSession'
import type { ScoredPair } from '../training/refCache'
import { referenceBatches } from '../training/referenceBatches'

export interface ScoredPairLogps {
  chosen: SequenceLogp
  rejected: SequenceLogp
}

/** How engine calls are made (the trainer maps cancellation and engine errors; others call directly). */
export type EngineCall = <T>(call: () => Promise<T>) => Promise<T>

export async function scorePairsBatched(
  native: Pick<NativeModel, 'logps'>,
  pairs: readonly ScoredPair[],
  padId: number,
  useAdapter: boolean,
  options: { cancel?: NativeCancelToken | undefined; call?: EngineCall; onBatch?: (done: number) => void } = {},
): Promise<ScoredPairLogps[]> {
  const call: EngineCall = options.call ?? (async (f) => f().catch((e: unknown) => Promise.reject(fromEngineError(e))))
  const out: ScoredPairLogps[] = new Array(pairs.length)
  const longest = (i: number) => Math.max(pairs[i]!.chosen.ids.length, pairs[i]!.rejected.ids.length)
  let done = 0
  for (const chunk of referenceBatches(
    pairs.map((_, i) => i),
    longest,
  )) {
    const seqs = chunk.flatMap((i) => [pairs[i]!.chosen, pairs[i]!.rejected])
    const res = await call(() => native.logps(seqs, padId, options.cancel, useAdapter))
    chunk.forEach((i, k) => (out[i] = { chosen: res[2 * k]!, rejected: res[2 * k + 1]! }))
    done += chunk.length
    options.onBatch?.(done)
  }
  return out
}
