// TypeScript declaration of the whole native module (native/addon/module.cpp): one place for its shapes. Enum-valued
// options take their values from enumValues.ts, the one list the schemas and the CLI check against. The shapes the
// renderer shows too (backend, model info) live in src-shared/engine/engineTypes.ts and are re-exported here.
import type { BackendInfo, NativeModelConfig, NativeModelInfo } from '../../src-shared/engine/engineTypes'
import type { BackendChoice, LossType, OptimizerKind, QuantMode } from '../../src-shared/params/enumValues'

export type { BackendChoice, BackendInfo, NativeModelConfig, NativeModelInfo, QuantMode }

/** checkModel: the loader's checks from config.json and the safetensors headers alone (nothing loaded). */
export interface NativeModelCheck {
  ok: boolean
  /** E_BAD_MODEL, ... when !ok. */
  code: string
  /** The error Model::load would throw, when !ok. */
  message: string
  /** The parsed config, when config.json could be read (even if the tensors then failed). */
  config: NativeModelConfig | null
  params: number
  checkpointBytes: number
  quantizedLinears: number
}

export interface ScoredSequence {
  ids: Int32Array | number[]
  labels: Int32Array | number[]
}

export interface SequenceLogp {
  logp: number
  tokens: number
  /** TRL's logits/* metric (mean logit over the padded block); NaN when logps was called with withLogitsMean=false. */
  logitsMean: number
  /** (tokens) log p of each scored token in order; their in-order double sum is logp, bit for bit (docs/insights.md). */
  tokenLogps: Float32Array
}

export interface GenerateOptions {
  maxNewTokens: number
  eosIds: number[]
}

export interface GenerateResult {
  tokens: Int32Array[]
  /** 'context': prompt + answer filled the model's context (max_position_embeddings). */
  finish: Array<'eos' | 'length' | 'context' | 'cancelled'>
}

export declare class NativeCancelToken {
  cancel(): void
  readonly cancelled: boolean
}

// ---- training (LoRA + DPO). The loop itself lives in TypeScript; native exposes step-sized calls.

export interface LoraOptions {
  /** Linear kinds to adapt, e.g. ['q_proj', 'v_proj']. */
  targets: string[]
  r: number
  alpha: number
  /** Dropout on the LoRA input during dpoAccumulate (0 when TRL's disable_dropout is on). */
  dropout: number
  /**
   * Seeds the kaiming-uniform init of A (torch CPU generator semantics,
   * docs/reference/lora.md#initialisation-and-its-random-numbers) and the dropout masks.
   */
  seed: number
}

/** One adapter tensor, PEFT naming: base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight */
export interface LoraTensor {
  name: string
  shape: number[]
  data: Float32Array
}

export interface DpoPairInput {
  chosen: ScoredSequence
  rejected: ScoredSequence
  /** Reference log-prob sums (adapter disabled), computed once before training. */
  refChosen: number
  refRejected: number
}

export interface DpoOptions {
  beta: number
  lossType: LossType
  labelSmoothing: number
  /**
   * Gradients are accumulated as gradScale * dLoss/dθ (1 / gradient_accumulation_steps,
   * docs/reference/trainer.md#loss-scaling-and-the-logged-loss).
   */
  gradScale: number
}

/** Per pair, TRL's definitions (docs/reference/dpo-loss.md). */
export interface DpoPairMetrics {
  loss: number
  chosenLogp: number
  rejectedLogp: number
  chosenLogitsMean: number
  rejectedLogitsMean: number
  chosenReward: number
  rejectedReward: number
}

export interface OptimizerOptions {
  kind: OptimizerKind
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  /** 0 = no clipping. */
  maxGradNorm: number
}

export interface OptimizerStepResult {
  /** Global L2 norm of the accumulated gradients before clipping (what TRL logs as grad_norm). */
  gradNorm: number
}

/**
 * One parameter's optimizer state (native/include/dpo/training_state.h, docs/resume.md): fp32 AdamW keeps m and v;
 * the 8-bit optimizer keeps state1/state2 codes with absmax1/absmax2 block scales from 4096 elements on
 * (bnb8_blockwise) and fp32 m, v below (bnb32).
 */
export interface OptimizerTensorState {
  /** The parameter's PEFT name, as loraTensors() gives it. */
  name: string
  layout: 'adamw' | 'bnb8_blockwise' | 'bnb32'
  /** Updates applied so far (the per-parameter step counter of the bias corrections). */
  step: number
  numel: number
  m?: Float32Array
  v?: Float32Array
  state1?: Uint8Array
  state2?: Uint8Array
  absmax1?: Float32Array
  absmax2?: Float32Array
}

/** What training holds in the engine beyond A and B, as of the last optimizer step (exportTrainingState). */
export interface TrainingState {
  /** 'none' before the first optimizer step. */
  optimizer: 'none' | 'adamw' | 'paged_adamw_8bit'
  tensors: OptimizerTensorState[]
  /** The LoRA dropout generator (std::mt19937 text form) after the last optimizer step. */
  dropoutRng: string
}

