// The real llama.cpp, through node-llama-cpp's prebuilt CPU binary (a dev dependency; nothing is downloaded or built):
// tokenization, greedy decoding (optionally with a GGUF LoRA adapter) and teacher-forced next-token probabilities of
// GGUF files, for comparison with our engine. One thread: the suites share 2 cores, and ggml's worker threads spin.
// The KV cache is kept in F32 (llama.cpp's default is F16), so what is compared is the file, not the cache's rounding.
import type { Llama, LlamaModel } from 'node-llama-cpp'

let llama: Promise<Llama> | undefined

/** The part of our engine's model the comparisons need. */
type LogpsModel = {
  logps(batch: Array<{ ids: number[]; labels: number[] }>, padId: number): Promise<Array<{ logp: number }>>
}

async function engine(): Promise<Llama> {
  llama ??= import('node-llama-cpp').then(({ getLlama }) =>
    getLlama({
      gpu: false,
      build: 'never',
      skipDownload: true,
      usePrebuiltBinaries: true,
      maxThreads: 1,
      logLevel: 'error' as never,
    }),
  )
  return llama
}

const CONTEXT = {
  contextSize: 512,
  sequences: 1,
  flashAttention: false,
  experimentalKvCacheKeyType: 'F32',
  experimentalKvCacheValueType: 'F32',
} as const

const models = new Map<string, Promise<LlamaModel>>()

export async function llamaModel(file: string): Promise<LlamaModel> {
  let m = models.get(file)
  if (!m) {
    m = engine().then((l) => l.loadModel({ modelPath: file }))
    models.set(file, m)
  }
  return m
}

/** llama.cpp's ids for `text`, parsing special-token text (e.g. "<s>") as those tokens, adding no BOS of its own. */
export async function llamaTokenize(file: string, text: string): Promise<number[]> {
  return [...(await llamaModel(file)).tokenize(text, true)]
}

/** Greedy tokens after `prompt`, at most `n`, stopping after an end-of-generation token. */
export async function llamaGreedy(file: string, prompt: number[], n: number, lora?: string): Promise<number[]> {
  const model = await llamaModel(file)
  const ctx = await model.createContext({ ...CONTEXT, ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}) })
  try {
    const out: number[] = []
    for await (const t of ctx.getSequence().evaluate(prompt as never, { temperature: 0 })) {
      out.push(t)
      if (out.length >= n || model.isEogToken(t)) break
    }
    return out
  } finally {
    await ctx.dispose()
  }
}

/**
 * Teacher forcing: after `prompt`, the probability llama.cpp gives each token of `continuation` and its own most
 * likely token at that position.
 */
export async function llamaForced(
  file: string,
  prompt: number[],
  continuation: number[],
): Promise<Array<{ p: number; argmax: number }>> {
  const model = await llamaModel(file)
  const ctx = await model.createContext(CONTEXT)
  try {
    const gen = ctx.getSequence().evaluateWithMetadata(prompt as never, { probabilities: true }, { temperature: 0 })
    const out: Array<{ p: number; argmax: number }> = []
    let r = await gen.next()
    for (const forced of continuation) {
      if (r.done) break
      out.push({ p: r.value.probabilities.get(forced as never) ?? 0, argmax: r.value.token })
      r = await gen.next(forced as never)
    }
    await gen.return(undefined)
    return out
  } finally {
    await ctx.dispose()
  }
}

export async function disposeLlama(): Promise<void> {
  for (const m of models.values()) await (await m).dispose()
  models.clear()
  if (llama) await (await llama).dispose()
  llama = undefined
}

/**
 * Where llama.cpp's greedy tokens part from ours, and our log-prob margin between our token and its token there
 * (null when they do not part). A margin below the two computations' numeric difference is a near-tie, not a defect.
 */
export async function greedyParting(
  ours: LogpsModel,
  prompt: number[],
  mine: number[],
  theirs: number[],
): Promise<{ at: number; margin: number } | null> {
  const at = theirs.findIndex((t, j) => t !== mine[j])
  if (at < 0)
    return theirs.length === mine.length ? null : { at: Math.min(theirs.length, mine.length), margin: Infinity }
  const ids = [...prompt, ...mine.slice(0, at)]
  const lp = async (t: number) =>
    (await ours.logps([{ ids: [...ids, t], labels: [...ids.map(() => -100), t] }], 0))[0]!.logp
  return { at, margin: (await lp(mine[at]!)) - (await lp(theirs[at]!)) }
}

export interface ForcedStats {
  /** Mean and largest |log p(ours) - log p(llama.cpp)| over the forced positions. */
  mean: number
  max: number
  /** Share of positions where llama.cpp's own most likely token is the forced one. */
  agree: number
  positions: number
}

/**
 * Teacher forcing through `file`: each case's continuation fed after its prompt, llama.cpp's probability of every
 * continuation token compared with `ours` (our log-probs of the same tokens, one per position).
 */
export async function forcedStats(
  file: string,
  cases: ReadonlyArray<{ prompt: number[]; continuation: number[]; ours: number[] }>,
): Promise<ForcedStats> {
  let max = 0
  let sum = 0
  let agree = 0
  let n = 0
  for (const c of cases) {
    const theirs = await llamaForced(file, c.prompt, c.continuation)
    theirs.forEach((x, j) => {
      const d = Math.abs(Math.log(x.p) - c.ours[j]!)
      max = Math.max(max, d)
      sum += d
      if (x.argmax === c.continuation[j]) agree++
      n++
    })
  }
  return { mean: sum / n, max, agree: agree / n, positions: n }
}

/** Our log-prob of each continuation token after the prompt (one labelled position per sequence, one engine call). */
export async function ourForcedLogps(ours: LogpsModel, prompt: number[], continuation: number[]): Promise<number[]> {
  const ids = [...prompt, ...continuation]
  const batch = continuation.map((_, i) => ({ ids, labels: ids.map((id, j) => (j === prompt.length + i ? id : -100)) }))
  return (await ours.logps(batch, 0)).map((x) => x.logp)
}
