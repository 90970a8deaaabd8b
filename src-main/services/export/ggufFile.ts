// The GGUF v3 container (ggml's docs/gguf.md, read for this project; our own code): a header, typed key-value
// metadata, tensor descriptions, then each tensor's data at a multiple of the alignment (32 bytes). Writes stream
// tensor by tensor; the reader parses what we write (tests, and checking an export before it is shown).
import { closeSync, openSync, readSync } from 'node:fs'
import { StudioError } from '../errors'
import { writeAll } from '../fsAtomic'

const MAGIC = 0x46554747 // "GGUF" little-endian
export const GGUF_VERSION = 3
export const GGUF_ALIGNMENT = 32

/** Metadata value types (gguf.md, gguf_metadata_value_type). */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** ggml tensor types written here (ggml.h, ggml_type). */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
}

/** Bytes per block and values per block of each type. */
export const GGML_LAYOUT: Record<GgmlType, { block: number; bytes: number }> = {
  [GgmlType.F32]: { block: 1, bytes: 4 },
  [GgmlType.F16]: { block: 1, bytes: 2 },
  [GgmlType.Q4_0]: { block: 32, bytes: 18 },
  [GgmlType.Q8_0]: { block: 32, bytes: 34 },
}

export type GgufValue =
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.UINT32 | GgufValueType.INT32 | GgufValueType.FLOAT32 | GgufValueType.UINT64; value: number }
  | { type: GgufValueType.BOOL; value: boolean }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType.STRING; value: string[] }
  | {
      type: GgufValueType.ARRAY
      itemType: GgufValueType.FLOAT32 | GgufValueType.INT32 | GgufValueType.UINT32
      value: number[]
    }

export const kv = {
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  strs: (value: string[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value }),
  f32s: (value: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32, value }),
  i32s: (value: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value }),
  u32s: (value: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.UINT32, value }),
}

export interface GgufTensorInfo {
  name: string
  /** ggml order: dims[0] is the fastest-varying (a PyTorch (out, in) matrix is [in, out]). */
  dims: number[]
  type: GgmlType
}

export function tensorBytes(t: GgufTensorInfo): number {
  const n = t.dims.reduce((a, b) => a * b, 1)
  const { block, bytes } = GGML_LAYOUT[t.type]
  if (n % block !== 0)
    throw new StudioError('E_INTERNAL', `tensor ${t.name}: ${n} values are not whole blocks of ${block}`)
  return (n / block) * bytes
}

const align = (n: number) => Math.ceil(n / GGUF_ALIGNMENT) * GGUF_ALIGNMENT

/** A growable little-endian byte buffer for the header. */
class Bytes {
  private buf = Buffer.alloc(1 << 16)
  length = 0
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n))
    this.buf.copy(next, 0, 0, this.length)
    this.buf = next
  }
  u32(v: number): void {
    this.room(4)
    this.buf.writeUInt32LE(v >>> 0, this.length)
    this.length += 4
  }
  i32(v: number): void {
    this.room(4)
    this.buf.writeInt32LE(v, this.length)
    this.length += 4
  }
  u64(v: number): void {
    this.room(8)
    this.buf.writeBigUInt64LE(BigInt(v), this.length)
    this.length += 8
  }
  f32(v: number): void {
    this.room(4)
    this.buf.writeFloatLE(v, this.length)
    this.length += 4
  }
  u8(v: number): void {
    this.room(1)
    this.buf.writeUInt8(v, this.length)
    this.length += 1
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8')
    this.u64(b.length)
    this.room(b.length)
    b.copy(this.buf, this.length)
    this.length += b.length
  }
  zeros(n: number): void {
    this.room(n)
    this.buf.fill(0, this.length, this.length + n)
    this.length += n
  }
  done(): Buffer {
    return this.buf.subarray(0, this.length)
  }
}

function writeValue(out: Bytes, v: GgufValue): void {
  out.u32(v.type)
  switch (v.type) {
    case GgufValueType.STRING:
      out.str(v.value)
      break
    case GgufValueType.UINT32:
      out.u32(v.value)
      break
    case GgufValueType.INT32:
      out.i32(v.value)
      break
    case GgufValueType.FLOAT32:
      out.f32(v.value)
      break
    case GgufValueType.UINT64:
      out.u64(v.value)
      break
    case GgufValueType.BOOL:
      out.u8(v.value ? 1 : 0)
      break
    case GgufValueType.ARRAY:
      out.u32(v.itemType)
      out.u64(v.value.length)
      for (const item of v.value) {
        if (v.itemType === GgufValueType.STRING) out.str(item as string)
        else if (v.itemType === GgufValueType.FLOAT32) out.f32(item as number)
        else if (v.itemType === GgufValueType.INT32) out.i32(item as number)
        else out.u32(item as number)
      }
      break
  }
}

