// The mutator of the TypeScript fuzzer (docs/fuzzing.md): libFuzzer-style byte mutations (bit flips, interesting
// bytes, chunk deletion / duplication, dictionary words, crossover) plus structure-aware ones that edit the parsed
// JSON tree (replace, delete, insert, duplicate, wrap, retype nodes), the records layout (JSON array vs JSONL) or
// the safetensors header, and write it back. Deterministic for a given seed.
import type { InputKind } from './jsTarget'

/** mulberry32: small, fast, good enough to drive mutations, and reproducible from FUZZ_SEED. */
export class Rng {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0 || 1
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
  below(n: number): number {
    return n <= 1 ? 0 : this.next() % n
  }
  chance(p: number): boolean {
    return this.next() / 0x100000000 < p
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!
  }
}

export interface MutationContext {
  rng: Rng
  kind: InputKind
  dictionary: readonly string[]
  fragments: readonly unknown[]
  /** Other inputs, for crossover. */
  corpus: readonly Uint8Array[]
  maxLength: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

const INTERESTING_BYTES = [
  0x00, 0x01, 0x09, 0x0a, 0x0d, 0x1b, 0x20, 0x22, 0x2c, 0x2d, 0x30, 0x3a, 0x5b, 0x5c, 0x5d, 0x7b, 0x7d, 0x7f, 0x80,
  0xbf, 0xc0, 0xed, 0xef, 0xf4, 0xff,
]
const INTERESTING_NUMBERS = [
  0,
  -0,
  1,
  -1,
  2,
  0.5,
  1.5,
  7,
  64,
  255,
  256,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  1e21,
  1e308,
  -1e308,
  5e-324,
  1e-7,
]
const INTERESTING_STRINGS = [
  '',
  ' ',
  '\t',
  '\n',
  'a',
  '0',
  '1',
  '-1',
  'true',
  'null',
  '\u0000',
  '\u001b[31m',
  '\r\n',
  '\ud800',
  '\udfff',
  '\ufffd',
  '\ufeff',
  'é',
  '真人化',
  '🙂',
  '<s>',
  '</s>',
  '{{',
  '}}',
  '{%',
  '%}',
  '"',
  '\\',
  'x'.repeat(300),
  'y'.repeat(5000),
]

// ---- byte mutations ---------------------------------------------------------------------------------------------

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

function chunk(rng: Rng, length: number): [number, number] {
  if (length === 0) return [0, 0]
  const start = rng.below(length)
  const max = Math.max(1, Math.min(length - start, rng.chance(0.8) ? 16 : length))
  return [start, start + 1 + rng.below(max)]
}

export function mutateBytes(input: Uint8Array, ctx: MutationContext): Uint8Array {
  const { rng } = ctx
  const b = input
  const at = rng.below(b.length + 1)
  switch (rng.below(10)) {
    case 0: {
      if (b.length === 0) break
      const out = b.slice()
      out[rng.below(b.length)]! ^= 1 << rng.below(8)
      return out
    }
    case 1: {
      if (b.length === 0) break
      const out = b.slice()
      out[rng.below(b.length)] = rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : rng.below(256)
      return out
    }
    case 2: {
      const [s, e] = chunk(rng, b.length)
      return concat(b.subarray(0, s), b.subarray(e))
    }
    case 3: {
      const [s, e] = chunk(rng, b.length)
      return concat(b.subarray(0, at), b.subarray(s, e), b.subarray(at))
    }
    case 4:
    case 5: {
      const word =
        rng.chance(0.7) && ctx.dictionary.length > 0
          ? JSON.stringify(rng.pick(ctx.dictionary))
          : rng.pick(INTERESTING_STRINGS)
      return concat(
        b.subarray(0, at),
        encoder.encode(rng.chance(0.5) ? word : word.replace(/^"|"$/g, '')),
        b.subarray(at),
      )
    }
    case 6: {
      const random = Uint8Array.from({ length: 1 + rng.below(8) }, () => rng.below(256))
      return concat(b.subarray(0, at), random, b.subarray(at))
    }
    case 7: {
      if (ctx.corpus.length === 0) break
      const other = rng.pick(ctx.corpus)
      return concat(b.subarray(0, at), other.subarray(rng.below(other.length + 1)))
    }
    case 8:
      return b.subarray(0, at)
    case 9: {
      const n = String(rng.pick(INTERESTING_NUMBERS))
      return concat(b.subarray(0, at), encoder.encode(n), b.subarray(Math.min(b.length, at + rng.below(4))))
    }
  }
  return concat(b, Uint8Array.of(rng.below(256)))
}

// ---- JSON tree mutations ----------------------------------------------------------------------------------------

type Json = unknown

function randomValue(ctx: MutationContext, depth = 0): Json {
  const { rng } = ctx
  switch (rng.below(depth > 2 ? 4 : 7)) {
    case 0:
      return rng.pick([null, true, false])
    case 1:
      return rng.chance(0.7) ? rng.pick(INTERESTING_NUMBERS) : rng.below(100) - 10
    case 2:
      return rng.chance(0.5) && ctx.dictionary.length > 0 ? rng.pick(ctx.dictionary) : rng.pick(INTERESTING_STRINGS)
    case 3:
      return ctx.fragments.length > 0 ? structuredClone(rng.pick(ctx.fragments)) : rng.pick(INTERESTING_STRINGS)
    case 4:
      return Array.from({ length: rng.below(4) }, () => randomValue(ctx, depth + 1))
    case 5: {
      const o: Record<string, Json> = {}
      for (let i = rng.below(4); i > 0; i--)
        o[ctx.dictionary.length > 0 ? rng.pick(ctx.dictionary) : 'k'] = randomValue(ctx, depth + 1)
      return o
    }
    default: {
      let v: Json = randomValue(ctx, depth + 1)
      for (let i = rng.below(depth === 0 ? 80 : 3); i > 0; i--) v = [v]
      return v
    }
  }
}

/** Every container in the tree with a way to replace one of its children. */
interface Slot {
  parent: Record<string, Json> | Json[]
  key: string | number
}

function slots(root: Json, out: Slot[] = [], depth = 0): Slot[] {
  if (depth > 40 || out.length > 2000) return out
  if (Array.isArray(root)) root.forEach((v, i) => (out.push({ parent: root, key: i }), slots(v, out, depth + 1)))
  else if (root && typeof root === 'object')
    for (const [k, v] of Object.entries(root)) {
      out.push({ parent: root as Record<string, Json>, key: k })
      slots(v, out, depth + 1)
    }
  return out
}

function get(s: Slot): Json {
  return (s.parent as Record<string | number, Json>)[s.key]
}
function set(s: Slot, v: Json): void {
  ;(s.parent as Record<string | number, Json>)[s.key] = v
}

function retype(v: Json, ctx: MutationContext): Json {
  if (typeof v === 'string')
    return ctx.rng.pick([Number(v) || 0, [v], { content: v }, v.trim(), `${v}${v}`, ` ${v}`, null])
  if (typeof v === 'number') return ctx.rng.pick([String(v), -v, v + 1, v * 1e300, v / 3, [v]])
  if (Array.isArray(v)) return ctx.rng.pick([v[0] ?? null, {}, [...v, ...v], v.slice(1), JSON.stringify(v)])
  if (v && typeof v === 'object') return ctx.rng.pick([Object.values(v), JSON.stringify(v), []])
  return randomValue(ctx)
}

/** One edit of the tree, in place where possible; returns the (possibly new) root. */
export function mutateTree(root: Json, ctx: MutationContext): Json {
  const { rng } = ctx
  const all = slots(root)
  if (all.length === 0 || rng.chance(0.05)) return rng.chance(0.5) ? randomValue(ctx) : [root]
  const s = rng.pick(all)
  switch (rng.below(8)) {
    case 0:
      set(s, randomValue(ctx))
      break
    case 1:
      if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1)
      else delete s.parent[s.key as string]
      break
    case 2: {
      const target = get(s)
      if (target && typeof target === 'object' && !Array.isArray(target))
        (target as Record<string, Json>)[ctx.dictionary.length > 0 ? rng.pick(ctx.dictionary) : 'x'] = randomValue(ctx)
      else if (Array.isArray(target)) target.splice(rng.below(target.length + 1), 0, randomValue(ctx))
      else set(s, retype(target, ctx))
      break
    }
    case 3:
      if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 0, structuredClone(get(s)))
      else set(s, [get(s), get(s)])
      break
    case 4:
      set(s, retype(get(s), ctx))
      break
    case 5:
      set(s, rng.chance(0.5) ? [get(s)] : { [rng.pick(ctx.dictionary.length > 0 ? ctx.dictionary : ['k'])]: get(s) })
      break
    case 6: {
      const other = rng.pick(all)
      const v = get(other)
      set(other, get(s))
      set(s, v)
      break
    }
    default:
      set(s, rng.pick(INTERESTING_STRINGS))
  }
  return root
}

