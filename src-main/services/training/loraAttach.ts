// Putting the LoRA a run trains on the model (docs/reference/lora.md#initialisation-and-its-random-numbers): fresh
// (A kaiming-uniform from the seed, B = 0), continued from a PEFT adapter, or restored from a checkpoint
// (docs/resume.md). Also what generate/logps --adapter and the exports use to put a saved adapter back.
import type { ModelSession } from '../session/modelSession'
import { fromEngineError } from '../session/modelSession'
import { StudioError } from '../errors'
import type { TrainParams } from '../../../src-shared/params/trainParams'
import { baseModelName, loadAdapter, type AdapterSettings, type LoadedAdapter } from './adapterFiles'
import type { Checkpoint } from './checkpoint'
import type { RunEvents } from '../../../src-shared/run/runTypes'

/**
 * The dropout the engine applies to the LoRA input while training: TRL's disable_dropout sets every nn.Dropout.p = 0,
 * LoRA's included (docs/reference/lora.md#dropout).
 */
export function trainingLoraDropout(params: Pick<TrainParams, 'disableDropout' | 'loraDropout'>): number {
  return params.disableDropout ? 0 : params.loraDropout
}

/** Attaches the LoRA the run trains (fresh, or from `initAdapter`) and returns what adapter_config.json will record. */
export function attachAdapter(
  session: ModelSession,
  params: TrainParams,
  initAdapter: string | LoadedAdapter | undefined,
  ev: RunEvents,
): AdapterSettings {
  const native = session.native
  const dropout = trainingLoraDropout(params)
  const baseModel = baseModelName(session.dir)
  if (!initAdapter) {
    const settings: AdapterSettings = {
      r: params.loraR,
      alpha: params.loraAlpha,
      dropout: params.loraDropout,
      targets: [...params.targets],
      baseModel,
    }
    try {
      native.attachLora({ targets: settings.targets, r: settings.r, alpha: settings.alpha, dropout, seed: params.seed })
    } catch (e) {
      throw fromEngineError(e)
    }
    return settings
  }
  const a = typeof initAdapter === 'string' ? loadAdapter(initAdapter) : initAdapter
  const differs =
    a.settings.r !== params.loraR ||
    a.settings.alpha !== params.loraAlpha ||
    a.settings.targets.join() !== params.targets.join()
  if (differs) {
    ev.log?.(
      `continuing from ${a.dir}: using its r=${a.settings.r}, alpha=${a.settings.alpha}, targets=${a.settings.targets.join(',')} ` +
        `(the run's LoRA shape parameters do not apply)`,
    )
  }
  attachLoadedAdapter(session, a, { dropout, seed: params.seed })
  return {
    r: a.settings.r,
    alpha: a.settings.alpha,
    dropout: params.loraDropout,
    targets: a.settings.targets,
    baseModel,
  }
}

/**
 * A resumed run's adapter: attachLora with the checkpoint's settings (the dropout from params, as attachAdapter uses
 * it), then its A and B, then the optimizer state, step counters and dropout generator (all checked by the engine).
 */
export function restoreCheckpoint(session: ModelSession, c: Checkpoint, params: TrainParams): AdapterSettings {
  const a = c.state.adapter
  try {
    session.native.attachLora({
      targets: a.targets,
      r: a.r,
      alpha: a.alpha,
      dropout: trainingLoraDropout(params),
      seed: params.seed,
    })
    session.native.setLoraTensors(c.lora)
    session.native.importTrainingState(c.training)
  } catch (e) {
    const err = fromEngineError(e)
    throw new StudioError(
      err.code === 'E_BAD_INPUT' ? 'E_RESUME_MISMATCH' : err.code,
      `the checkpoint does not fit the model in ${session.dir}: ${err.message}`,
      { cause: e },
    )
  }
  return { ...a, targets: [...a.targets] }
}

/**
 * Puts a loaded PEFT adapter on the model: attachLora with its r, alpha and targets, then its values. Used to
 * continue training and by generate/logps --adapter. The layer count is checked here; the engine checks shapes.
 */
export function attachLoadedAdapter(
  session: ModelSession,
  a: LoadedAdapter,
  lora: { dropout: number; seed: number } = { dropout: 0, seed: 0 },
): void {
  const layers = session.info.config.layers
  if (a.layers !== layers) {
    throw new StudioError(
      'E_BAD_INPUT',
      `adapter ${a.dir} covers ${a.layers} layers but the model in ${session.dir} has ${layers}`,
    )
  }
  try {
    session.native.attachLora({
      targets: a.settings.targets,
      r: a.settings.r,
      alpha: a.settings.alpha,
      dropout: lora.dropout,
      seed: lora.seed,
    })
    session.native.setLoraTensors(a.tensors)
  } catch (e) {
    const err = fromEngineError(e)
    throw new StudioError(err.code, `adapter ${a.dir} does not fit the model in ${session.dir}: ${err.message}`, {
      cause: e,
    })
  }
}
