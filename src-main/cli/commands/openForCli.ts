// Shared by the model commands: open the model with a loading bar and say which backend computes.
import type { BackendChoice, QuantMode } from '../../engine/nativeTypes'
import { StudioError } from '../../services/errors'
import { openModel, type ModelSession } from '../../services/engine/modelSession'
import { ProgressBar } from '../progressBar'

export interface ModelFlags {
  model: string
  adapter?: string
  backend: BackendChoice
  quant: QuantMode
}

export async function openForCli(flags: ModelFlags): Promise<ModelSession> {
  const bar = new ProgressBar('load', 100, '%')
  const session = await openModel(flags.model, {
    quant: flags.quant,
    backend: flags.backend,
    onProgress: (f) => bar.update(Math.round(f * 100)),
  })
  bar.finish()
  const i = session.info
  process.stderr.write(
    `model: ${i.config.architecture}, ${(i.params / 1e6).toFixed(2)}M params, ${flags.quant}, ` +
      `${(i.residentBytes / 2 ** 20).toFixed(1)} MiB resident; ${i.backend} (${i.backendNote})\n`,
  )
  return session
}

/** LoRA adapters arrive with DPO training; until then say so instead of silently ignoring the flag. */
export function rejectAdapter(flags: ModelFlags): void {
  if (flags.adapter !== undefined)
    throw new StudioError('E_BAD_ARGS', '--adapter is not supported by this version yet (LoRA adapters come with DPO training)')
}
