// PEFT LoRA adapters on disk (docs/architecture.md#adapter-output, docs/reference/lora.md#saved-adapter-format):
// adapter_model.safetensors + adapter_config.json exactly as peft 0.12 save_pretrained writes them, so
// PeftModel.from_pretrained loads ours and we load theirs.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { endianness } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import type { LoraTensor } from '../../addon/addonTypes'
import { parseJson } from '../data/jsonText'
import { statOrProblem } from '../pathProblems'
import { StudioError, errorMessage } from '../errors'
import { bare, quoted } from '../messageText'
import { LINEAR_TARGETS, type LinearTarget } from '../../../src-shared/params/trainParams'
import { decodeRawSafetensors, encodeRawSafetensors, type SafetensorsDtype } from './safetensorsBytes'

export const ADAPTER_CONFIG_FILE = 'adapter_config.json'
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors'

/** What our engine needs to rebuild an adapter: PEFT's r, lora_alpha, lora_dropout, target_modules. */
export interface AdapterSettings {
  r: number
  alpha: number
  dropout: number
  targets: LinearTarget[]
  /** base_model_name_or_path: informational (PEFT warns on mismatch, we do not check it). */
  baseModel: string
}

export interface LoadedAdapter {
  dir: string
  settings: AdapterSettings
  /** adapter_config.json as read. */
  config: Record<string, unknown>
  tensors: LoraTensor[]
  /** Number of transformer layers the tensors cover (0..layers-1). */
  layers: number
}

// ---- safetensors (float tensors; the container itself is safetensorsBytes.ts) ---------------------------------

export type FloatDtype = Exclude<SafetensorsDtype, 'U8'>

/**
 * A tensor to write. Values are given as fp32; dtype (default F32, what PEFT's LoRA weights are,
 * docs/reference/lora.md#saved-adapter-format) is how they are stored.
 */
export interface NamedTensor {
  name: string
  shape: number[]
  data: Float32Array
  dtype?: 'F32' | 'BF16'
}

/** The reference writer's order: dtype descending in its enum (F32 before BF16 before F16), then name. */
const DTYPE_RANK: Record<FloatDtype, number> = { F32: 2, BF16: 1, F16: 0 }

/**
 * safetensors serialisation as the reference (Rust) writer does it: tensors sorted by dtype, then name (with a single
 * dtype the order is by name), laid out by encodeRawSafetensors.
 */
export function encodeSafetensors(
  tensors: readonly NamedTensor[],
  metadata: Record<string, string> = { format: 'pt' },
): Uint8Array {
  const dtypeOf = (t: NamedTensor) => t.dtype ?? 'F32'
  const sorted = [...tensors].sort(
    (a, b) => DTYPE_RANK[dtypeOf(b)] - DTYPE_RANK[dtypeOf(a)] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  )
  return encodeRawSafetensors(
    sorted.map((t) => {
      const count = t.shape.reduce((x, y) => x * y, 1)
      if (count !== t.data.length)
        throw new StudioError(
          'E_INTERNAL',
          `tensor ${t.name}: shape [${t.shape}] needs ${count} values, has ${t.data.length}`,
        )
      const bytes =
        dtypeOf(t) === 'BF16'
          ? toBf16Bytes(t.data)
          : new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
      return { name: t.name, dtype: dtypeOf(t), shape: t.shape, bytes }
    }),
    metadata,
  )
}

/** fp32 -> bf16 with round-to-nearest-even (torch's .to(torch.bfloat16)); NaN stays a quiet NaN. */
export function toBf16Bytes(data: Float32Array): Buffer {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length)
  const out = Buffer.alloc(data.length * 2)
  for (let i = 0; i < data.length; i++) {
    const u = bits[i]!
    const h = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16
    out.writeUInt16LE(h & 0xffff, i * 2)
  }
  return out
}

export interface DecodedSafetensors {
  metadata: Record<string, string>
  tensors: Array<Omit<NamedTensor, 'dtype'> & { dtype: FloatDtype }>
}

