// `dpo-studio sft`: full-parameter supervised fine-tuning of a small full-precision model on the answers of a
// preference dataset (the chosen side, or both sides), written as a new Hugging Face model directory.
import { loadPreferenceData, preferencePairs } from '../../services/data/preferenceFile'
import { openModel } from '../../services/session/modelSession'
import { StudioError } from '../../services/errors'
import { saveTrainedModel, sftTrain, type SftExample } from '../../services/training/sft'
import { ProgressBar } from '../progressBar'

export interface SftFlags {
  model: string
  dataset: string
  answers: 'chosen' | 'both'
  supportRatio: number
  epochs: number
  batchSize: number
  lr: number
  seed: number
  system?: string
  bf16: boolean
  out: string
}

export async function runSft(flags: SftFlags): Promise<void> {
  const data = await loadPreferenceData(flags.dataset)
  const pairs = preferencePairs(data, { supportRatio: flags.supportRatio })
  const examples: SftExample[] = []
  for (const p of pairs) {
    if (typeof p.prompt !== 'string')
      throw new StudioError('E_BAD_INPUT', 'sft needs plain-text prompts (not message lists)')
    examples.push({ prompt: p.prompt, answer: p.chosen })
    if (flags.answers === 'both') examples.push({ prompt: p.prompt, answer: p.rejected })
  }
  const session = await openModel(flags.model, { quant: 'none', backend: 'auto' })
  try {
    let bar: ProgressBar | undefined // made at the first step, when the step count is known
    const losses = await sftTrain(session, examples, {
      epochs: flags.epochs,
      batchSize: flags.batchSize,
      learningRate: flags.lr,
      seed: flags.seed,
      system: flags.system,
      onStep: ({ step, totalSteps, loss }) => {
        bar ??= new ProgressBar('sft', totalSteps, 'steps')
        bar.update(step, `loss ${loss.toFixed(4)}`)
      },
    })
    bar?.finish()
    saveTrainedModel(session, flags.out, { bf16: flags.bf16 })
    process.stderr.write(`wrote ${flags.out} after ${losses.length} steps (last loss ${losses.at(-1)?.toFixed(4)})\n`)
  } finally {
    session.dispose()
  }
}
