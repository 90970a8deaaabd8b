// Reference log-probs cache: the adapter-disabled log-probs of every pair (sums and per-token values) are computed
// once before training (TRL's reference model, docs/reference/dpo-loss.md#reference-log-probs) and kept on disk, so
// later runs with the same model and data skip that pass; a pair scored the other way round (a support_ratio sweep
// swaps chosen and rejected) is found too.
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import type { ScoredSequence } from '../../addon/addonTypes'
import { lockWaiting, type FileLock } from '../fileLock'
import { writeJsonAtomic } from '../fsAtomic'

/** 2: per-token log-probs beside the sums (docs/insights.md); version-1 files are left alone and not read. */
export const REF_CACHE_VERSION = 2

export interface RefLogps {
  chosen: number
  rejected: number
  /** Per answer token, in order; their in-order double sum is chosen / rejected bit for bit. */
  chosenTokens?: Float32Array
  rejectedTokens?: Float32Array
}

/** The two sequences a pair is scored on (ids + labels after TRL tokenization, docs/reference/dpo-data.md#labels). */
export interface ScoredPair {
  chosen: ScoredSequence
  rejected: ScoredSequence
}

export interface ModelFingerprintInput {
  modelDir: string
  quant: string
  /**
   * The backend that computes (cpu / cuda): reference and policy passes must see the same numerics
   * (docs/reference/hw6-run.md#the-first-two-steps-log-ln-2).
   */
  backend: string
  engineVersion: string
}

/** The cache folder: $DPO_STUDIO_CACHE/ref-logps, else $XDG_CACHE_HOME/dpo-studio/ref-logps, else ~/.cache/dpo-studio/ref-logps. */
export function refCacheDir(): string {
  const root = process.env.DPO_STUDIO_CACHE
  if (root) return join(resolve(root), 'ref-logps')
  const xdg = process.env.XDG_CACHE_HOME
  return join(xdg ? resolve(xdg) : join(homedir(), '.cache'), 'dpo-studio', 'ref-logps')
}

/**
 * sha256 over what decides the reference model's numbers: config.json's text, the weight files' names, sizes and
 * modification times (cheap: hashing 15 GB of weights per run would cost more than the pass it saves; a copied or
 * rewritten checkpoint gets a new mtime and so a new fingerprint), the quantization, the backend and the engine
 * version. The data side (template, system message, pairs, truncation) is covered per pair by pairKey.
 */
export function modelFingerprint(input: ModelFingerprintInput): string {
  const dir = resolve(input.modelDir)
  const h = createHash('sha256')
  h.update(`dpo-studio ref-logps v${REF_CACHE_VERSION}\n`)
  h.update(readFileSync(join(dir, 'config.json')))
  const weights = readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors') || f.endsWith('.safetensors.index.json') || f.endsWith('.bin'))
    .sort()
  for (const f of weights) {
    const st = statSync(join(dir, f))
    h.update(`\n${f}\t${st.size}\t${st.mtimeMs}`)
  }
  h.update(`\nquant=${input.quant}\nbackend=${input.backend}\nengine=${input.engineVersion}\n`)
  return h.digest('hex')
}

/** sha256 of a pair's token ids and labels: these already encode the template, system message, data and truncation. */
export function pairKey(pair: ScoredPair): string {
  const h = createHash('sha256')
  for (const seq of [pair.chosen.ids, pair.chosen.labels, pair.rejected.ids, pair.rejected.labels]) {
    const a = Int32Array.from(seq)
    h.update(new Uint8Array(Int32Array.of(a.length).buffer))
    h.update(new Uint8Array(a.buffer))
  }
  return h.digest('hex')
}

/** The key of the same pair with chosen and rejected exchanged (RefLogpsCache.lookup). */
export function swappedPairKey(pair: ScoredPair): string {
  return pairKey({ chosen: pair.rejected, rejected: pair.chosen })
}

/** sha256 over every pair key in order: one id for "this exact tokenized data set". */
export function dataFingerprint(keys: readonly string[]): string {
  return createHash('sha256').update(keys.join('\n')).digest('hex')
}

/** One pair: [chosen sum, rejected sum, chosen per-token, rejected per-token] (per-token: little-endian float32, base64). */
type CacheEntry = [number, number, string, string]

interface CacheFile {
  version: number
  fingerprint: string
  model: Omit<ModelFingerprintInput, 'modelDir'> & { dir: string }
  updated: string
  /** pairKey -> the pair's reference log-probs. */
  entries: Record<string, CacheEntry>
}

/** In-order double sum, the way the engine adds a sequence's token log-probs. */
export function sumInOrder(values: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < values.length; i++) s += values[i]!
  return s
}

function floatsToBase64(a: Float32Array): string {
  const le = new DataView(new ArrayBuffer(a.length * 4))
  a.forEach((v, i) => le.setFloat32(i * 4, v, true))
  return Buffer.from(le.buffer).toString('base64')
}

function base64ToFloats(text: string): Float32Array | null {
  const bytes = Buffer.from(text, 'base64')
  if (bytes.length % 4 !== 0) return null
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  return Float32Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true))
}

/** A stored entry back to values, or null when it is malformed or its sums do not match its tokens. */
function readEntry(v: unknown): RefLogps | null {
  if (!Array.isArray(v) || v.length !== 4) return null
  const [c, r, ct, rt] = v as unknown[]
  if (typeof c !== 'number' || typeof r !== 'number' || typeof ct !== 'string' || typeof rt !== 'string') return null
  const chosenTokens = base64ToFloats(ct)
  const rejectedTokens = base64ToFloats(rt)
  if (!chosenTokens || !rejectedTokens || sumInOrder(chosenTokens) !== c || sumInOrder(rejectedTokens) !== r)
    return null
  return { chosen: c, rejected: r, chosenTokens, rejectedTokens }
}

