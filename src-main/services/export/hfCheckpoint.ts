// A Hugging Face model folder opened for reading tensor by tensor: config.json, and model.safetensors or the shards
// of model.safetensors.index.json, with every tensor's place in its file. Nothing is read whole, so a 7B checkpoint
// (15 GB) streams through the exporters one tensor at a time.
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { StudioError, errorMessage } from '../errors'
import { DTYPE_BYTES, type SafetensorsDtype } from '../training/safetensorsBytes'
import { halfToFloat } from '../training/adapterFiles'

export interface CheckpointTensor {
  name: string
  dtype: SafetensorsDtype
  shape: number[]
  /** Absolute path of the safetensors file holding it. */
  file: string
  /** Byte offset of its data in that file, and its length. */
  offset: number
  bytes: number
}

const FLOAT_DTYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16'])

export class HfCheckpoint {
  private readonly fds = new Map<string, number>()

  private constructor(
    readonly dir: string,
    readonly config: Record<string, unknown>,
    /** Tensors in file order (shards in index order), by name. */
    readonly tensors: Map<string, CheckpointTensor>,
  ) {}

  static open(dir: string): HfCheckpoint {
    const abs = resolve(dir)
    const bad = (msg: string) => new StudioError('E_BAD_MODEL', msg, { details: { model: abs } })
    const cfgFile = join(abs, 'config.json')
    if (!existsSync(cfgFile)) throw bad(`model directory ${abs} has no config.json`)
    let config: Record<string, unknown>
    try {
      config = JSON.parse(readFileSync(cfgFile, 'utf8')) as Record<string, unknown>
    } catch (e) {
      throw bad(`${cfgFile}: not valid JSON: ${errorMessage(e)}`)
    }
    const files = weightFiles(abs, bad)
    const tensors = new Map<string, CheckpointTensor>()
    for (const file of files) {
      for (const t of readHeader(file)) {
        if (tensors.has(t.name)) throw bad(`tensor ${t.name} appears in two weight files`)
        tensors.set(t.name, t)
      }
    }
    return new HfCheckpoint(abs, config, tensors)
  }

  /** A bitsandbytes pre-quantized (*-bnb-4bit) checkpoint: its linears are packed 4-bit codes, not floats. */
  get isPrequantized(): boolean {
    return (
      this.config.quantization_config !== undefined ||
      [...this.tensors.keys()].some((n) => n.endsWith('.weight.absmax'))
    )
  }

  get(name: string): CheckpointTensor {
    const t = this.tensors.get(name)
    if (!t)
      throw new StudioError('E_BAD_MODEL', `${this.dir}: tensor ${name} is missing`, {
        details: { model: this.dir, tensor: name },
      })
    return t
  }

  /** The tensor's stored bytes. */
  readRaw(name: string): Buffer {
    const t = this.get(name)
    const buf = Buffer.allocUnsafe(t.bytes)
    let fd = this.fds.get(t.file)
    if (fd === undefined) {
      fd = openSync(t.file, 'r')
      this.fds.set(t.file, fd)
    }
    let done = 0
    while (done < t.bytes) {
      const n = readSync(fd, buf, done, t.bytes - done, t.offset + done)
      if (n === 0)
        throw new StudioError('E_BAD_MODEL', `${t.file}: tensor ${name} ends past the end of the file`, {
          details: { file: t.file, tensor: name },
        })
      done += n
    }
    return buf
  }

  /** The tensor widened to fp32 (F32, F16 or BF16 only). */
  readFloat32(name: string): Float32Array {
    const t = this.get(name)
    if (!FLOAT_DTYPES.has(t.dtype)) {
      throw new StudioError('E_BAD_MODEL', `${t.file}: tensor ${name} is ${t.dtype}, not a float tensor`, {
        details: { file: t.file, tensor: name },
      })
    }
    return decodeFloats(this.readRaw(name), t.dtype)
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd)
    this.fds.clear()
  }
}

/** Every binary16 bit pattern's value: decoding a 7B checkpoint's fp16 tensors is then one lookup per value. */
let halfTable: Float32Array | undefined
function halfValues(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536)
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h)
  }
  return halfTable
}

