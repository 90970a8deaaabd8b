// TypeScript declaration of the whole native module (native/addon/addon.cpp): one place for its shapes.

export type QuantMode = 'nf4' | 'none'
export type BackendChoice = 'auto' | 'cpu' | 'cuda'

export interface BackendInfo {
  cudaCompiled: boolean
  cudaAvailable: boolean
  cudaReason: string
  cudaDevice: string
  cudaFreeBytes: number
  cudaTotalBytes: number
  cpuThreads: number
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
  ropeTheta: number
  rmsNormEps: number
  tieEmbeddings: boolean
  qkvBias: boolean
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
  quant: QuantMode
}

export interface ScoredSequence {
  ids: Int32Array | number[]
  labels: Int32Array | number[]
}

export interface SequenceLogp {
  logp: number
  tokens: number
  logitsMean: number
}

export interface GenerateOptions {
  maxNewTokens: number
  eosIds: number[]
}

export interface GenerateResult {
  tokens: Int32Array[]
  finish: Array<'eos' | 'length' | 'cancelled'>
}

export declare class NativeCancelToken {
  cancel(): void
  readonly cancelled: boolean
}

export interface NativeModel {
  info(): NativeModelInfo
  logps(batch: ScoredSequence[], padId: number, cancel?: NativeCancelToken): Promise<SequenceLogp[]>
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
  loadModel(
    dir: string,
    options: { quant: QuantMode; backend: BackendChoice },
    onProgress?: (fraction: number) => void,
  ): Promise<NativeModel>
  CancelToken: new () => NativeCancelToken
}

/** Errors thrown by the engine carry a stable code. */
export interface EngineError extends Error {
  code: 'E_BAD_INPUT' | 'E_BAD_MODEL' | 'E_NO_CUDA' | 'E_OOM' | 'E_CANCELLED' | 'E_IO' | 'E_INTERNAL'
}