/**
 * One cache file per model fingerprint (<dir>/<fingerprint>.json) holding entries per pair, so a run on more or
 * other pairs reuses whatever it shares with earlier runs. Saving merges with what other processes wrote since we
 * read the file, under a lock file (<file>.lock, fileLock.ts), then rewrites it atomically: two runs sharing the
 * cache keep each other's entries. A file that does not parse or does not belong to this fingerprint is ignored and
 * replaced on the next save.
 */
export class RefLogpsCache {
  private readonly entries = new Map<string, RefLogps>()
  private dirty = false
  /** Why an existing file was ignored (for the run log), or null. */
  readonly ignoredReason: string | null = null

  private constructor(
    readonly file: string | null,
    private readonly fingerprint: string,
    private readonly model: ModelFingerprintInput,
  ) {
    if (file === null) return
    try {
      for (const [k, v] of readEntries(file, fingerprint)) this.entries.set(k, v)
    } catch (e) {
      this.ignoredReason = `ignored the unreadable reference cache ${file} (${e instanceof Error ? e.message : String(e)}); it will be rewritten`
      this.dirty = true
    }
  }

  /** dir null = no disk cache (everything is computed, nothing is written). */
  static open(dir: string | null, model: ModelFingerprintInput): RefLogpsCache {
    const fingerprint = modelFingerprint(model)
    return new RefLogpsCache(dir === null ? null : join(dir, `${fingerprint}.json`), fingerprint, model)
  }

  get size(): number {
    return this.entries.size
  }

  get(key: string): RefLogps | undefined {
    const v = this.entries.get(key)
    return v ? { ...v } : undefined
  }

  /**
   * The pair's entry, or the entry of the same two sequences stored the other way round (swappedKey: chosen and
   * rejected exchanged), with its sides exchanged back. A sequence's log-probs depend only on its own ids and
   * labels, so both are the same numbers.
   */
  lookup(key: string, swappedKey: string): RefLogps | undefined {
    const direct = this.get(key)
    if (direct) return direct
    const v = this.entries.get(swappedKey)
    if (!v) return undefined
    return {
      chosen: v.rejected,
      rejected: v.chosen,
      ...(v.rejectedTokens ? { chosenTokens: v.rejectedTokens } : {}),
      ...(v.chosenTokens ? { rejectedTokens: v.chosenTokens } : {}),
    }
  }

  /** Stores a pair's values; only complete ones (finite sums with their per-token values) are kept. */
  set(key: string, value: RefLogps): void {
    // JSON cannot hold -Infinity/NaN; such a pair is simply recomputed next time.
    if (!Number.isFinite(value.chosen) || !Number.isFinite(value.rejected)) return
    if (!value.chosenTokens || !value.rejectedTokens) return
    this.entries.set(key, { ...value })
    this.dirty = true
  }

  /** Writes the file if anything changed. Failing to write a cache never fails a run: returns the error text. */
  save(): string | null {
    if (this.file === null || !this.dirty) return null
    let lock: FileLock | null = null
    try {
      mkdirSync(dirname(this.file), { recursive: true })
      // Saves take milliseconds; a lock still held after 10 s belongs to a stuck process: skip this save.
      lock = lockWaiting(`${this.file}.lock`, 'dpo-studio reference cache', 10_000)
      if (!lock) return `could not write the reference cache ${this.file}: another process holds ${this.file}.lock`
      // Entries other processes saved since this cache was read stay (the values of a key never differ).
      try {
        for (const [k, v] of readEntries(this.file, this.fingerprint)) if (!this.entries.has(k)) this.entries.set(k, v)
      } catch {
        /* unreadable or another fingerprint's: replaced below */
      }
      return this.write()
    } catch (e) {
      return `could not write the reference cache ${this.file}: ${e instanceof Error ? e.message : String(e)}`
    } finally {
      lock?.release()
    }
  }

  private write(): string | null {
    const body: CacheFile = {
      version: REF_CACHE_VERSION,
      fingerprint: this.fingerprint,
      model: {
        dir: resolve(this.model.modelDir),
        quant: this.model.quant,
        backend: this.model.backend,
        engineVersion: this.model.engineVersion,
      },
      updated: new Date().toISOString(),
      entries: Object.fromEntries(
        [...this.entries].map(([k, v]) => [
          k,
          [v.chosen, v.rejected, floatsToBase64(v.chosenTokens!), floatsToBase64(v.rejectedTokens!)] as CacheEntry,
        ]),
      ),
    }
    writeJsonAtomic(this.file!, body)
    this.dirty = false
    return null
  }
}

/**
 * The valid version-2 entries of a cache file (readEntry: sums that match their per-token values); none when the
 * file does not exist; throws when it is unreadable, another model's, or another version's.
 */
function readEntries(file: string, fingerprint: string): Map<string, RefLogps> {
  const out = new Map<string, RefLogps>()
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return out // no cache yet
  }
  const parsed = JSON.parse(text) as CacheFile
  if (parsed.version !== REF_CACHE_VERSION || parsed.fingerprint !== fingerprint)
    throw new Error('written for another model or version')
  if (typeof parsed.entries !== 'object' || parsed.entries === null) throw new Error('no entries')
  for (const [k, v] of Object.entries(parsed.entries)) {
    const entry = /^[0-9a-f]{64}$/.test(k) ? readEntry(v) : null
    if (entry) out.set(k, entry)
  }
  return out
}
