// `dpo-studio export-gguf`: the merged model as GGUF v3 files for llama.cpp, Ollama and LM Studio (F16, Q8_0, Q4_0,
// optionally F32), the LoRA adapter alone as a GGUF LoRA adapter, and an Ollama Modelfile (docs/exports.md).
// Written entirely here: no Python, no llama.cpp tools.
import { writeFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { loadAddon } from '../../addon/loadAddon'
import { StudioError } from '../errors'
import { DEFAULT_SYSTEM_MESSAGE } from '../tokenizer/chatTemplate'
import { TextTokenizer } from '../tokenizer/textTokenizer'
import { parseLoraKey, type LoadedAdapter } from '../training/adapterFiles'
import { GgmlType, kv, writeGguf, type GgufTensorInfo, type GgufValue } from './ggufFile'
import { DEFAULT_GGUF_FILE_TYPES } from '../../../src-shared/params/enumValues'
import {
  archInfo,
  archMetadata,
  ggmlDims,
  ggufName,
  permuteRotaryRows,
  ropeFreqs,
  rotaryHeads,
  tensorType,
  type ArchInfo,
  type GgufFileType,
} from './ggufModel'
import { vocabMetadata, type VocabMetadata } from './ggufVocab'
import { writeExportFolder } from './exportFolder'
import { exportInputs, openMerge } from './mergedModel'
import type { MergeBase, MergedWeights } from './mergedWeights'
import { modelfileText } from './modelfile'

export interface GgufExportRequest {
  modelDir: string
  adapterDir: string | null
  mergeBase: MergeBase
  /** Model files to write; default F16, Q8_0, Q4_0. */
  types?: GgufFileType[]
  /** Also write the adapter alone as a GGUF LoRA adapter (default true when there is an adapter). */
  lora?: boolean
  /** Also write the base model (without the adapter) in this type, for applying the LoRA GGUF to. */
  baseType?: GgufFileType
  outDir: string
  overwrite?: boolean
  runDir?: string
  /** The run's system message for the Modelfile's SYSTEM (default the notebook's). */
  systemMessage?: string
  /** File name stem; default the model folder's name (+ "-dpo" with an adapter). */
  name?: string
  onProgress?: (fraction: number, note: string) => void
}

export interface GgufExportResult {
  path: string
  files: string[]
  models: Array<{ file: string; type: GgufFileType; merged: boolean }>
  lora: string | null
  modelfile: string
}

export async function exportGguf(req: GgufExportRequest): Promise<GgufExportResult> {
  const types = req.types ?? [...DEFAULT_GGUF_FILE_TYPES]
  if (types.length === 0) throw new StudioError('E_BAD_INPUT', 'choose at least one GGUF type (F16, Q8_0, Q4_0, F32)')
  const merged = openMerge(req.modelDir, req.adapterDir, req.mergeBase)
  const base = req.baseType && merged.adapter ? openMerge(req.modelDir, null, req.mergeBase) : null
  try {
    const arch = archInfo(merged.ckpt.config)
    const tok = await TextTokenizer.fromDir(merged.ckpt.dir)
    const vocab = vocabMetadata(merged.ckpt.dir, tok, Number(merged.ckpt.config.vocab_size))
    const stem = req.name ?? `${basename(merged.ckpt.dir)}${merged.adapter ? '-dpo' : ''}`
    const wantLora = (req.lora ?? true) && merged.adapter !== null
    const jobs: Array<{
      file: string
      run: (dir: string, step: (f: number) => void) => void
      type?: GgufFileType
      merged?: boolean
    }> = []
    for (const type of types) {
      jobs.push({
        file: `${stem}-${type}.gguf`,
        type,
        merged: merged.adapter !== null,
        run: (dir, step) => writeModelGguf(join(dir, `${stem}-${type}.gguf`), merged, arch, vocab, type, stem, step),
      })
    }
    if (base) {
      const type = req.baseType!
      const file = `${basename(merged.ckpt.dir)}-base-${type}.gguf`
      jobs.push({
        file,
        type,
        merged: false,
        run: (dir, step) => writeModelGguf(join(dir, file), base, arch, vocab, type, basename(merged.ckpt.dir), step),
      })
    }
    const loraFile = wantLora ? `${stem}-lora-F32.gguf` : null
    if (loraFile)
      jobs.push({ file: loraFile, run: (dir) => writeLoraGguf(join(dir, loraFile), merged.adapter!, arch, stem) })

    const modelFiles = jobs.filter((j) => j.type !== undefined && j.merged !== false)
    const smallest =
      ['Q4_0', 'Q8_0', 'F16', 'F32'].map((t) => modelFiles.find((j) => j.type === t)).find(Boolean) ?? jobs[0]!
    const marker = {
      base_model: resolve(req.modelDir),
      adapter: req.adapterDir ? resolve(req.adapterDir) : null,
      run: req.runDir ? resolve(req.runDir) : null,
      merge_base: merged.base,
      types,
      architecture: arch.arch,
      tokenizer: vocab.kind,
    }
    await writeExportFolder(
      req.outDir,
      'gguf',
      req.overwrite ?? false,
      marker,
      (tmp) => {
        jobs.forEach((job, i) => {
          req.onProgress?.(i / jobs.length, job.file)
          job.run(tmp, (f) => req.onProgress?.((i + f) / jobs.length, job.file))
        })
        writeFileSync(
          join(tmp, 'Modelfile'),
          modelfileText({
            from: smallest.file,
            host: tok,
            system: req.systemMessage ?? DEFAULT_SYSTEM_MESSAGE,
            stops: tok.eosIds.map((id) => tok.idToToken(id) ?? ''),
            alternatives: modelFiles.map((j) => j.file).filter((f) => f !== smallest.file),
          }),
        )
        req.onProgress?.(1, 'done')
      },
      exportInputs(req.modelDir, req.adapterDir),
    )
    const out = resolve(req.outDir)
    return {
      path: out,
      files: [...jobs.map((j) => join(out, j.file)), join(out, 'Modelfile')],
      models: jobs
        .filter((j) => j.type)
        .map((j) => ({ file: join(out, j.file), type: j.type!, merged: j.merged === true })),
      lora: loraFile ? join(out, loraFile) : null,
      modelfile: join(out, 'Modelfile'),
    }
  } finally {
    merged.ckpt.close()
    base?.ckpt.close()
  }
}

/** The GGUF tensor list in file order: extra tensors first (rope_freqs), then the checkpoint's in its order. */
function planTensors(w: MergedWeights, a: ArchInfo, type: GgufFileType): Array<GgufTensorInfo & { hf: string | null }> {
  const out: Array<GgufTensorInfo & { hf: string | null }> = []
  const freqs = ropeFreqs(a)
  if (freqs) out.push({ name: 'rope_freqs.weight', dims: [freqs.length], type: GgmlType.F32, hf: null })
  for (const hf of w.names()) {
    const name = ggufName(hf, a)
    if (!name) continue
    const dims = ggmlDims(w.info(hf).shape)
    out.push({ name, dims, type: tensorType(name, dims, type, a), hf })
  }
  return out
}

function encode(values: Float32Array, type: GgmlType): Uint8Array {
  const ops = loadAddon().exportOps
  switch (type) {
    case GgmlType.F32:
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
    case GgmlType.F16:
      return ops.ggmlEncode('f16', values)
    case GgmlType.Q8_0:
      return ops.ggmlEncode('q8_0', values)
    case GgmlType.Q4_0:
      return ops.ggmlEncode('q4_0', values)
  }
}

function writeModelGguf(
  path: string,
  w: MergedWeights,
  a: ArchInfo,
  vocab: VocabMetadata,
  type: GgufFileType,
  name: string,
  step: (f: number) => void,
): void {
  const tensors = planTensors(w, a, type)
  const meta = new Map<string, GgufValue>([...archMetadata(a, type, name), ...vocab.entries])
  writeGguf(
    path,
    meta,
    tensors,
    (t) => {
      const hf = t.hf
      if (hf === null) return encode(ropeFreqs(a)!, t.type)
      let values = w.float32(hf)
      const heads = rotaryHeads(t.name, a)
      if (heads > 0) values = permuteRotaryRows(values, heads, t.dims.length > 1 ? t.dims[0]! : 1)
      return encode(values, t.type)
    },
    (d, n) => step(d / n),
  )
}

/**
 * The adapter alone, as llama.cpp's GGUF LoRA format: general.type "adapter", adapter.type "lora",
 * adapter.lora.alpha, and per adapted weight W the pair W.lora_a (PEFT's A, ggml [in, r]) and W.lora_b (PEFT's B,
 * ggml [r, out]); llama.cpp adds (alpha / r) * B A x, with r read from lora_a. B's rows get the same q/k
 * permutation as W's.
 */
function writeLoraGguf(path: string, adapter: LoadedAdapter, a: ArchInfo, name: string): void {
  const meta = new Map<string, GgufValue>([
    ['general.architecture', kv.str(a.arch)],
    ['general.type', kv.str('adapter')],
    ['general.name', kv.str(`${name}-lora`)],
    ['adapter.type', kv.str('lora')],
    ['adapter.lora.alpha', kv.f32(adapter.settings.alpha)],
  ])
  const data = new Map<string, Float32Array>()
  const tensors: GgufTensorInfo[] = []
  const sorted = [...adapter.tensors].sort((x, y) => {
    const p = parseLoraKey(x.name)!
    const q = parseLoraKey(y.name)!
    return p.layer - q.layer || p.target.localeCompare(q.target) || p.which.localeCompare(q.which)
  })
  for (const t of sorted) {
    const k = parseLoraKey(t.name)!
    const hf = `model.layers.${k.layer}.${t.name.includes('.self_attn.') ? 'self_attn' : 'mlp'}.${k.target}.weight`
    const weight = ggufName(hf, a)!
    const name = `${weight}.lora_${k.which.toLowerCase()}`
    const heads = k.which === 'B' ? rotaryHeads(weight, a) : 0
    data.set(name, heads > 0 ? permuteRotaryRows(t.data, heads, t.shape[1]!) : t.data)
    tensors.push({ name, dims: ggmlDims(t.shape), type: GgmlType.F32 })
  }
  writeGguf(path, meta, tensors, (t) => encode(data.get(t.name)!, GgmlType.F32))
}
