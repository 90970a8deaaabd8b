// Writes a model's tensors as Hugging Face safetensors, streamed tensor by tensor: one model.safetensors, or shards
// of at most `shardBytes` with model.safetensors.index.json (transformers' layout), each write checked.
import { closeSync, openSync } from 'node:fs'
import { join } from 'node:path'
import { writeAll } from '../fsAtomic'
import { DTYPE_BYTES, type SafetensorsDtype } from '../training/safetensorsBytes'

export interface PlannedTensor {
  name: string
  dtype: SafetensorsDtype
  shape: number[]
}

/** transformers' default shard limit (save_pretrained max_shard_size "5GB"). */
export const DEFAULT_SHARD_BYTES = 5 * 1000 ** 3

function sizeOf(t: PlannedTensor): number {
  return t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype]
}

/** The 8-byte length and the JSON header (metadata first, tensors in data order, space-padded to 8 bytes). */
function header(tensors: readonly PlannedTensor[]): Buffer {
  const h: Record<string, unknown> = { __metadata__: { format: 'pt' } }
  let offset = 0
  for (const t of tensors) {
    const n = sizeOf(t)
    h[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] }
    offset += n
  }
  let json = Buffer.from(JSON.stringify(h), 'utf8')
  const pad = (8 - (json.length % 8)) % 8
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)])
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(json.length))
  return Buffer.concat([len, json])
}

/**
 * Writes `tensors` into `dir` in the given order; `bytesOf(name)` supplies each tensor's bytes when its turn comes.
 * Returns the files written.
 */
export function writeSafetensors(
  dir: string,
  tensors: readonly PlannedTensor[],
  bytesOf: (name: string) => Uint8Array,
  shardBytes = DEFAULT_SHARD_BYTES,
  onTensor?: (done: number, total: number) => void,
): string[] {
  const shards: PlannedTensor[][] = [[]]
  let size = 0
  for (const t of tensors) {
    const n = sizeOf(t)
    if (size > 0 && size + n > shardBytes) {
      shards.push([])
      size = 0
    }
    shards[shards.length - 1]!.push(t)
    size += n
  }
  const names =
    shards.length === 1
      ? ['model.safetensors']
      : shards.map(
          (_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`,
        )
  let done = 0
  shards.forEach((shard, i) => {
    const fd = openSync(join(dir, names[i]!), 'w')
    try {
      writeAll(fd, header(shard))
      for (const t of shard) {
        const bytes = bytesOf(t.name)
        if (bytes.length !== sizeOf(t))
          throw new Error(`tensor ${t.name}: ${bytes.length} bytes, expected ${sizeOf(t)}`)
        writeAll(fd, bytes)
        onTensor?.(++done, tensors.length)
      }
    } finally {
      closeSync(fd)
    }
  })
  if (shards.length > 1) {
    const weightMap: Record<string, string> = {}
    shards.forEach((shard, i) => shard.forEach((t) => (weightMap[t.name] = names[i]!)))
    const index = { metadata: { total_size: tensors.reduce((a, t) => a + sizeOf(t), 0) }, weight_map: weightMap }
    const fd = openSync(join(dir, 'model.safetensors.index.json'), 'w')
    try {
      writeAll(fd, Buffer.from(JSON.stringify(index, null, 2) + '\n'))
    } finally {
      closeSync(fd)
    }
    names.push('model.safetensors.index.json')
  }
  return names.map((n) => join(dir, n))
}