const LITTLE_ENDIAN = endianness() === 'LE'

/** Reads a safetensors buffer; F16 and BF16 are widened to F32. Every error names the file and the tensor. */
export function decodeSafetensors(bytes: Uint8Array, file: string): DecodedSafetensors {
  const raw = decodeRawSafetensors(bytes, file, ['F32', 'F16', 'BF16'])
  return {
    metadata: raw.metadata,
    tensors: raw.tensors.map((t) => {
      const dtype = t.dtype as FloatDtype
      return {
        name: t.name,
        dtype,
        shape: t.shape,
        data: toFloat32(Buffer.from(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength), dtype),
      }
    }),
  }
}

function toFloat32(raw: Buffer, dtype: FloatDtype): Float32Array {
  if (dtype === 'F32') {
    // slice() copies into a fresh, aligned buffer; the file is little-endian like every platform Node runs on here.
    if (LITTLE_ENDIAN) return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length))
    const out = new Float32Array(raw.length / 4)
    for (let i = 0; i < out.length; i++) out[i] = raw.readFloatLE(i * 4)
    return out
  }
  const out = new Float32Array(raw.length / 2)
  if (dtype === 'BF16') {
    const u = new Uint32Array(out.buffer)
    for (let i = 0; i < out.length; i++) u[i] = raw.readUInt16LE(i * 2) << 16
    return out
  }
  for (let i = 0; i < out.length; i++) out[i] = halfToFloat(raw.readUInt16LE(i * 2))
  return out
}

/** IEEE binary16 -> number (exact). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >> 10) & 0x1f
  const frac = h & 0x3ff
  if (exp === 0) return sign * frac * 2 ** -24
  if (exp === 0x1f) return frac ? NaN : sign * Infinity
  return sign * (1 + frac / 1024) * 2 ** (exp - 15)
}

// ---- PEFT naming -----------------------------------------------------------------------------------------------

const ATTENTION: ReadonlySet<string> = new Set(['q_proj', 'k_proj', 'v_proj', 'o_proj'])
const KEY_RE = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)\.lora_(A|B)\.weight$/

/**
 * PEFT's state-dict key for one LoRA matrix (get_peft_model_state_dict strips ".default",
 * docs/reference/lora.md#saved-adapter-format).
 */
export function loraKey(layer: number, target: LinearTarget, which: 'A' | 'B'): string {
  return `base_model.model.model.layers.${layer}.${ATTENTION.has(target) ? 'self_attn' : 'mlp'}.${target}.lora_${which}.weight`
}

export interface LoraKeyParts {
  layer: number
  target: LinearTarget
  which: 'A' | 'B'
}

export function parseLoraKey(name: string): LoraKeyParts | null {
  const m = KEY_RE.exec(name)
  if (!m) return null
  const target = m[3] as LinearTarget
  if (!(LINEAR_TARGETS as readonly string[]).includes(target)) return null
  if ((m[2] === 'self_attn') !== ATTENTION.has(target)) return null
  return { layer: Number(m[1]), target, which: m[4] as 'A' | 'B' }
}

/**
 * base_model_name_or_path for a model directory: config.json's _name_or_path when it has one (what transformers
 * recorded when the model was saved), else the hub id of a Hugging Face cache snapshot
 * (.../models--ORG--NAME/snapshots/REV), else the directory's name.
 */
export function baseModelName(modelDir: string): string {
  const abs = resolve(modelDir)
  try {
    const cfg = JSON.parse(readFileSync(join(abs, 'config.json'), 'utf8')) as { _name_or_path?: unknown }
    if (typeof cfg._name_or_path === 'string' && cfg._name_or_path.trim() !== '') return cfg._name_or_path
  } catch {
    // no readable config: fall through to the path
  }
  const hub = /[\\/]models--([^\\/]+?)--([^\\/]+)[\\/]snapshots[\\/][^\\/]+$/.exec(abs)
  if (hub) return `${hub[1]}/${hub[2]}`
  return basename(abs)
}

