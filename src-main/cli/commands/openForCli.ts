// Shared by the model commands: open the model with a loading bar, say which backend computes, and put a PEFT
// LoRA adapter on it when --adapter names one (docs/architecture.md#command-line).
import type { BackendChoice, QuantMode } from '../../addon/addonTypes'
import { openModel, type ModelSession } from '../../services/session/modelSession'
import { loadAdapter } from '../../services/training/adapterFiles'
import { attachLoadedAdapter } from '../../services/training/loraAttach'
import { ProgressBar } from '../progressBar'

export interface ModelFlags {
  model: string
  adapter?: string
  backend: BackendChoice
  quant: QuantMode
}

export async function openForCli(flags: ModelFlags): Promise<ModelSession> {
  // Read and check the adapter before the (slow) model load, so a bad --adapter fails at once.
  const adapter = flags.adapter !== undefined ? loadAdapter(flags.adapter) : null
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
  if (adapter) {
    try {
      attachLoadedAdapter(session, adapter)
    } catch (e) {
      session.dispose()
      throw e
    }
    const a = adapter.settings
    process.stderr.write(`adapter: ${adapter.dir} (r=${a.r}, alpha=${a.alpha}, ${a.targets.join(',')})\n`)
  }
  return session
}
