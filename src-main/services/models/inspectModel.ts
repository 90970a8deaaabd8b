// What a model folder holds, read without loading weights: architecture and shape from config.json, parameter count
// and checkpoint size from the safetensors headers, and the NF4 + double-quant size of the base
// (docs/reference/nf4.md#pre-quantized-bnb-4bit-checkpoints: 4-bit codes, one 8-bit absmax per 64 weights, one fp32
// scale per 256 absmax blocks; other tensors stay 16-bit). Whether it is supported is the engine's own answer: the
// native checkModel runs the loader's checks on the headers (config fields, RoPE scaling, every tensor), so the panel
// says "supported" only for a folder that will load.
import { existsSync } from 'node:fs'
import { open, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { checkModelDir } from '../session/modelSession'
import { StudioError, errorMessage } from '../errors'
import { parseJson } from '../data/jsonText'
import { bare, quoted } from '../messageText'
import type { ModelSummary } from '../../../src-shared/api/contract'
import type { NativeModelCheck } from '../../addon/addonTypes'
import { loadAddon } from '../../addon/loadAddon'

/** The engine's validation of a folder (native checkModel, in-process or through the engine host). */
export type ModelChecker = (dir: string) => Promise<NativeModelCheck>

/** checkModel on the addon loaded in this process (CLI, tests). */
export const checkModelInProcess: ModelChecker = async (dir) => loadAddon().checkModel(dir, { quant: 'nf4' })

const LINEAR = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/

/** What the model panel shows about a folder (declared once, in the API contract). */
export type ModelInspection = ModelSummary

interface TensorHeader {
  dtype: string
  shape: number[]
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
/** A count from config.json, or 0 when the field is absent or not a non-negative integer (the panel only shows it). */
const count = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0)
const badModel = (message: string) => new StudioError('E_BAD_MODEL', message)

/** A JSON object file of the model folder; any fault is an E_BAD_MODEL naming the file (never quoting it). */
async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    throw badModel(`${file}: ${errorMessage(e)}`)
  }
  let value: unknown
  try {
    value = parseJson(text)
  } catch (e) {
    throw badModel(`${file}: ${errorMessage(e)}`)
  }
  if (!isObject(value)) throw badModel(`${file}: expected a JSON object`)
  return value
}

/** The JSON header of a safetensors file: 8-byte little-endian length, then that many bytes of JSON. Each tensor
 * entry is checked for a dtype and a shape of sizes whose product is an exact number. */
export async function readSafetensorsHeader(file: string): Promise<Record<string, TensorHeader>> {
  const fh = await open(file, 'r').catch((e: unknown) => {
    throw badModel(`${file}: ${errorMessage(e)}`)
  })
  let text: string
  try {
    const len = Buffer.alloc(8)
    await fh.read(len, 0, 8, 0)
    const n = Number(len.readBigUInt64LE(0))
    if (n <= 0 || n > 100 * 2 ** 20) throw badModel(`${file}: not a safetensors file (header length ${n})`)
    const buf = Buffer.alloc(n)
    const { bytesRead } = await fh.read(buf, 0, n, 8)
    if (bytesRead < n) throw badModel(`${file}: header length ${n} runs past the end of the file`)
    text = buf.toString('utf8')
  } finally {
    await fh.close()
  }
  let header: unknown
  try {
    header = parseJson(text)
  } catch (e) {
    throw badModel(`${file}: the safetensors header is ${errorMessage(e)}`)
  }
  if (!isObject(header)) throw badModel(`${file}: the safetensors header is not a JSON object`)
  delete header.__metadata__
  for (const [name, t] of Object.entries(header)) {
    const shape = isObject(t) ? t.shape : undefined
    if (
      !isObject(t) ||
      typeof t.dtype !== 'string' ||
      !Array.isArray(shape) ||
      !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    )
      throw badModel(`${file}: tensor ${bare(name)}: expected a dtype and a shape of sizes`)
    if (!Number.isSafeInteger(shape.reduce((a: number, b: number) => a * b, 1)))
      throw badModel(`${file}: tensor ${bare(name)}: shape [${shape.join(', ')}] is larger than any file`)
  }
  return header as Record<string, TensorHeader>
}

export function nf4BytesFor(numel: number): number {
  return numel / 2 + numel / 64 + (numel / (64 * 256)) * 4
}

export async function inspectModel(
  dirIn: string,
  checkModel: ModelChecker = checkModelInProcess,
): Promise<ModelInspection> {
  const dir = checkModelDir(dirIn)
  const config = await readJsonObject(join(dir, 'config.json'))
  const archs = config.architectures
  const architecture = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : 'unknown'
  const quantConfig = isObject(config.quantization_config) ? config.quantization_config : undefined
  const prequantized = quantConfig?.load_in_4bit === true || quantConfig?.quant_method === 'bitsandbytes'

  let files: string[]
  const indexFile = join(dir, 'model.safetensors.index.json')
  if (existsSync(indexFile)) {
    const weightMap = (await readJsonObject(indexFile)).weight_map
    const shards = isObject(weightMap) ? Object.values(weightMap) : []
    // A shard is a file of this folder: a name with a path in it (or '..', or any name starting with a dot) would
    // read a file elsewhere or a hidden one.
    const bad = shards.find((f) => typeof f !== 'string' || f === '' || f.startsWith('.') || /[\\/]/.test(f))
    if (!isObject(weightMap) || bad !== undefined)
      throw badModel(
        `${indexFile}: weight_map must map tensor names to shard file names of this folder (found ${quoted(bad ?? weightMap)})`,
      )
    files = [...new Set(shards as string[])]
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
  const note =
    files.length === 0
      ? 'no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported)'
      : check.message
  if (check.ok && prequantized) params = check.params
  // Only for the "has a chat template" flag: an unreadable or malformed tokenizer_config.json counts as none.
  const tokenizerConfig = await readJsonObject(join(dir, 'tokenizer_config.json')).catch(() => null)
  return {
    dir,
    architecture,
    modelType: typeof config.model_type === 'string' ? config.model_type : '',
    supported,
    note,
    params,
    layers: count(config.num_hidden_layers),
    hidden: count(config.hidden_size),
    vocab: count(config.vocab_size),
    dtype: typeof config.torch_dtype === 'string' ? config.torch_dtype : [...dtypes].join('/'),
    checkpointBytes,
    nf4Bytes: Math.round(nf4),
    hasTokenizer: existsSync(join(dir, 'tokenizer.json')),
    hasChatTemplate: tokenizerConfig?.chat_template != null || existsSync(join(dir, 'chat_template.jinja')),
    prequantized,
  }
}

/** Parameters of a Llama-shaped decoder from its config (for pre-quantized checkpoints whose headers hold packed bytes). */
function estimateParams(c: Record<string, unknown>): number {
  const h = count(c.hidden_size)
  const l = count(c.num_hidden_layers)
  const v = count(c.vocab_size)
  const i = count(c.intermediate_size)
  const heads = count(c.num_attention_heads) || 1
  const kv = count(c.num_key_value_heads) || heads
  const hd = count(c.head_dim) || h / heads
  const attn = h * heads * hd * 2 + h * kv * hd * 2
  const mlp = 3 * h * i
  const total = l * (attn + mlp + 2 * h) + v * h * (c.tie_word_embeddings === true ? 1 : 2) + h
  return Number.isFinite(total) ? total : 0
}