// ---- adapter_config.json ---------------------------------------------------------------------------------------

/** A number Python's json writes as a float (0 -> 0.0), as LoraConfig's float fields come out. */
class PyFloat {
  constructor(readonly value: number) {}
}

/**
 * The peft 0.12 LoraConfig.to_dict() of a plain LoRA adapter with save_pretrained's inference_mode=True
 * (docs/reference/lora.md#saved-adapter-format).
 */
export function peftConfigObject(s: AdapterSettings): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: s.baseModel,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: Number.isInteger(s.alpha) ? s.alpha : new PyFloat(s.alpha),
    lora_dropout: new PyFloat(s.dropout),
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: s.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...s.targets],
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
  }
}

/** json.dumps(value, indent=2, sort_keys=True) byte for byte (ensure_ascii, ", " / ": " separators, no final newline). */
export function pythonJsonDumps(value: unknown, indent = ''): string {
  if (value === null || value === undefined) return 'null'
  if (value === true) return 'true'
  if (value === false) return 'false'
  if (value instanceof PyFloat) return pyFloatRepr(value.value)
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : pyFloatRepr(value)
  if (typeof value === 'string') return pyString(value)
  const inner = indent + '  '
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]'
    return `[\n${value.map((v) => inner + pythonJsonDumps(v, inner)).join(',\n')}\n${indent}]`
  }
  const keys = Object.keys(value as object).sort()
  if (keys.length === 0) return '{}'
  const rec = value as Record<string, unknown>
  return `{\n${keys.map((k) => `${inner}${pyString(k)}: ${pythonJsonDumps(rec[k], inner)}`).join(',\n')}\n${indent}}`
}

/** Python float repr: shortest round-trip digits, exponent form when exp < -4 or >= 16, always a '.0' or exponent. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN'
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity'
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0'
  const [mant, expText] = x.toExponential().split('e') as [string, string]
  const exp = Number(expText)
  if (exp < -4 || exp >= 16) {
    return `${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`
  }
  const s = String(x)
  return /[.e]/.test(s) ? s : `${s}.0`
}

function pyString(s: string): string {
  // JSON.stringify already escapes quotes, backslashes and control characters as Python does; ensure_ascii also
  // escapes DEL and everything above it, per UTF-16 unit (surrogate pairs stay pairs).
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}

// ---- save / load -----------------------------------------------------------------------------------------------

export interface SaveAdapterOptions {
  /** More JSON files to put in the adapter folder (e.g. training_state.json); PEFT ignores them. */
  extraJson?: Record<string, unknown>
}

/**
 * Writes DIR/adapter_model.safetensors and DIR/adapter_config.json atomically as a folder: everything goes into a
 * temp folder beside DIR, which then replaces DIR, so DIR is at every moment absent, the old adapter or the new one.
 */
export function saveAdapter(
  dir: string,
  tensors: readonly LoraTensor[],
  settings: AdapterSettings,
  options: SaveAdapterOptions = {},
): void {
  const target = resolve(dir)
  checkTensors(tensors, settings, target)
  const parent = dirname(target)
  mkdirSync(parent, { recursive: true })
  const stamp = `${process.pid}-${Date.now()}`
  const tmp = join(parent, `.${basename(target)}.tmp-${stamp}`)
  const old = join(parent, `.${basename(target)}.old-${stamp}`)
  try {
    mkdirSync(tmp)
    writeFileSync(join(tmp, ADAPTER_WEIGHTS_FILE), encodeSafetensors(tensors))
    writeFileSync(join(tmp, ADAPTER_CONFIG_FILE), pythonJsonDumps(peftConfigObject(settings)))
    for (const [name, value] of Object.entries(options.extraJson ?? {})) {
      writeFileSync(join(tmp, name), JSON.stringify(value, null, 2) + '\n')
    }
    if (existsSync(target)) renameSync(target, old)
    renameSync(tmp, target)
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true })
    if (existsSync(old) && !existsSync(target)) renameSync(old, target)
    throw new StudioError('E_IO', `could not save the adapter to ${target}: ${errorMessage(e)}`, { cause: e })
  }
  rmSync(old, { recursive: true, force: true })
}

