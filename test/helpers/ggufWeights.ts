// The weights a GGUF model file really holds, read back into a Hugging Face folder our engine loads: every tensor
// decoded from its ggml type (F32, F16, Q8_0, Q4_0 by ggml-common.h's block layout) and the llama q/k rows put back
// in Hugging Face order. llama.cpp on the file against our engine on this folder checks the file itself; the rest of
// a quantized file's distance from the unquantized model is then the quantization's, measured separately.
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { GgmlType, readGguf, readGgufTensor, type ParsedGguf } from '../../src-main/services/export/ggufFile'
import { archInfo, ggufName, rotaryHeads } from '../../src-main/services/export/ggufModel'
import { HfCheckpoint } from '../../src-main/services/export/hfCheckpoint'
import { TOKENIZER_FILES } from '../../src-main/services/export/mergedModel'
import { encodeSafetensors, halfToFloat } from '../../src-main/services/training/adapterFiles'

/** One tensor's values in fp32 from its ggml bytes (blocks of 32: fp16 scale, then int8 codes or 4-bit pairs). */
export function decodeGgml(raw: Buffer, type: GgmlType, count: number): Float32Array {
  const out = new Float32Array(count)
  if (type === GgmlType.F32) return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + count * 4))
  if (type === GgmlType.F16) {
    for (let i = 0; i < count; i++) out[i] = halfToFloat(raw.readUInt16LE(2 * i))
    return out
  }
  for (let b = 0; b < count / 32; b++) {
    if (type === GgmlType.Q8_0) {
      const d = halfToFloat(raw.readUInt16LE(34 * b))
      for (let j = 0; j < 32; j++) out[32 * b + j] = raw.readInt8(34 * b + 2 + j) * d
    } else {
      const d = halfToFloat(raw.readUInt16LE(18 * b))
      for (let j = 0; j < 16; j++) {
        const byte = raw[18 * b + 2 + j]!
        out[32 * b + j] = ((byte & 0x0f) - 8) * d
        out[32 * b + 16 + j] = ((byte >> 4) - 8) * d
      }
    }
  }
  return out
}

/** Undoes the llama q/k permutation: HF row h*d + j*d/2 + i is GGUF row h*d + 2i + j. */
function unpermuteRows(w: Float32Array, heads: number, cols: number): Float32Array {
  const d = w.length / cols / heads
  const half = d / 2
  const out = new Float32Array(w.length)
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * d + 2 * i + j) * cols
        out.set(w.subarray(src, src + cols), (h * d + j * half + i) * cols)
      }
    }
  }
  return out
}

/**
 * Writes `outDir`: the tensors of `ggufFile` as fp32 safetensors under the names and shapes of `hfDir` (the model
 * the file was made from), with its config and tokenizer files. Returns outDir.
 */
export function ggufAsHfFolder(ggufFile: string, hfDir: string, outDir: string): string {
  const parsed: ParsedGguf = readGguf(ggufFile)
  const ckpt = HfCheckpoint.open(hfDir)
  try {
    const a = archInfo(ckpt.config)
    const tensors = []
    for (const [hf, info] of ckpt.tensors) {
      const name = ggufName(hf, a)
      if (!name) continue
      const t = parsed.tensors.find((x) => x.name === name)!
      const count = info.shape.reduce((x, y) => x * y, 1)
      let data = decodeGgml(readGgufTensor(ggufFile, parsed, name), t.type, count)
      const heads = rotaryHeads(name, a)
      if (heads > 0) data = unpermuteRows(data, heads, info.shape.length > 1 ? info.shape[1]! : 1)
      tensors.push({ name: hf, shape: info.shape, data, dtype: 'F32' as const })
    }
    mkdirSync(outDir, { recursive: true })
    writeFileSync(path.join(outDir, 'model.safetensors'), encodeSafetensors(tensors))
    writeFileSync(path.join(outDir, 'config.json'), JSON.stringify({ ...ckpt.config, torch_dtype: 'float32' }, null, 2))
    for (const f of TOKENIZER_FILES)
      if (existsSync(path.join(hfDir, f))) copyFileSync(path.join(hfDir, f), path.join(outDir, f))
    return outDir
  } finally {
    ckpt.close()
  }
}
