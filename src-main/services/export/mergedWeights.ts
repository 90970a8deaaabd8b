// The weights of a base model with a LoRA adapter folded in, tensor by tensor (docs/exports.md, "Merged model"):
// W' = W + (alpha / r) * B @ A for every adapted linear, every other tensor as stored, all in one output dtype.
// For a run trained on the 4-bit base ("nf4"), W is what the engine computed with: every quantized linear's NF4
// round trip (fp16 cast, NF4 + double quant, dequantized, bf16), so the merged model computes what training saw.
import { loadAddon } from '../../addon/loadAddon'
import { StudioError } from '../errors'
import { LINEAR_TARGETS } from '../../../src-shared/params/trainParams'
import { parseLoraKey, toBf16Bytes, type LoadedAdapter } from '../training/adapterFiles'
import { decodeFloats, type CheckpointTensor, type HfCheckpoint } from './hfCheckpoint'

/** Into which base weights the adapter is folded: the checkpoint's own, or the 4-bit base the run trained on. */
export type MergeBase = 'original' | 'nf4'
export type OutputDtype = 'F32' | 'BF16' | 'F16'

export const DTYPE_NAMES: Record<OutputDtype, string> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' }
/** torch dtype names -> safetensors dtypes. */
export const FROM_NAME: Record<string, OutputDtype> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' }

/** `model.layers.{i}.{self_attn|mlp}.{kind}.weight`: the linears the engine quantizes to NF4. */
const LINEAR_WEIGHT = new RegExp(
  `^model\\.layers\\.\\d+\\.(?:self_attn|mlp)\\.(?:${LINEAR_TARGETS.join('|')})\\.weight$`,
)

/** The base model's dtype: config.json's torch_dtype (or transformers 5's dtype), else its first float tensor's. */
export function checkpointDtype(ckpt: HfCheckpoint): OutputDtype {
  const named = ckpt.config.torch_dtype ?? ckpt.config.dtype
  if (typeof named === 'string' && FROM_NAME[named]) return FROM_NAME[named]!
  for (const t of ckpt.tensors.values())
    if (t.dtype === 'F32' || t.dtype === 'BF16' || t.dtype === 'F16') return t.dtype
  return 'F32'
}

export class MergedWeights {
  /** Adapted linear (HF weight name) -> its A, B tensors. */
  private readonly lora = new Map<string, { a: Float32Array; b: Float32Array }>()
  readonly scale: number
  readonly rank: number

  constructor(
    readonly ckpt: HfCheckpoint,
    readonly adapter: LoadedAdapter | null,
    readonly base: MergeBase,
    readonly dtype: OutputDtype,
  ) {
    if (ckpt.isPrequantized) {
      throw new StudioError(
        'E_BAD_MODEL',
        `${ckpt.dir} is a bitsandbytes 4-bit checkpoint; export from the 16-bit model it was quantized from (the run's merge of an NF4 base uses that base's NF4 round trip, docs/exports.md)`,
      )
    }
    this.rank = adapter?.settings.r ?? 0
    this.scale = adapter ? adapter.settings.alpha / adapter.settings.r : 0
    for (const t of adapter?.tensors ?? []) {
      const k = parseLoraKey(t.name)!
      const weight = `model.layers.${k.layer}.${t.name.includes('.self_attn.') ? 'self_attn' : 'mlp'}.${k.target}.weight`
      const entry = this.lora.get(weight) ?? { a: new Float32Array(0), b: new Float32Array(0) }
      if (k.which === 'A') entry.a = t.data
      else entry.b = t.data
      this.lora.set(weight, entry)
    }
    for (const name of this.lora.keys()) {
      const t = ckpt.tensors.get(name)
      if (!t)
        throw new StudioError(
          'E_BAD_INPUT',
          `the adapter adapts ${name}, which ${ckpt.dir} does not have (an adapter of another model?)`,
        )
      const { a, b } = this.lora.get(name)!
      const [rows, cols] = t.shape as [number, number]
      if (a.length !== this.rank * cols || b.length !== rows * this.rank) {
        throw new StudioError(
          'E_BAD_INPUT',
          `the adapter's matrices for ${name} do not fit its shape [${t.shape}] (an adapter of another model?)`,
        )
      }
    }
  }

  /** Tensor names in checkpoint order. */
  names(): string[] {
    return [...this.ckpt.tensors.keys()]
  }

  info(name: string): CheckpointTensor {
    return this.ckpt.get(name)
  }

  /** Whether this tensor's values differ from the checkpoint's (adapted, or NF4 round-tripped). */
  changed(name: string): boolean {
    return this.lora.has(name) || (this.base === 'nf4' && LINEAR_WEIGHT.test(name))
  }

  /** The tensor's values in fp32, before rounding to the output dtype. */
  private exact(name: string): Float32Array {
    const w = this.ckpt.readFloat32(name)
    if (!this.changed(name)) return w
    const [rows, cols] = this.ckpt.get(name).shape as [number, number]
    const ops = loadAddon().exportOps
    if (this.base === 'nf4' && LINEAR_WEIGHT.test(name)) ops.nf4Effective(w, rows, cols)
    const l = this.lora.get(name)
    if (l) ops.mergeLora(w, rows, cols, l.a, l.b, this.rank, this.scale)
    return w
  }

  /** The tensor as stored in the output: bytes in the output dtype (float tensors) or as checkpointed (others). */
  encoded(name: string): Uint8Array {
    const t = this.ckpt.get(name)
    if (!(t.dtype === 'F32' || t.dtype === 'BF16' || t.dtype === 'F16')) return this.ckpt.readRaw(name)
    if (!this.changed(name) && t.dtype === this.dtype) return this.ckpt.readRaw(name)
    return encodeFloats(this.exact(name), this.dtype)
  }

  /** The tensor's output values widened back to fp32 (what a reader of the merged model sees). */
  float32(name: string): Float32Array {
    const t = this.ckpt.get(name)
    if (!this.changed(name) && t.dtype === this.dtype) return decodeFloats(this.ckpt.readRaw(name), t.dtype)
    if (this.dtype === 'F32') return this.exact(name)
    return decodeFloats(Buffer.from(encodeFloats(this.exact(name), this.dtype)), this.dtype)
  }
}

export function encodeFloats(x: Float32Array, dtype: OutputDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(x.buffer, x.byteOffset, x.byteLength)
  if (dtype === 'BF16') return toBf16Bytes(x)
  return loadAddon().exportOps.ggmlEncode('f16', x)
}