/** Reads and checks a PEFT LoRA adapter folder. Every problem names the file, field or tensor. */
export function loadAdapter(dir: string): LoadedAdapter {
  const abs = resolve(dir)
  const bad = (msg: string, details: Record<string, unknown> = {}) =>
    new StudioError('E_BAD_INPUT', msg, { details: { adapter: abs, ...details } })
  const { stat: st, problem } = statOrProblem(abs)
  if (!st) throw bad(`adapter directory ${abs} ${problem}`)
  if (!st.isDirectory()) throw bad(`${abs} is a file, not an adapter directory`)
  const cfgFile = join(abs, ADAPTER_CONFIG_FILE)
  if (!existsSync(cfgFile))
    throw bad(`adapter directory ${abs} has no ${ADAPTER_CONFIG_FILE} (expected a PEFT LoRA adapter folder)`, {
      file: cfgFile,
    })
  const cfgText = readFileSync(cfgFile, 'utf8')
  let parsed: unknown
  try {
    parsed = parseJson(cfgText)
  } catch (e) {
    throw bad(`${cfgFile}: ${errorMessage(e)}`, { file: cfgFile })
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw bad(`${cfgFile}: not valid JSON: expected a JSON object`, { file: cfgFile })
  const config = parsed as Record<string, unknown>
  const settings = readSettings(config, cfgFile, bad)

  const weightsFile = join(abs, ADAPTER_WEIGHTS_FILE)
  if (!existsSync(weightsFile)) {
    const pickle = existsSync(join(abs, 'adapter_model.bin'))
    throw bad(
      pickle
        ? `${abs} holds adapter_model.bin (a pickle); only ${ADAPTER_WEIGHTS_FILE} is read: re-save it with save_pretrained(safe_serialization=True)`
        : `adapter directory ${abs} has no ${ADAPTER_WEIGHTS_FILE}`,
      { file: weightsFile },
    )
  }
  const decoded = decodeSafetensors(readFileSync(weightsFile), weightsFile)
  const tensors: LoraTensor[] = decoded.tensors.map((t) => ({ name: t.name, shape: t.shape, data: t.data }))
  const layers = checkTensors(tensors, settings, weightsFile)
  return { dir: abs, settings, config, tensors, layers }
}

function readSettings(
  c: Record<string, unknown>,
  file: string,
  bad: (m: string, d?: Record<string, unknown>) => StudioError,
): AdapterSettings {
  const field = (name: string, why: string) => bad(`${file}: field "${name}" ${why}`, { file, field: name })
  if (c.peft_type !== 'LORA') throw field('peft_type', `is ${quoted(c.peft_type)}; only LORA adapters are supported`)
  if (!Number.isInteger(c.r) || (c.r as number) < 1) throw field('r', `must be a positive integer, got ${quoted(c.r)}`)
  if (typeof c.lora_alpha !== 'number' || !(c.lora_alpha > 0))
    throw field('lora_alpha', `must be a positive number, got ${quoted(c.lora_alpha)}`)
  const dropout = c.lora_dropout ?? 0
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1)
    throw field('lora_dropout', `must be in [0, 1), got ${quoted(dropout)}`)
  const tm = c.target_modules
  if (typeof tm === 'string')
    throw field('target_modules', `is the pattern ${quoted(tm)}; only a list of module names is supported`)
  if (!Array.isArray(tm) || tm.length === 0) throw field('target_modules', 'must be a non-empty list of module names')
  for (const t of tm) {
    if (!(LINEAR_TARGETS as readonly unknown[]).includes(t)) {
      throw field('target_modules', `names ${quoted(t)}; supported: ${LINEAR_TARGETS.join(', ')}`)
    }
  }
  const unsupported: Array<[string, (v: unknown) => boolean]> = [
    ['use_dora', (v) => v === true],
    ['bias', (v) => v !== undefined && v !== 'none'],
    ['fan_in_fan_out', (v) => v === true],
    ['modules_to_save', (v) => Array.isArray(v) && v.length > 0],
    ['layers_to_transform', (v) => v !== undefined && v !== null],
    ['rank_pattern', (v) => typeof v === 'object' && v !== null && Object.keys(v).length > 0],
    ['alpha_pattern', (v) => typeof v === 'object' && v !== null && Object.keys(v).length > 0],
    ['layer_replication', (v) => v !== undefined && v !== null],
  ]
  for (const [name, isSet] of unsupported)
    if (isSet(c[name])) throw field(name, `is ${quoted(c[name])}, which this engine does not support`)
  // rsLoRA scales by alpha / sqrt(r); the engine scales by alpha / r, so the same scaling is alpha * sqrt(r) / r.
  const alpha = c.use_rslora === true ? c.lora_alpha * Math.sqrt(c.r as number) : c.lora_alpha
  const base = typeof c.base_model_name_or_path === 'string' ? c.base_model_name_or_path : ''
  // PEFT turns target_modules into a set: a name listed twice adapts its module once.
  return { r: c.r as number, alpha, dropout, targets: [...new Set(tm as LinearTarget[])], baseModel: base }
}

