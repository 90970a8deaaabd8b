// What a model folder holds, read without loading weights: architecture and shape from config.json, parameter count
// and checkpoint size from the safetensors headers, and the NF4 + double-quant size of the base (spec §2.6:
// 4-bit codes, one 8-bit absmax per 64 weights, one fp32 scale per 256 absmax blocks; other tensors stay 16-bit).
// Whether it is supported is the engine's own answer: the native checkModel runs the loader's checks on the headers
// (config fields, RoPE scaling, every tensor), so the panel says "supported" only for a folder that will load.
import { existsSync } from 'node:fs'
import { open, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { checkModelDir } from '../engine/modelSession'
import { StudioError, errorMessage } from '../errors'
import { parseJson } from '../data/jsonText'
import type { ModelSummary } from '../../api/contract'
import type { NativeModelCheck } from '../../engine/nativeTypes'
import { loadNative } from '../../engine/loadNative'

/** The engine's validation of a folder (native checkModel, in-process or through the engine host). */
export type ModelChecker = (dir: string) => Promise<NativeModelCheck>

/** checkModel on the addon loaded in this process (CLI, tests). */
export const checkModelInProcess: ModelChecker = async (dir) => loadNative().checkModel(dir, { quant: 'nf4' })

const LINEAR = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/

/** What the model panel shows about a folder (declared once, in the API contract). */
export type ModelInspection = ModelSummary

interface TensorHeader {
  dtype: string
  shape: number[]
}

/** The JSON header of a safetensors file: 8-byte little-endian length, then that many bytes of JSON. */
export async function readSafetensorsHeader(file: string): Promise<Record<string, TensorHeader>> {
  const fh = await open(file, 'r')
  try {
    const len = Buffer.alloc(8)
    await fh.read(len, 0, 8, 0)
    const n = Number(len.readBigUInt64LE(0))
    if (n <= 0 || n > 100 * 2 ** 20) throw new StudioError('E_BAD_MODEL', `${file}: not a safetensors file (header length ${n})`)
    const buf = Buffer.alloc(n)
    await fh.read(buf, 0, n, 8)
    let header: Record<string, TensorHeader>
    try {
      header = parseJson(buf.toString('utf8')) as Record<string, TensorHeader>
    } catch (e) {
      throw new StudioError('E_BAD_MODEL', `${file}: the safetensors header is ${errorMessage(e)}`)
    }
    delete (header as Record<string, unknown>).__metadata__
    return header
  } finally {
    await fh.close()
  }
}

export function nf4BytesFor(numel: number): number {
  return numel / 2 + numel / 64 + (numel / (64 * 256)) * 4
}

export async function inspectModel(dirIn: string, checkModel: ModelChecker = checkModelInProcess): Promise<ModelInspection> {
  const dir = checkModelDir(dirIn)
  let config: Record<string, unknown>
  try {
    config = parseJson(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>
  } catch (e) {
    throw new StudioError('E_BAD_MODEL', `${join(dir, 'config.json')}: ${errorMessage(e)}`)
  }
  const architecture = (config.architectures as string[] | undefined)?.[0] ?? 'unknown'
  const quantConfig = config.quantization_config as Record<string, unknown> | undefined
  const prequantized = quantConfig?.load_in_4bit === true || quantConfig?.quant_method === 'bitsandbytes'

  let files: string[]
  if (existsSync(join(dir, 'model.safetensors.index.json'))) {
    const indexFile = join(dir, 'model.safetensors.index.json')
    let index: { weight_map?: Record<string, string> }
    try {
      index = parseJson(await readFile(indexFile, 'utf8')) as { weight_map?: Record<string, string> }
    } catch (e) {
      throw new StudioError('E_BAD_MODEL', `${indexFile}: ${errorMessage(e)}`)
    }
    files = [...new Set(Object.values(index.weight_map ?? {}))]
    // Shard names are file names in this folder: never a path that leaves it.
    const outside = files.find((f) => typeof f !== 'string' || f === '' || /[\\/]/.test(f) || f.startsWith('.'))
    if (outside !== undefined) throw new StudioError('E_BAD_MODEL', `${indexFile}: weight_map names a file outside the model folder`)
  } else if (existsSync(join(dir, 'model.safetensors'))) files = ['model.safetensors']
  else files = []

  let params = 0
  let checkpointBytes = 0
  let nf4 = 0
  const dtypes = new Set<string>()
  for (const f of files) {
    const path = join(dir, f)
    checkpointBytes += (await stat(path).catch(() => ({ size: 0 }))).size
    const header = await readSafetensorsHeader(path)
    for (const [name, t] of Object.entries(header)) {
      const numel = t.shape.reduce((a, b) => a * b, 1)
      dtypes.add(t.dtype)
      if (prequantized) continue
      params += numel
      nf4 += LINEAR.test(name) && t.shape.length === 2 ? nf4BytesFor(numel) : numel * 2
    }
  }
  if (prequantized) {
    nf4 = checkpointBytes
    params = estimateParams(config)
  }

  const check = await checkModel(dir)
  const supported = check.ok
  const note = files.length === 0
    ? 'no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported)'
    : check.message
  if (check.ok && prequantized) params = check.params
  const tokenizerConfig = await readFile(join(dir, 'tokenizer_config.json'), 'utf8').then((s) => JSON.parse(s) as Record<string, unknown>, () => null)
  return {
    dir,
    architecture,
    modelType: String(config.model_type ?? ''),
    supported,
    note,
    params,
    layers: Number(config.num_hidden_layers ?? 0),
    hidden: Number(config.hidden_size ?? 0),
    vocab: Number(config.vocab_size ?? 0),
    dtype: String(config.torch_dtype ?? [...dtypes].join('/')),
    checkpointBytes,
    nf4Bytes: Math.round(nf4),
    hasTokenizer: existsSync(join(dir, 'tokenizer.json')),
    hasChatTemplate: tokenizerConfig?.chat_template != null || existsSync(join(dir, 'chat_template.jinja')),
    prequantized,
  }
}

/** Parameters of a Llama-shaped decoder from its config (for pre-quantized checkpoints whose headers hold packed bytes). */
function estimateParams(c: Record<string, unknown>): number {
  const h = Number(c.hidden_size ?? 0)
  const l = Number(c.num_hidden_layers ?? 0)
  const v = Number(c.vocab_size ?? 0)
  const i = Number(c.intermediate_size ?? 0)
  const heads = Number(c.num_attention_heads ?? 1)
  const kv = Number(c.num_key_value_heads ?? heads)
  const hd = Number(c.head_dim ?? h / heads)
  const attn = h * heads * hd * 2 + h * kv * hd * 2
  const mlp = 3 * h * i
  return l * (attn + mlp + 2 * h) + v * h * (c.tie_word_embeddings ? 1 : 2) + h
}
