// What the engine reports about itself and a loaded model (native/addon/module.cpp): the shapes the API contract
// passes to the renderer. Type-only, so the renderer can import them without the addon loader.
import type { QuantMode } from '../params/enumValues'

export interface BackendInfo {
  cudaCompiled: boolean
  cudaAvailable: boolean
  cudaReason: string
  cudaDevice: string
  cudaFreeBytes: number
  cudaTotalBytes: number
  /** The GPU self-check (docs/cuda-self-check.md), run once per engine process when a GPU answers. */
  cudaSelfCheck: 'passed' | 'failed' | 'skipped' | 'not run'
  /** The failing kernel and GPU, or what passed and its cost. */
  cudaSelfCheckNote: string
  cudaSelfCheckMs: number
  cpuThreads: number
  /** The CPU kernel set and how it multiplies 4-bit weights on this core, e.g. "avx512, 4-bit products by bf16 dot
   *  products (vdpbf16ps at 1.0x an FMA's time)" (docs/cpu-kernels.md, kernel sets). */
  cpuKernels: string
}

export interface NativeModelConfig {
  architecture: string
  modelType: string
  hidden: number
  layers: number
  heads: number
  kvHeads: number
  headDim: number
  intermediate: number
  vocab: number
  maxPosition: number
  /** The longest sequence the engine takes: maxPosition, times the factor for dynamic RoPE (0 = no limit given). */
  context: number
  ropeTheta: number
  /** RoPE scaling as read (docs/model-families.md): default, linear, dynamic, yarn or llama3. */
  ropeType: 'default' | 'linear' | 'dynamic' | 'yarn' | 'llama3'
  ropeFactor: number
  rmsNormEps: number
  tieEmbeddings: boolean
  qkvBias: boolean
  /** Qwen3's per-head q/k RMSNorm. */
  qkNorm: boolean
  /** > 0: sequences longer than this are refused (the model's sliding window). */
  slidingWindow: number
  /** A bitsandbytes 4-bit checkpoint (quantization_config). */
  prequantized: boolean
  bosTokenId: number
  eosTokenIds: number[]
  torchDtype: string
}

export interface NativeModelInfo {
  config: NativeModelConfig
  params: number
  checkpointBytes: number
  residentBytes: number
  quantizedLinears: number
  backend: string
  backendNote: string
  /** logps without the logits metric runs a call's sequences as one chained row, unpadded: no grouping by length. */
  chainedScoring: boolean
  quant: QuantMode
}