// ---- formats ----------------------------------------------------------------------------------------------------

function parseText(bytes: Uint8Array): string | null {
  try {
    return decoder.decode(bytes).replace(/^\ufeff/, '')
  } catch {
    return null
  }
}

function stringify(v: Json, ctx: MutationContext): string {
  return JSON.stringify(v, null, ctx.rng.pick([undefined, undefined, 2, 4, '\t'])) ?? 'null'
}

/** Either layout of a record list: one JSON array, or JSONL (with the odd blank line, CRLF or BOM). */
function writeRecords(rows: Json[], ctx: MutationContext): string {
  const { rng } = ctx
  if (rng.chance(0.4)) return stringify(rows, ctx)
  const lines = rows.map((r) => JSON.stringify(r) ?? 'null')
  if (rng.chance(0.2)) lines.splice(rng.below(lines.length + 1), 0, rng.pick(['', '   ', '\t']))
  return (
    (rng.chance(0.05) ? '\ufeff' : '') + lines.join(rng.chance(0.2) ? '\r\n' : '\n') + (rng.chance(0.5) ? '\n' : '')
  )
}

function readRecords(t: string): Json[] | null {
  try {
    if (t.trimStart().startsWith('[')) {
      const v = JSON.parse(t) as Json
      return Array.isArray(v) ? v : null
    }
    return t
      .split(/\r?\n/)
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Json)
  } catch {
    return null
  }
}