/**
 * The tensors must be exactly a full LoRA adapter for settings: A [r, in] and B [out, r] for every target in every
 * layer 0..L-1, nothing else. Returns L.
 */
function checkTensors(tensors: readonly LoraTensor[], s: AdapterSettings, where: string): number {
  const bad = (msg: string, tensor?: string) =>
    new StudioError('E_BAD_INPUT', `${where}: ${tensor ? `tensor ${bare(tensor)}: ` : ''}${msg}`, {
      details: { file: where, tensor },
    })
  if (tensors.length === 0) throw bad('holds no LoRA tensors')
  const seen = new Map<string, LoraTensor>()
  let maxLayer = -1
  const targetsFound = new Set<string>()
  for (const t of tensors) {
    const k = parseLoraKey(t.name)
    if (!k)
      throw bad(
        'is not a LoRA weight in PEFT naming (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight, ...)',
        t.name,
      )
    if (!s.targets.includes(k.target))
      throw bad(`adapts ${k.target}, which target_modules [${s.targets.join(', ')}] does not list`, t.name)
    if (t.shape.length !== 2) throw bad(`must be a matrix, has shape [${t.shape}]`, t.name)
    const rDim = k.which === 'A' ? t.shape[0] : t.shape[1]
    if (rDim !== s.r) throw bad(`shape [${t.shape}] implies rank ${rDim}, but r is ${s.r}`, t.name)
    if (t.data.length !== t.shape[0]! * t.shape[1]!)
      throw bad(`shape [${t.shape}] does not match its ${t.data.length} values`, t.name)
    seen.set(t.name, t)
    targetsFound.add(k.target)
    maxLayer = Math.max(maxLayer, k.layer)
  }
  for (const target of s.targets)
    if (!targetsFound.has(target)) throw bad(`target_modules lists ${target} but no tensor adapts it`)
  const layers = maxLayer + 1
  for (let layer = 0; layer < layers; layer++) {
    for (const target of s.targets) {
      const a = seen.get(loraKey(layer, target, 'A'))
      const b = seen.get(loraKey(layer, target, 'B'))
      if (!a || !b) throw bad(`tensor ${loraKey(layer, target, a ? 'B' : 'A')} is missing`)
    }
  }
  if (seen.size !== tensors.length) throw bad('holds a tensor name twice')
  return layers
}
