// The reference pass (docs/reference/dpo-loss.md#reference-log-probs): the adapter-disabled model's log-probs of
// every pair the schedule trains on, once per pair, from the cache where it has them (refCache.ts) and computed in
// calls grouped by referenceGroups.ts where not.
import { RefLogpsCache, refCacheDir } from '../refCache'
import { REFERENCE_BATCH_TOKENS } from '../referenceBatches'
import { packedRows, referenceGroups, referenceMaxPadding } from '../referenceGroups'
import type { TrainRun, TrainState } from './trainRun'

/** Fills state.refs and the reference counts; `cacheDir` null = no cache. */
export async function referencePass(
  run: TrainRun,
  state: TrainState,
  cacheDir: string | null | undefined,
): Promise<void> {
  const { session, tokenized, used, totals, ev } = run
  const refStart = performance.now()
  const cache = RefLogpsCache.open(cacheDir === undefined ? refCacheDir() : cacheDir, {
    modelDir: session.dir,
    quant: session.info.quant,
    backend: session.info.backend,
    engineVersion: run.engineVersion,
  })
  if (cache.ignoredReason) ev.log?.(cache.ignoredReason)
  const missing: number[] = []
  for (const i of [...used].sort((a, b) => a - b)) {
    const hit = cache.lookup(tokenized[i]!.key, tokenized[i]!.swappedKey)
    if (hit) state.refs.set(i, hit)
    else missing.push(i)
  }
  state.refCached = state.refs.size
  ev.phase?.('reference', `${used.size} pairs, ${state.refCached} from the cache`)
  try {
    const maxPadding = referenceMaxPadding(session.info.chainedScoring)
    for (const chunk of referenceGroups(
      missing,
      (i) => packedRows(tokenized[i]!),
      REFERENCE_BATCH_TOKENS,
      maxPadding,
    )) {
      run.checkAbort()
      const seqs = chunk.flatMap((i) => [tokenized[i]!.chosen, tokenized[i]!.rejected])
      // Adapter disabled; no logitsMean: the reference pass keeps log-probs only, so the engine chains unpadded rows.
      const out = await run.engineCall(() => session.native.logps(seqs, run.padId, run.token, false, false))
      chunk.forEach((i, k) => {
        const c = out[2 * k]!,
          rj = out[2 * k + 1]!
        const r = { chosen: c.logp, rejected: rj.logp, chosenTokens: c.tokenLogps, rejectedTokens: rj.tokenLogps }
        state.refs.set(i, r)
        cache.set(tokenized[i]!.key, r)
      })
      state.refComputed += chunk.length
      const el = (performance.now() - refStart) / 1000
      const rate = state.refComputed / Math.max(el, 1e-9)
      ev.progress?.({
        stage: 'reference',
        step: 0,
        totalSteps: totals.maxSteps,
        pairsDone: state.refComputed,
        pairsTotal: missing.length,
        elapsedS: el,
        etaS: (missing.length - state.refComputed) / rate,
        pairsPerS: rate,
      })
    }
  } finally {
    // What was computed stays useful even when the pass is cancelled.
    const err = cache.save()
    if (err) ev.log?.(err)
    state.refSeconds = (performance.now() - refStart) / 1000
  }
}
