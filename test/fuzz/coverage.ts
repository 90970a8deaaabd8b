// Coverage feedback for the TypeScript fuzzer from V8's own block coverage (the inspector's Profiler domain, no
// instrumentation package): after each input, every reported block range with its hit count bucketed as libFuzzer
// does (1, 2, 3, 4-7, 8-15, ...) is a feature; an input that shows a feature never seen before joins the corpus.
// V8 omits a block whose count equals its parent's, so "this branch was not taken" shows up as a zero-count range:
// features describe which way each branch went, not just which functions ran.
import { Session } from 'node:inspector'

type Coverage = {
  result: Array<{
    scriptId: string
    url: string
    functions: Array<{ ranges: Array<{ startOffset: number; endOffset: number; count: number }> }>
  }>
}

/** Posts one inspector command and returns its result; same-thread sessions answer synchronously. */
function postSync<T>(session: Session, method: string, params?: object): T {
  let result: T | undefined
  let error: Error | null = null
  session.post(method, params ?? {}, (err, res) => {
    error = err
    result = res as T
  })
  if (error) throw error
  if (result === undefined) throw new Error(`inspector ${method} did not answer synchronously`)
  return result
}

function bucket(count: number): number {
  return count === 0 ? 0 : Math.min(16, 32 - Math.clz32(count))
}

export class CoverageFeedback {
  private readonly seen = new Set<string>()

  /** Call before the code under test is loaded, so that its functions are compiled with block counters. */
  constructor(
    private readonly session: Session,
    private readonly includes: (url: string) => boolean,
  ) {
    postSync(session, 'Profiler.enable')
    postSync(session, 'Profiler.startPreciseCoverage', { callCount: true, detailed: true })
  }

  static start(includes: (url: string) => boolean): CoverageFeedback {
    const session = new Session()
    session.connect()
    return new CoverageFeedback(session, includes)
  }

  /** Features seen so far. */
  get size(): number {
    return this.seen.size
  }

  /** Reads (and resets) the counters; returns how many features the last inputs showed for the first time. */
  takeNew(): number {
    const cov = postSync<Coverage>(this.session, 'Profiler.takePreciseCoverage')
    let fresh = 0
    for (const script of cov.result) {
      if (!this.includes(script.url)) continue
      for (const fn of script.functions)
        for (const r of fn.ranges) {
          if (r.count === 0 && fn.ranges[0]!.count === 0) continue // a function that did not run at all
          const key = `${script.url}:${r.startOffset}:${r.endOffset}:${bucket(r.count)}`
          if (!this.seen.has(key)) {
            this.seen.add(key)
            fresh++
          }
        }
    }
    return fresh
  }
}
