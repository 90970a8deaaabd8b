// One DPO training as the stages see it (docs/reference/hw6-run.md#the-run-in-order): what is fixed for the run
// (TrainRun) and how far it has got (TrainState), which the stages advance and a checkpoint or the summary records.
// Cancellation lives here too: an abort stops the loop at the next micro-batch boundary and, where the addon offers
// tokens, also interrupts the engine call in flight (its partial work is discarded either way).
import type { NativeCancelToken, ScoredSequence } from '../../../addon/addonTypes'
import type { PreferencePair } from '../../data/preferenceFile'
import { fromEngineError, type ModelSession } from '../../session/modelSession'
import type { TrainParams } from '../../../../src-shared/params/trainParams'
import type { AdapterSettings, LoadedAdapter } from '../adapterFiles'
import type { RefLogps } from '../refCache'
import type { PlannedStep, ScheduleInput, ScheduleTotals } from '../schedule'
import type { RunEvents } from '../../../../src-shared/run/runTypes'

export interface TokenizedPair {
  chosen: ScoredSequence
  rejected: ScoredSequence
  key: string
  /** The key with chosen and rejected exchanged: a run at another support_ratio may have cached the pair that way. */
  swappedKey: string
}

/** Thrown by the stages when the run's signal aborted; the trainer turns it into a cancelled result. */
export class Cancelled extends Error {}

export interface TrainRun {
  session: ModelSession
  pairs: readonly PreferencePair[]
  params: TrainParams
  outDir: string
  ev: RunEvents
  /** Performance.now() when trainDpo started (train_runtime counts from here). */
  t0: number
  tokenized: TokenizedPair[]
  padId: number
  schedule: ScheduleInput
  totals: ScheduleTotals
  /** Indexes of the pairs the schedule trains on (the reference pass scores only these). */
  used: Set<number>
  dataFingerprint: string
  engineVersion: string
  initAdapter: string | LoadedAdapter | undefined
  /** What train_summary.json says whatever the outcome. */
  summaryBase: Record<string, unknown>
  token: NativeCancelToken | undefined
  /** Throws Cancelled once the signal aborted. */
  checkAbort(): void
  /** Runs an engine call: an abort or E_CANCELLED becomes Cancelled, other failures coded StudioErrors. */
  engineCall<T>(call: () => Promise<T>): Promise<T>
}

export interface TrainState {
  stage: 'reference' | 'train'
  /** The attached LoRA's settings, once attached. */
  settings: AdapterSettings | null
  refs: Map<number, RefLogps>
  refCached: number
  refComputed: number
  refSeconds: number
  completedSteps: number
  lastEpoch: number
  /** Unrounded loss of every finished step (train_loss averages them). */
  stepLosses: number[]
  /** The last step finished or replayed (a checkpoint records where its data order stood). */
  lastPlanned: PlannedStep | null
  trainStart: number
  pairsDone: number
  /** Before a resume: pairs and training seconds of the steps already done (elapsed_s continues from them). */
  pairsBefore: number
  trainSecondsBefore: number
  /** As of the last finished step (a cancel mid-step checkpoints that step, not the micro-batches after it). */
  pairsAtStep: number
  secondsAtStep: number
  checkpointStep: number
}

export function initialTrainState(): TrainState {
  return {
    stage: 'reference',
    settings: null,
    refs: new Map(),
    refCached: 0,
    refComputed: 0,
    refSeconds: 0,
    completedSteps: 0,
    lastEpoch: 0,
    stepLosses: [],
    lastPlanned: null,
    trainStart: performance.now(),
    pairsDone: 0,
    pairsBefore: 0,
    trainSecondsBefore: 0,
    pairsAtStep: 0,
    secondsAtStep: 0,
    checkpointStep: 0,
  }
}

export interface Cancellation extends Pick<TrainRun, 'token' | 'checkAbort' | 'engineCall'> {
  /** Stops listening to the signal (when the training returns). */
  release(): void
}

/** Wires `signal` to a native cancel token made by `makeToken` (none when null). */
export function cancellation(
  signal: AbortSignal | undefined,
  makeToken: (() => NativeCancelToken) | null,
): Cancellation {
  const token = makeToken ? makeToken() : undefined
  const onAbort = () => token?.cancel()
  signal?.addEventListener('abort', onAbort)
  if (signal?.aborted) onAbort()
  return {
    token,
    checkAbort: () => {
      if (signal?.aborted) throw new Cancelled()
    },
    engineCall: async <T>(call: () => Promise<T>): Promise<T> => {
      try {
        return await call()
      } catch (e) {
        if (signal?.aborted || (e as { code?: unknown })?.code === 'E_CANCELLED') throw new Cancelled()
        throw fromEngineError(e)
      }
    },
    release: () => signal?.removeEventListener('abort', onAbort),
  }
}