/** Raw little-endian F32 / F16 / BF16 bytes as fp32 values (typed-array views: the hosts we run on are little-endian). */
export function decodeFloats(raw: Buffer, dtype: SafetensorsDtype): Float32Array {
  if (dtype === 'F32') return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length))
  const n = raw.length / 2
  const halves =
    raw.byteOffset % 2 === 0
      ? new Uint16Array(raw.buffer, raw.byteOffset, n)
      : new Uint16Array(Uint8Array.from(raw).buffer)
  const out = new Float32Array(n)
  if (dtype === 'BF16') {
    const u = new Uint32Array(out.buffer)
    for (let i = 0; i < n; i++) u[i] = halves[i]! << 16
  } else {
    const table = halfValues()
    for (let i = 0; i < n; i++) out[i] = table[halves[i]!]!
  }
  return out
}

function weightFiles(dir: string, bad: (m: string) => StudioError): string[] {
  const single = join(dir, 'model.safetensors')
  const index = join(dir, 'model.safetensors.index.json')
  if (existsSync(index)) {
    let map: unknown
    try {
      map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: unknown }).weight_map
    } catch (e) {
      throw bad(`${index}: not valid JSON: ${errorMessage(e)}`)
    }
    if (typeof map !== 'object' || map === null) throw bad(`${index} has no weight_map`)
    const files = [...new Set(Object.values(map as Record<string, unknown>).map(String))]
    for (const f of files) if (!existsSync(join(dir, f))) throw bad(`${index} names ${f}, which is missing`)
    return files.map((f) => join(dir, f))
  }
  if (existsSync(single)) return [single]
  throw bad(
    `model directory ${dir} has no model.safetensors (or model.safetensors.index.json); only safetensors weights are read`,
  )
}

/** The tensors listed in one safetensors file's header, with absolute offsets; each checked against the file size. */
function readHeader(file: string): CheckpointTensor[] {
  const bad = (msg: string, tensor?: string) =>
    new StudioError('E_BAD_MODEL', `${file}: ${tensor ? `tensor ${tensor}: ` : ''}${msg}`, {
      details: { file, tensor },
    })
  const size = statSync(file).size
  const fd = openSync(file, 'r')
  try {
    const lenBuf = Buffer.alloc(8)
    if (readSync(fd, lenBuf, 0, 8, 0) !== 8) throw bad('too short for a safetensors header')
    const headerLen = Number(lenBuf.readBigUInt64LE(0))
    if (headerLen > size - 8) throw bad(`header length ${headerLen} runs past the end of the file`)
    const json = Buffer.alloc(headerLen)
    readSync(fd, json, 0, headerLen, 8)
    let header: Record<string, unknown>
    try {
      header = JSON.parse(json.toString('utf8')) as Record<string, unknown>
    } catch (e) {
      throw bad(`header is not valid JSON: ${errorMessage(e)}`)
    }
    const base = 8 + headerLen
    const out: CheckpointTensor[] = []
    for (const [name, info] of Object.entries(header)) {
      if (name === '__metadata__') continue
      const t = info as { dtype?: string; shape?: number[]; data_offsets?: [number, number] }
      const dtype = t.dtype as SafetensorsDtype
      if (!(dtype in DTYPE_BYTES))
        throw bad(`dtype ${JSON.stringify(t.dtype)} is not supported (F32, F16, BF16 or U8)`, name)
      if (!Array.isArray(t.shape) || !Array.isArray(t.data_offsets))
        throw bad('entry lacks shape or data_offsets', name)
      const [b, e] = t.data_offsets
      const count = t.shape.reduce((x, y) => x * y, 1)
      if (e - b !== count * DTYPE_BYTES[dtype])
        throw bad(`shape [${t.shape}] ${dtype} does not match data_offsets [${b}, ${e}]`, name)
      if (base + e > size) throw bad(`data runs past the end of the file (truncated?)`, name)
      out.push({ name, dtype, shape: t.shape, file, offset: base + b, bytes: e - b })
    }
    return out.sort((x, y) => x.offset - y.offset)
  } finally {
    closeSync(fd)
  }
}