/** The file up to the first tensor's data: header, metadata, tensor infos (offsets in order), padding. */
export function ggufHeader(metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensorInfo[]): Buffer {
  const out = new Bytes()
  out.u32(MAGIC)
  out.u32(GGUF_VERSION)
  out.u64(tensors.length)
  out.u64(metadata.size)
  for (const [key, value] of metadata) {
    out.str(key)
    writeValue(out, value)
  }
  let offset = 0
  for (const t of tensors) {
    out.str(t.name)
    out.u32(t.dims.length)
    for (const d of t.dims) out.u64(d)
    out.u32(t.type)
    out.u64(offset)
    offset = align(offset + tensorBytes(t))
  }
  out.zeros(align(out.length) - out.length)
  return out.done()
}

/** Writes a whole GGUF file; `dataOf(tensor)` gives each tensor's encoded bytes in turn. */
export function writeGguf<T extends GgufTensorInfo>(
  path: string,
  metadata: ReadonlyMap<string, GgufValue>,
  tensors: readonly T[],
  dataOf: (t: T) => Uint8Array,
  onTensor?: (done: number, total: number) => void,
): void {
  const fd = openSync(path, 'w')
  try {
    writeAll(fd, ggufHeader(metadata, tensors))
    tensors.forEach((t, i) => {
      const data = dataOf(t)
      if (data.length !== tensorBytes(t))
        throw new StudioError('E_INTERNAL', `tensor ${t.name}: ${data.length} bytes, expected ${tensorBytes(t)}`)
      writeAll(fd, data)
      const pad = align(data.length) - data.length
      if (pad > 0) writeAll(fd, new Uint8Array(pad))
      onTensor?.(i + 1, tensors.length)
    })
  } finally {
    closeSync(fd)
  }
}

// ---- reading (what we write: scalars, strings and arrays of them) ------------------------------------------------

export interface ParsedGguf {
  version: number
  metadata: Map<string, unknown>
  tensors: Array<GgufTensorInfo & { offset: number }>
  /** Absolute file offset of the data section. */
  dataStart: number
}

export function readGguf(path: string): ParsedGguf {
  const fd = openSync(path, 'r')
  let pos = 0
  const take = (n: number): Buffer => {
    const b = Buffer.alloc(n)
    if (readSync(fd, b, 0, n, pos) !== n) throw new StudioError('E_BAD_INPUT', `${path}: truncated GGUF file`)
    pos += n
    return b
  }
  const u32 = () => take(4).readUInt32LE(0)
  const u64 = () => Number(take(8).readBigUInt64LE(0))
  const str = () => take(u64()).toString('utf8')
  const scalar = (type: number): unknown => {
    switch (type) {
      case GgufValueType.UINT8:
        return take(1).readUInt8(0)
      case GgufValueType.INT8:
        return take(1).readInt8(0)
      case GgufValueType.UINT16:
        return take(2).readUInt16LE(0)
      case GgufValueType.INT16:
        return take(2).readInt16LE(0)
      case GgufValueType.UINT32:
        return u32()
      case GgufValueType.INT32:
        return take(4).readInt32LE(0)
      case GgufValueType.FLOAT32:
        return take(4).readFloatLE(0)
      case GgufValueType.BOOL:
        return take(1).readUInt8(0) !== 0
      case GgufValueType.STRING:
        return str()
      case GgufValueType.UINT64:
        return u64()
      case GgufValueType.INT64:
        return Number(take(8).readBigInt64LE(0))
      case GgufValueType.FLOAT64:
        return take(8).readDoubleLE(0)
      case GgufValueType.ARRAY: {
        const itemType = u32()
        const n = u64()
        return Array.from({ length: n }, () => scalar(itemType))
      }
      default:
        throw new StudioError('E_BAD_INPUT', `${path}: unknown metadata type ${type}`)
    }
  }
  try {
    if (u32() !== MAGIC) throw new StudioError('E_BAD_INPUT', `${path} is not a GGUF file`)
    const version = u32()
    const nTensors = u64()
    const nKv = u64()
    const metadata = new Map<string, unknown>()
    for (let i = 0; i < nKv; i++) {
      const key = str()
      metadata.set(key, scalar(u32()))
    }
    const tensors: ParsedGguf['tensors'] = []
    for (let i = 0; i < nTensors; i++) {
      const name = str()
      const nd = u32()
      const dims = Array.from({ length: nd }, () => u64())
      const type = u32() as GgmlType
      tensors.push({ name, dims, type, offset: u64() })
    }
    const alignment = Number(metadata.get('general.alignment') ?? GGUF_ALIGNMENT)
    return { version, metadata, tensors, dataStart: Math.ceil(pos / alignment) * alignment }
  } finally {
    closeSync(fd)
  }
}

/** One tensor's stored bytes from a parsed file. */
export function readGgufTensor(path: string, parsed: ParsedGguf, name: string): Buffer {
  const t = parsed.tensors.find((x) => x.name === name)
  if (!t) throw new StudioError('E_BAD_INPUT', `${path} has no tensor ${name}`)
  const n = tensorBytes(t)
  const b = Buffer.alloc(n)
  const fd = openSync(path, 'r')
  try {
    readSync(fd, b, 0, n, parsed.dataStart + t.offset)
  } finally {
    closeSync(fd)
  }
  return b
}