export interface NativeModel {
  info(): NativeModelInfo
  /**
   * useAdapter=false scores with the adapter disabled (the DPO reference model); default true.
   * withLogitsMean=false: the caller reads no logitsMean (NaN then), and the engine skips the rows that only that
   * metric needs (docs/performance.md#chained-rows-without-the-logits-metric); logp and tokenLogps are the same bits.
   * Default true.
   */
  logps(
    batch: ScoredSequence[],
    padId: number,
    cancel?: NativeCancelToken,
    useAdapter?: boolean,
    withLogitsMean?: boolean,
  ): Promise<SequenceLogp[]>
  /** Creates a fresh adapter (A kaiming-uniform from the seed, B = 0) and drops any previous one and its optimizer state. */
  attachLora(options: LoraOptions): void
  detachLora(): void
  hasLora(): boolean
  /** Copies of the adapter tensors (for saving in PEFT format). */
  loraTensors(): LoraTensor[]
  /** Loads adapter values (shapes must match the attached adapter; names as loraTensors gives them). */
  setLoraTensors(tensors: LoraTensor[]): void
  /** Forward + backward of the DPO loss for a micro-batch of pairs; accumulates LoRA gradients. */
  dpoAccumulate(
    pairs: DpoPairInput[],
    padId: number,
    options: DpoOptions,
    cancel?: NativeCancelToken,
  ): Promise<DpoPairMetrics[]>
  /**
   * dpoAccumulate over each micro-batch of one optimizer step in turn, computed together where the engine can
   * (docs/performance.md#chained-training-steps): the same metrics bit for bit, the same LoRA gradients up to float
   * summation order. Result [i] belongs to microBatches[i].
   */
  dpoAccumulateGroup(
    microBatches: DpoPairInput[][],
    padId: number,
    options: DpoOptions,
    cancel?: NativeCancelToken,
  ): Promise<DpoPairMetrics[][]>
  /** Clips, applies one optimizer update with the given learning rate, and zeroes the gradients. */
  optimizerStep(options: OptimizerOptions): Promise<OptimizerStepResult>
  /** The attached adapter's optimizer state, step counters and dropout generator as of its last optimizer step. */
  exportTrainingState(): TrainingState
  /** Restores an exported state into the attached adapter (checked first: a state that does not fit changes nothing). */
  importTrainingState(state: TrainingState): void
  /**
   * Full-parameter SFT (model loaded with quant 'none'): mean cross-entropy over the labelled tokens of the batch;
   * every weight's gradient accumulates as gradScale * d(mean)/dθ.
   */
  sftAccumulate(
    batch: ScoredSequence[],
    padId: number,
    gradScale: number,
    cancel?: NativeCancelToken,
  ): Promise<{ loss: number; tokens: number }>
  /** Clipping + one fp32 AdamW update of every weight (kind is ignored: always fp32 AdamW). */
  sftStep(options: OptimizerOptions): Promise<OptimizerStepResult>
  /** Writes the weights as a Hugging Face model.safetensors (bf16 or fp32), atomically. */
  saveWeights(path: string, options?: { bf16?: boolean }): void
  /** Memory of the compute backend (GPU memory on CUDA): held now, and at most since load or resetPeakMemory(). */
  memoryStats(): { inUseBytes: number; peakBytes: number }
  resetPeakMemory(): void
  generate(
    prompts: Array<Int32Array | number[]>,
    options: GenerateOptions,
    onToken?: (sequence: number, token: number) => void,
    cancel?: NativeCancelToken,
  ): Promise<GenerateResult>
  dispose(): void
}

export interface NativeEngine {
  version(): string
  probe(): BackendInfo
  /** The loader's validation of a model folder, without loading it (headers only; synchronous). */
  checkModel(dir: string, options?: { quant?: QuantMode }): NativeModelCheck
  loadModel(
    dir: string,
    options: { quant: QuantMode; backend: BackendChoice },
    onProgress?: (fraction: number) => void,
  ): Promise<NativeModel>
  CancelToken: new () => NativeCancelToken
  exportOps: NativeExportOps
}

/** Errors thrown by the engine carry a stable code. */
export interface EngineError extends Error {
  code:
    | 'E_BAD_INPUT'
    | 'E_BAD_MODEL'
    | 'E_NO_CUDA'
    | 'E_OOM'
    | 'E_CANCELLED'
    | 'E_IO'
    | 'E_INTERNAL'
    | 'E_DEVICE_FAULT'
    | 'E_TOO_LONG'
}

/** The engine's export arithmetic (native/include/dpo/export_ops.h), synchronous, one tensor per call. */
export interface NativeExportOps {
  /** w (rows, cols) += scale * b (rows, rank) @ a (rank, cols), in place. */
  mergeLora(
    w: Float32Array,
    rows: number,
    cols: number,
    a: Float32Array,
    b: Float32Array,
    rank: number,
    scale: number,
  ): void
  /** w (rows, cols) becomes the weights the quant-nf4 path multiplies with (fp16 cast, NF4 round trip, bf16). */
  nf4Effective(w: Float32Array, rows: number, cols: number): void
  /** fp32 values in llama.cpp's F16, Q8_0 or Q4_0 encoding (blocks of 32 for the last two). */
  ggmlEncode(kind: 'f16' | 'q8_0' | 'q4_0', x: Float32Array): Uint8Array
}