function mutateJson(input: Uint8Array, ctx: MutationContext): Uint8Array | null {
  const t = parseText(input)
  if (t === null) return null
  if (ctx.kind === 'json-records') {
    const rows = readRecords(t)
    if (rows === null) return null
    const root = mutateTree(rows, ctx)
    return encoder.encode(Array.isArray(root) ? writeRecords(root, ctx) : stringify(root, ctx))
  }
  let v: Json
  try {
    v = JSON.parse(t)
  } catch {
    return null
  }
  return encoder.encode(stringify(mutateTree(v, ctx), ctx))
}

/** safetensors: edit the header tree and re-encode, usually with a correct length prefix and the same data. */
function mutateSafetensors(input: Uint8Array, ctx: MutationContext): Uint8Array | null {
  if (input.length < 8) return null
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength)
  const n = Number(view.getBigUint64(0, true))
  if (n > input.length - 8) return null
  const t = parseText(input.subarray(8, 8 + n))
  if (t === null) return null
  let header: Json
  try {
    header = JSON.parse(t)
  } catch {
    return null
  }
  const json = encoder.encode(JSON.stringify(mutateTree(header, ctx)))
  const length = new Uint8Array(8)
  const declared = ctx.rng.chance(0.9) ? json.length : Math.max(0, json.length + ctx.rng.below(17) - 8)
  new DataView(length.buffer).setBigUint64(0, BigInt(declared), true)
  let data = input.subarray(8 + n)
  if (ctx.rng.chance(0.2)) data = data.subarray(0, ctx.rng.below(data.length + 1))
  return concat(length, json, data)
}

/** One mutated child of `input`, at most ctx.maxLength bytes. */
export function mutate(input: Uint8Array, ctx: MutationContext): Uint8Array {
  let out: Uint8Array | null = null
  if (ctx.rng.chance(0.5)) out = ctx.kind === 'safetensors' ? mutateSafetensors(input, ctx) : mutateJson(input, ctx)
  if (out === null || ctx.rng.chance(0.2)) {
    out = out ?? input
    for (let i = 1 + ctx.rng.below(3); i > 0; i--) out = mutateBytes(out, ctx)
  }
  return out.length > ctx.maxLength ? out.subarray(0, ctx.maxLength) : out
}
