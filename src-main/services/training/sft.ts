// Full-parameter supervised fine-tuning over (prompt, answer) examples: the engine's SFT calls driven with a seeded
// shuffle and a linear learning-rate decay. Used by `dpo-studio sft` and by the demo-model build script.
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import path from 'node:path'
import { StudioError } from '../errors'
import { writeFileAtomic } from '../fsAtomic'
import type { ModelSession } from '../session/modelSession'
import { fromEngineError } from '../session/modelSession'
import { promptText } from '../session/promptText'
import { promptIds } from '../tokenizer/chatTemplate'
import { randperm } from './dataOrder'

export interface SftExample {
  prompt: string
  answer: string
}

export interface SftOptions {
  epochs: number
  batchSize: number
  learningRate: number
  /** Fraction of the steps that warm the learning rate up linearly before the linear decay. */
  warmupRatio?: number
  seed: number
  system?: string
  maxGradNorm?: number
  weightDecay?: number
  onStep?: (info: { step: number; totalSteps: number; loss: number; lr: number }) => void
  signal?: AbortSignal
}

/** Prompt ids (chat template + system message) followed by the answer and EOS; labels -100 over the prompt. */
export function sftSequence(
  session: ModelSession,
  ex: SftExample,
  system?: string,
): { ids: number[]; labels: number[] } {
  const tok = session.tokenizer
  if (tok.eosId === null) throw new StudioError('E_BAD_MODEL', `the tokenizer in ${session.dir} has no EOS token`)
  const p = promptIds(tok, promptText(tok, ex.prompt, { system }))
  const a = [...tok.encode(ex.answer, { addSpecialTokens: false }), tok.eosId]
  return { ids: [...p, ...a], labels: [...p.map(() => -100), ...a] }
}

/** Trains every weight of the session's model (loaded with quant 'none'); returns the per-step losses. */
export async function sftTrain(session: ModelSession, examples: SftExample[], o: SftOptions): Promise<number[]> {
  if (examples.length === 0) throw new StudioError('E_BAD_INPUT', 'SFT needs at least one example')
  if (session.info.quant !== 'none')
    throw new StudioError('E_BAD_ARGS', 'full-parameter SFT needs full-precision weights: use --quant none')
  const seqs = examples.map((e) => sftSequence(session, e, o.system))
  const padId = session.tokenizer.padId ?? session.tokenizer.eosId ?? 0
  const perEpoch = Math.ceil(seqs.length / o.batchSize)
  const totalSteps = perEpoch * o.epochs
  const warmup = Math.ceil(totalSteps * (o.warmupRatio ?? 0))
  const losses: number[] = []
  let step = 0
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const order = randperm(seqs.length, o.seed + epoch)
    for (let b = 0; b < perEpoch; b++) {
      if (o.signal?.aborted) return losses
      const batch = order.slice(b * o.batchSize, (b + 1) * o.batchSize).map((i) => seqs[i]!)
      const lr =
        step < warmup
          ? (o.learningRate * step) / Math.max(1, warmup)
          : (o.learningRate * (totalSteps - step)) / Math.max(1, totalSteps - warmup)
      try {
        const r = await session.native.sftAccumulate(batch, padId, 1)
        await session.native.sftStep({
          kind: 'adamw',
          lr,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: o.weightDecay ?? 0,
          maxGradNorm: o.maxGradNorm ?? 1,
        })
        losses.push(r.loss)
        step++
        o.onStep?.({ step, totalSteps, loss: r.loss, lr })
      } catch (e) {
        throw fromEngineError(e)
      }
    }
  }
  return losses
}

const MODEL_SIDE_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'chat_template.jinja',
]

/**
 * Writes the trained model as a Hugging Face directory: the weights (bf16 or fp32) plus the source directory's
 * config and tokenizer files. Built in a temp folder beside `outDir` and renamed into place.
 */
export function saveTrainedModel(session: ModelSession, outDir: string, options: { bf16: boolean }): void {
  const parent = path.dirname(path.resolve(outDir))
  mkdirSync(parent, { recursive: true })
  const tmp = path.join(parent, `.${path.basename(outDir)}.tmp-${process.pid}`)
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(tmp)
  session.native.saveWeights(path.join(tmp, 'model.safetensors'), { bf16: options.bf16 })
  for (const f of MODEL_SIDE_FILES)
    if (existsSync(path.join(session.dir, f))) copyFileSync(path.join(session.dir, f), path.join(tmp, f))
  const cfg = JSON.parse(readFileSync(path.join(tmp, 'config.json'), 'utf8'))
  cfg.torch_dtype = options.bf16 ? 'bfloat16' : 'float32'
  writeFileAtomic(path.join(tmp, 'config.json'), JSON.stringify(cfg, null, 2) + '\n')
  rmSync(outDir, { recursive: true, force: true })
  renameSync(tmp, outDir)
}
