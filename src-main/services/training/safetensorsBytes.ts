// The safetensors container at the byte level (huggingface/safetensors format): an 8-byte little-endian header length,
// a JSON header (with __metadata__, string to string), then the tensors' bytes. Shared by the PEFT adapter files
// (adapterFiles.ts, float tensors) and the resume checkpoints (checkpoint.ts, float and uint8 tensors).
import { parseJson } from '../data/jsonText'
import { StudioError, errorMessage } from '../errors'
import { bare, quoted } from '../messageText'

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'U8'

export const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, U8: 1 }

/** One tensor as stored: its raw little-endian bytes. */
export interface RawTensor {
  name: string
  dtype: SafetensorsDtype
  shape: number[]
  bytes: Uint8Array
}

/**
 * The file's first bytes for the tensors in the given order, contiguous, as the reference (Rust) writer lays them out:
 * the 8-byte length, then the compact JSON header with __metadata__ first and the tensors in data order, padded with
 * spaces to a multiple of 8. The tensors' bytes follow it, in the same order.
 */
export function rawSafetensorsHeader(tensors: readonly RawTensor[], metadata: Record<string, string>): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1)
    if (count * DTYPE_BYTES[t.dtype] !== t.bytes.length) {
      throw new StudioError(
        'E_INTERNAL',
        `tensor ${t.name}: shape [${t.shape}] ${t.dtype} needs ${count * DTYPE_BYTES[t.dtype]} bytes, has ${t.bytes.length}`,
      )
    }
    if (t.name in header) throw new StudioError('E_INTERNAL', `tensor ${t.name} appears twice`)
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] }
    offset += t.bytes.length
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8')
  const pad = (8 - (json.length % 8)) % 8
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)])
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(json.length), 0)
  return Buffer.concat([len, json])
}

/** The whole file in memory: rawSafetensorsHeader, then the tensors' bytes. */
export function encodeRawSafetensors(tensors: readonly RawTensor[], metadata: Record<string, string>): Uint8Array {
  return Buffer.concat([rawSafetensorsHeader(tensors, metadata), ...tensors.map((t) => t.bytes)])
}

export interface DecodedRawSafetensors {
  metadata: Record<string, string>
  tensors: RawTensor[]
  /** The data section (everything after the header), e.g. to check a digest over it. */
  data: Uint8Array
}

/**
 * Reads the container and checks every entry (dtype among `dtypes`, shape, offsets inside the data, sizes). Tensor
 * bytes are views into `bytes`. Every error names the file and the tensor.
 */
export function decodeRawSafetensors(
  bytes: Uint8Array,
  file: string,
  dtypes: readonly SafetensorsDtype[],
): DecodedRawSafetensors {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const bad = (msg: string, tensor?: string) =>
    new StudioError('E_BAD_INPUT', `${file}: ${tensor ? `tensor ${bare(tensor)}: ` : ''}${msg}`, {
      details: { file, tensor },
    })
  if (buf.length < 8) throw bad(`file is ${buf.length} bytes, too short for a safetensors header`)
  const headerLen = buf.readBigUInt64LE(0)
  if (headerLen > BigInt(buf.length - 8))
    throw bad(`header length ${headerLen} runs past the end of the file (${buf.length} bytes)`)
  const n = Number(headerLen)
  const headerText = buf.subarray(8, 8 + n).toString('utf8')
  let header: unknown
  try {
    header = parseJson(headerText)
  } catch (e) {
    throw bad(`header is ${errorMessage(e)}`)
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('header is not a JSON object')
  const data = buf.subarray(8 + n)
  const metadata: Record<string, string> = {}
  const tensors: RawTensor[] = []
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof info === 'object' && info !== null) Object.assign(metadata, info)
      continue
    }
    const t = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
    if (typeof t !== 'object' || t === null) throw bad('entry is not an object', name)
    if (!(dtypes as readonly unknown[]).includes(t.dtype)) {
      throw bad(
        `dtype ${quoted(t.dtype)} is not supported (${dtypes.slice(0, -1).join(', ')} or ${dtypes[dtypes.length - 1]})`,
        name,
      )
    }
    const dtype = t.dtype as SafetensorsDtype
    const shape = t.shape
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
      throw bad('shape is not a list of sizes', name)
    const offs = t.data_offsets
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((o) => Number.isInteger(o) && o >= 0) ||
      offs[0] > offs[1]
    ) {
      throw bad('data_offsets is not [begin, end]', name)
    }
    const [begin, end] = offs as [number, number]
    if (end > data.length)
      throw bad(`data [${begin}, ${end}) lies outside the ${data.length} data bytes (truncated file?)`, name)
    const count = (shape as number[]).reduce((a, b) => a * b, 1)
    if (end - begin !== count * DTYPE_BYTES[dtype]) {
      throw bad(
        `shape [${shape}] ${dtype} needs ${count * DTYPE_BYTES[dtype]} bytes but data_offsets span ${end - begin}`,
        name,
      )
    }
    tensors.push({ name, dtype, shape: shape as number[], bytes: data.subarray(begin, end) })
  }
  return { metadata, tensors, data }
}
