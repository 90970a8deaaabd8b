// A fake NativeModel for the training-loop tests: deterministic log-probs and DPO metrics, and a record of every
// call, so the loop's sequencing (which pairs, which learning rates, when the adapter exists) can be checked exactly.
import type {
  DpoOptions,
  DpoPairInput,
  DpoPairMetrics,
  GenerateOptions,
  GenerateResult,
  LoraOptions,
  LoraTensor,
  NativeCancelToken,
  NativeModel,
  NativeModelInfo,
  OptimizerOptions,
  OptimizerStepResult,
  ScoredSequence,
  SequenceLogp,
  TrainingState,
} from '../../../src-main/addon/addonTypes'
import type { ModelSession } from '../../../src-main/services/session/modelSession'
import { loraKey } from '../../../src-main/services/training/adapterFiles'
import type { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'

export const FAKE_LAYERS = 2
const HIDDEN = 8
const KV = 4

export type FakeCall =
  | { kind: 'logps'; sequences: number; useAdapter: boolean; withLogitsMean: boolean }
  | { kind: 'attachLora'; options: LoraOptions }
  | { kind: 'setLoraTensors'; tensors: LoraTensor[] }
  | { kind: 'dpoAccumulate'; chosenIds: string[]; refs: Array<[number, number]>; options: DpoOptions }
  | { kind: 'dpoAccumulateGroup'; microBatches: number }
  | { kind: 'optimizerStep'; options: OptimizerOptions }
  | { kind: 'importTrainingState'; state: TrainingState }
  | { kind: 'generate'; prompts: number; hasLora: boolean }

/** A cancel token like the addon's. */
export class FakeCancelToken implements NativeCancelToken {
  cancelled = false
  cancel(): void {
    this.cancelled = true
  }
}

/** Deterministic per-token log-probs of a sequence's scored tokens (labels[t] for t >= 1 that are not -100), float32 as the engine gives them. */
export function fakeTokenLogps(seq: ScoredSequence): Float32Array {
  const labels = Array.from(seq.labels)
  const out: number[] = []
  for (let t = 1; t < labels.length; t++) if (labels[t] !== -100) out.push(-((labels[t]! % 13) + 1) / 10)
  return Float32Array.from(out)
}

/** Deterministic "log-prob sum" of a sequence: its per-token values added in order, as the engine does. */
export function fakeLogp(seq: ScoredSequence): number {
  let s = 0
  for (const v of fakeTokenLogps(seq)) s += v
  return s
}

const softplus = (x: number) => Math.log1p(Math.exp(x))

export class FakeModel implements NativeModel {
  readonly calls: FakeCall[] = []
  /** Optimizer updates with lr > 0: the fake policy moves by this much (chosen +0.5, rejected -0.25 per update). */
  updates = 0
  lora: LoraOptions | null = null
  tensors: LoraTensor[] = []
  /** Runs before each dpoAccumulate (1-based call number) and may abort or throw. */
  beforeAccumulate?: (n: number) => void
  /** What info() says of chained scoring (the CPU engine's true; the trainer then sends a step in one call). */
  chainedScoring = false
  private accumulateCalls = 0
  private stepsTaken = 0
  private gradCalls = 0

  info(): NativeModelInfo {
    return {
      config: {
        architecture: 'LlamaForCausalLM',
        modelType: 'llama',
        hidden: HIDDEN,
        layers: FAKE_LAYERS,
        heads: 2,
        kvHeads: 1,
        headDim: 4,
        intermediate: 16,
        vocab: 512,
        maxPosition: 512,
        context: 512,
        ropeTheta: 10000,
        ropeType: 'default',
        ropeFactor: 1,
        rmsNormEps: 1e-5,
        tieEmbeddings: true,
        qkvBias: false,
        qkNorm: false,
        slidingWindow: 0,
        prequantized: false,
        bosTokenId: 1,
        eosTokenIds: [2],
        torchDtype: 'float32',
      },
      params: 1000,
      checkpointBytes: 4000,
      residentBytes: 4000,
      quantizedLinears: 0,
      backend: 'cpu',
      backendNote: 'fake',
      chainedScoring: this.chainedScoring,
      quant: 'nf4',
    }
  }

  async logps(
    batch: ScoredSequence[],
    _padId: number,
    _cancel?: NativeCancelToken,
    useAdapter = true,
    withLogitsMean = true,
  ): Promise<SequenceLogp[]> {
    this.calls.push({ kind: 'logps', sequences: batch.length, useAdapter, withLogitsMean })
    // With the trained adapter the fake policy moves as in dpoAccumulate: the first token of each chosen sequence
    // (even positions: batches are [chosen, rejected, ...]) by +0.5 per update, of each rejected one by -0.25.
    const moved = useAdapter && this.lora !== null
    return batch.map((s, i) => {
      const tokenLogps = fakeTokenLogps(s)
      if (moved && tokenLogps.length > 0) tokenLogps[0] = tokenLogps[0]! + (i % 2 === 0 ? 0.5 : -0.25) * this.updates
      let logp = 0
      for (const v of tokenLogps) logp += v
      return { logp, tokens: tokenLogps.length, logitsMean: withLogitsMean ? 0.5 : NaN, tokenLogps }
    })
  }

  attachLora(options: LoraOptions): void {
    this.calls.push({ kind: 'attachLora', options })
    this.lora = options
    this.updates = 0
    this.stepsTaken = 0
    this.tensors = []
    for (let l = 0; l < FAKE_LAYERS; l++) {
      for (const t of options.targets) {
        const out = t === 'k_proj' || t === 'v_proj' ? KV : HIDDEN
        this.tensors.push({
          name: loraKey(l, t as 'q_proj', 'A'),
          shape: [options.r, HIDDEN],
          data: new Float32Array(options.r * HIDDEN).fill((options.seed % 7) / 10),
        })
        this.tensors.push({
          name: loraKey(l, t as 'q_proj', 'B'),
          shape: [out, options.r],
          data: new Float32Array(out * options.r),
        })
      }
    }
  }

  detachLora(): void {
    this.lora = null
    this.tensors = []
  }

  hasLora(): boolean {
    return this.lora !== null
  }

  loraTensors(): LoraTensor[] {
    return this.tensors.map((t) => ({ name: t.name, shape: [...t.shape], data: Float32Array.from(t.data) }))
  }

  setLoraTensors(tensors: LoraTensor[]): void {
    this.calls.push({ kind: 'setLoraTensors', tensors })
    const byName = new Map(tensors.map((t) => [t.name, t]))
    for (const t of this.tensors) {
      const n = byName.get(t.name)
      if (!n || n.data.length !== t.data.length)
        throw Object.assign(new Error(`tensor ${t.name} missing or wrong size`), { code: 'E_BAD_INPUT' })
      t.data.set(n.data)
    }
  }

  /** As the engine's contract says: each micro-batch in turn (so the call log and hooks see every micro-batch). */
  async dpoAccumulateGroup(
    microBatches: DpoPairInput[][],
    padId: number,
    options: DpoOptions,
    cancel?: NativeCancelToken,
  ): Promise<DpoPairMetrics[][]> {
    this.calls.push({ kind: 'dpoAccumulateGroup', microBatches: microBatches.length })
    const out: DpoPairMetrics[][] = []
    for (const mb of microBatches) out.push(await this.dpoAccumulate(mb, padId, options, cancel))
    return out
  }

  async dpoAccumulate(
    pairs: DpoPairInput[],
    _padId: number,
    options: DpoOptions,
    cancel?: NativeCancelToken,
  ): Promise<DpoPairMetrics[]> {
    this.accumulateCalls++
    this.calls.push({
      kind: 'dpoAccumulate',
      chosenIds: pairs.map((p) => Array.from(p.chosen.ids).join(',')),
      refs: pairs.map((p) => [p.refChosen, p.refRejected]),
      options,
    })
    this.beforeAccumulate?.(this.accumulateCalls)
    if (cancel?.cancelled) throw Object.assign(new Error('cancelled'), { code: 'E_CANCELLED' })
    if (!this.lora) throw Object.assign(new Error('no adapter attached'), { code: 'E_BAD_INPUT' })
    this.gradCalls++
    return pairs.map((p) => {
      const pc = p.refChosen + 0.5 * this.updates
      const pr = p.refRejected - 0.25 * this.updates
      const d = pc - pr - (p.refChosen - p.refRejected)
      return {
        loss: softplus(-options.beta * d),
        chosenLogp: pc,
        rejectedLogp: pr,
        chosenLogitsMean: p.chosen.ids.length / 100,
        rejectedLogitsMean: p.rejected.ids.length / 100,
        chosenReward: options.beta * (pc - p.refChosen),
        rejectedReward: options.beta * (pr - p.refRejected),
      }
    })
  }

  async optimizerStep(options: OptimizerOptions): Promise<OptimizerStepResult> {
    this.calls.push({ kind: 'optimizerStep', options })
    this.stepsTaken++
    const gradNorm = 1 + this.gradCalls / 100
    this.gradCalls = 0
    if (options.lr > 0) this.updates++
    // B moves by lr each step, so a saved adapter shows which steps were applied.
    for (const t of this.tensors) if (t.name.includes('lora_B')) t.data.forEach((v, i) => (t.data[i] = v + options.lr))
    return { gradNorm }
  }

  /** The fake's optimizer state: its step count and its policy movement (updates), as one fp32 "tensor". */
  exportTrainingState(): TrainingState {
    const steps = this.callsOf('optimizerStep')
    const kind = steps.length === 0 ? 'none' : steps[steps.length - 1]!.options.kind
    return {
      optimizer: kind,
      tensors:
        kind === 'none'
          ? []
          : [
              {
                name: 'fake',
                layout: 'adamw',
                step: this.stepsTaken,
                numel: 1,
                m: Float32Array.of(this.updates),
                v: Float32Array.of(0),
              },
            ],
      dropoutRng: `fake-rng ${this.stepsTaken}`,
    }
  }

  importTrainingState(state: TrainingState): void {
    this.calls.push({ kind: 'importTrainingState', state })
    const t = state.tensors[0]
    this.stepsTaken = t?.step ?? 0
    this.updates = t?.m?.[0] ?? 0
    this.gradCalls = 0
  }

  // Full-parameter SFT is not part of the DPO loop.
  async sftAccumulate(): Promise<{ loss: number; tokens: number }> {
    throw new Error('FakeModel: sftAccumulate is not used by the DPO loop')
  }

  async sftStep(): Promise<OptimizerStepResult> {
    throw new Error('FakeModel: sftStep is not used by the DPO loop')
  }

  saveWeights(): void {
    throw new Error('FakeModel: saveWeights is not used by the DPO loop')
  }

  async generate(
    prompts: Array<Int32Array | number[]>,
    options: GenerateOptions,
    onToken?: (sequence: number, token: number) => void,
    cancel?: NativeCancelToken,
  ): Promise<GenerateResult> {
    this.calls.push({ kind: 'generate', prompts: prompts.length, hasLora: this.hasLora() })
    if (cancel?.cancelled)
      return { tokens: prompts.map(() => new Int32Array()), finish: prompts.map(() => 'cancelled' as const) }
    // stories260K ids: a short answer that differs once an adapter is on, then EOS.
    const answer = this.hasLora() ? [403, 281, 2] : [300, 281, 2]
    const tokens = prompts.map((_, i) => {
      const t = answer.slice(0, Math.min(answer.length, options.maxNewTokens))
      t.forEach((tok) => onToken?.(i, tok))
      return Int32Array.from(t)
    })
    return { tokens, finish: prompts.map(() => 'eos' as const) }
  }

  memoryStats(): { inUseBytes: number; peakBytes: number } {
    return { inUseBytes: 1024, peakBytes: 4096 }
  }
  resetPeakMemory(): void {}
  dispose(): void {}

  callsOf<K extends FakeCall['kind']>(kind: K): Array<Extract<FakeCall, { kind: K }>> {
    return this.calls.filter((c): c is Extract<FakeCall, { kind: K }> => c.kind === kind)
  }
}

export function fakeSession(
  dir: string,
  tokenizer: TextTokenizer,
  native = new FakeModel(),
): ModelSession & { native: FakeModel } {
  return { dir, native, info: native.info(), tokenizer, dispose: () => native.dispose() }
}
