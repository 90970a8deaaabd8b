// The llama.cpp peer of `npm run bench:peers` (issue 16): GGUF files of a `dpo-tool make-model` checkpoint written by
// our own GGUF writer (src-main/services/export/ggufExport.ts, docs/exports.md), loaded in llama.cpp through
// node-llama-cpp's prebuilt CPU binary (a dev dependency; nothing is downloaded or built), with a fixed thread count.
// It gives llama.cpp's greedy tokens (for the same-model check on an F32 file) and times prefill and batch-1 greedy
// decode the way `dpo-tool bench` times ours: a warm-up, then one prompt, prefill = until the first new token,
// decode = the following tokens. Wall seconds and process CPU seconds are both kept (the second stays steadier when
// other work shares the cores).
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import type { Llama, LlamaModel } from 'node-llama-cpp'
import { exportGguf } from '../../src-main/services/export/ggufExport'
import type { GgufFileType } from '../../src-main/services/export/ggufModel'
import { llamaCpuBackendFromMaps, llamaCpuBackendPath, llamaCpuVariant } from './peerIsa'

/** The GGUF of `modelDir` in `type`, written once into `outDir` (reused when present); returns its path. */
export async function ggufOf(modelDir: string, type: GgufFileType, outDir: string): Promise<string> {
  const dir = path.join(outDir, type)
  const existing = existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith(`-${type}.gguf`)) : undefined
  if (existing) return path.join(dir, existing)
  const r = await exportGguf({
    modelDir,
    adapterDir: null,
    mergeBase: 'original',
    types: [type],
    lora: false,
    outDir: dir,
  })
  return r.models[0]!.file
}

/**
 * The prompt `dpo-tool bench` uses (native/tools/cmd_bench.cpp, sequence 0): BOS 1, then ids spread over the vocabulary.
 * Both engines decode after the same ids.
 */
export function benchPrompt(vocab: number, length: number): number[] {
  return Array.from({ length }, (_, t) => (t === 0 ? 1 : 3 + ((t * 7919) % (vocab - 3))))
}

export interface PeerTiming {
  prefill_tokens_per_s: number
  decode_tokens_per_s: number
  decode_tokens_per_cpu_s: number
}

export class LlamaPeer {
  private constructor(
    private readonly llama: Llama,
    private readonly maxThreads: number,
    /** ggml's CPU variant, e.g. "haswell" or "zen4" (peerIsa.ts), or null when its load message was not seen. */
    readonly cpuVariant: string | null,
    /** Where the prebuilt binary and its libggml-cpu-*.so variants are. */
    readonly binDir: string,
  ) {}
  private readonly models = new Map<string, LlamaModel>()

  /**
   * llama.cpp with at most `maxThreads` threads. ggml picks the CPU variant for this CPU while starting and says which
   * at log level "log": kept from those lines, then only errors are printed, as before.
   */
  static async start(maxThreads: number): Promise<LlamaPeer> {
    const { getLlama } = await import('node-llama-cpp')
    const lines: string[] = []
    const llama = await getLlama({
      gpu: false,
      build: 'never',
      skipDownload: true,
      usePrebuiltBinaries: true,
      maxThreads,
      logLevel: 'log' as never,
      logger: (level: string, message: string) => {
        lines.push(message)
        if (level === 'error' || level === 'fatal') console.error(message)
      },
    } as never)
    llama.logLevel = 'error' as never
    const loaded =
      llamaCpuBackendPath(lines) ??
      (process.platform === 'linux' ? llamaCpuBackendFromMaps(readFileSync('/proc/self/maps', 'utf8')) : null)
    return new LlamaPeer(llama, maxThreads, llamaCpuVariant(lines, loaded), loaded ? path.dirname(loaded) : '(unknown)')
  }

  private async model(file: string): Promise<LlamaModel> {
    let m = this.models.get(file)
    if (!m) {
      m = await this.llama.loadModel({ modelPath: file })
      this.models.set(file, m)
    }
    return m
  }

  /** Greedy tokens after `prompt` (exactly `n`, end tokens included; F32 KV cache so the cache adds no rounding). */
  async greedy(file: string, prompt: number[], n: number, threads: number): Promise<number[]> {
    const ctx = await (await this.model(file)).createContext(this.contextOptions(threads, 'F32'))
    try {
      const out: number[] = []
      for await (const t of ctx.getSequence().evaluate(prompt as never, { temperature: 0 })) {
        out.push(t)
        if (out.length >= n) break
      }
      return out
    } finally {
      await ctx.dispose()
    }
  }

  /** Prefill of `prompt` and `newTokens - 1` decode steps after it, with llama.cpp's default (F16) KV cache. */
  async time(file: string, prompt: number[], newTokens: number, threads: number): Promise<PeerTiming> {
    const ctx = await (await this.model(file)).createContext(this.contextOptions(threads, 'F16'))
    try {
      const seq = ctx.getSequence()
      const run = async () => {
        const stamps: Array<{ wall: number; cpu: number }> = []
        const stamp = () => {
          const c = process.cpuUsage()
          stamps.push({ wall: performance.now() / 1e3, cpu: (c.user + c.system) / 1e6 })
        }
        stamp()
        for await (const _ of seq.evaluate(prompt as never, { temperature: 0 })) {
          stamp()
          if (stamps.length > newTokens) break
        }
        await seq.clearHistory()
        return stamps
      }
      await run() // warm-up, as dpo-tool bench does
      const s = await run()
      const first = s[1]!,
        last = s[s.length - 1]!
      const steps = s.length - 2
      return {
        prefill_tokens_per_s: prompt.length / (first.wall - s[0]!.wall),
        decode_tokens_per_s: steps / Math.max(1e-9, last.wall - first.wall),
        decode_tokens_per_cpu_s: steps / Math.max(1e-9, last.cpu - first.cpu),
      }
    } finally {
      await ctx.dispose()
    }
  }

  private contextOptions(threads: number, kv: 'F32' | 'F16') {
    if (threads > this.maxThreads)
      throw new Error(`llama.cpp was started with at most ${this.maxThreads} threads, asked for ${threads}`)
    return {
      contextSize: 256,
      sequences: 1,
      batchSize: 256,
      flashAttention: false,
      threads: { ideal: threads, min: threads },
      experimentalKvCacheKeyType: kv,
      experimentalKvCacheValueType: kv,
    } as const
  }

  /** Frees a loaded file (the F32 file of the check is 4x the Q4_0 one). */
  async unload(file: string): Promise<void> {
    await this.models.get(file)?.dispose()
    this.models.delete(file)
  }

  async dispose(): Promise<void> {
    for (const m of this.models.values()) await m.dispose()
    this.models.clear()
    await this.llama.dispose()
  }
}
