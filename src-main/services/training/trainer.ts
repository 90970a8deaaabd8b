// The DPO training loop (docs/reference/hw6-run.md#the-run-in-order) as a short list of named stages (stages/):
// tokenize pairs, reference log-probs once (cached), LoRA attach, then HF Trainer's steps
// (docs/reference/trainer.md) over the engine's step-sized calls, each logging TRL's metrics
// (docs/reference/dpo-loss.md#metrics) into the run directory, then the pair inspector's pass and the summary.
import { join, resolve } from 'node:path'
import type { NativeCancelToken } from '../../addon/addonTypes'
import type { PreferencePair } from '../data/preferenceFile'
import { StudioError } from '../errors'
import type { ModelSession } from '../session/modelSession'
import type { TrainParams } from '../../../src-shared/params/trainParams'
import { writePairInsights } from '../insights/pairInsights'
import type { LoadedAdapter } from './adapterFiles'
import { addonCancelTokenFactory, addonVersion } from './addonDefaults'
import { CHECKPOINT_FILE, type Checkpoint } from './checkpoint'
import { dataFingerprint as fingerprintOfPairs } from './refCache'
import { checkCheckpointFits, checkDataPosition } from './resumeChecks'
import { ensureRunDir } from './runDir'
import { clearTrainingOutputs } from './runFiles'
import { scheduleSteps, scheduleTotals, type ScheduleInput } from './schedule'
import { referencePass } from './stages/referencePass'
import { checkpointDue, saveCheckpoint } from './stages/saveCheckpoint'
import { startLora } from './stages/startLora'
import { tokenizePairs } from './stages/tokenizePairs'
import { cancellation, Cancelled, initialTrainState, type TrainRun, type TrainState } from './stages/trainRun'
import { logStep, progressNow, trainStep } from './stages/trainStep'
import { finishTraining, recordTrainingFailure, type TrainResult } from './stages/trainSummary'
import { stallForTest } from './testStall'
import type { RunEvents } from '../../../src-shared/run/runTypes'

export type { TrainResult } from './stages/trainSummary'

export interface TrainOptions {
  /** The run directory: metrics.jsonl, steps.jsonl, adapter/, train_summary.json go here. */
  outDir: string
  events?: RunEvents
  /** Abort = stop cleanly between micro-batches; finished steps, their metrics and the adapter are kept. */
  signal?: AbortSignal
  /** A PEFT adapter (folder, or already loaded) to continue from instead of a fresh LoRA (its r, alpha and targets win over params). */
  initAdapter?: string | LoadedAdapter
  /** Folder of the reference log-probs cache; null = no cache. Default refCacheDir(). */
  refCacheDir?: string | null
  /** Recorded in the summary and the cache fingerprint. Default: the loaded addon's version(). */
  engineVersion?: string
  /** Makes native cancel tokens so an abort also interrupts a running engine call. Default: the addon's; null = none. */
  cancelTokenFactory?: (() => NativeCancelToken) | null
  /**
   * Continue the run in outDir (docs/resume.md): from its checkpoint, or from step 1 when it has none. Its logs are
   * cut back to the checkpoint's step; everything else is recomputed exactly as the run would have.
   */
  resume?: { checkpoint: Checkpoint | null }
}

export async function trainDpo(
  session: ModelSession,
  pairs: readonly PreferencePair[],
  params: TrainParams,
  opts: TrainOptions,
): Promise<TrainResult> {
  const t0 = performance.now()
  const ev = opts.events ?? {}
  const outDir = resolve(opts.outDir)
  if (pairs.length === 0) throw new StudioError('E_BAD_INPUT', 'there are no training pairs')
  const padId = session.tokenizer.padId ?? session.tokenizer.eosId
  if (padId === null)
    throw new StudioError('E_BAD_MODEL', `the tokenizer in ${session.dir} defines neither a pad nor an EOS token`)
  const engineVersion = opts.engineVersion ?? addonVersion()

  const { tokenized, lengths, truncatedPairs } = tokenizePairs(session, pairs, params, ev)
  const schedule = scheduleOf(pairs.length, params)
  const totals = scheduleTotals(schedule)
  const used = new Set<number>()
  for (const s of scheduleSteps(schedule)) for (const mb of s.microBatches) for (const i of mb.pairs) used.add(i)
  const dataFingerprint = fingerprintOfPairs(tokenized.map((t) => t.key))
  const resumeFrom = opts.resume?.checkpoint ?? null
  if (resumeFrom)
    checkCheckpointFits(
      resumeFrom.state,
      { params, dataFingerprint, maxSteps: totals.maxSteps },
      join(outDir, CHECKPOINT_FILE),
    )
  ensureRunDir(outDir, { modelDir: session.dir })
  clearTrainingOutputs(outDir, opts.resume ? (resumeFrom?.state.global_step ?? 0) : null)

  const cancel = cancellation(
    opts.signal,
    opts.cancelTokenFactory === undefined ? addonCancelTokenFactory() : opts.cancelTokenFactory,
  )
  const run: TrainRun = {
    session,
    pairs,
    params,
    outDir,
    ev,
    t0,
    tokenized,
    padId,
    schedule,
    totals,
    used,
    dataFingerprint,
    engineVersion,
    initAdapter: opts.initAdapter,
    summaryBase: {
      max_steps: totals.maxSteps,
      pairs: pairs.length,
      data_fingerprint: dataFingerprint,
      engine_version: engineVersion,
      max_length: lengths.maxLength,
      max_prompt_length: lengths.maxPromptLength,
      truncated_pairs: truncatedPairs,
    },
    token: cancel.token,
    checkAbort: cancel.checkAbort,
    engineCall: cancel.engineCall,
  }
  const state = initialTrainState()
  try {
    await referencePass(run, state, opts.refCacheDir)
    cancel.checkAbort()
    startLora(run, state, resumeFrom)
    await trainLoop(run, state, resumeFrom)
    // The pair inspector's data (docs/insights.md): one pass with the trained adapter over every pair.
    ev.log?.(`scoring ${pairs.length} pairs with the trained adapter for the pair inspector`)
    await writePairInsights(session, {
      outDir,
      pairs,
      sequences: tokenized,
      refs: state.refs,
      params,
      schedule,
      padId,
      cancel: cancel.token,
      call: cancel.engineCall,
    })
    return finishTraining(run, state, 'completed')
  } catch (e) {
    if (e instanceof Cancelled) return finishTraining(run, state, 'cancelled')
    recordTrainingFailure(run, state, e)
    throw e
  } finally {
    cancel.release()
  }
}

/**
 * HF Trainer's loop: each planned step trained, logged, checkpointed when due. On resume the steps up to the
 * checkpoint are replayed without training, so the data order continues where it stood.
 */
async function trainLoop(run: TrainRun, state: TrainState, resumeFrom: Checkpoint | null): Promise<void> {
  const { ev, totals } = run
  state.stage = 'train'
  ev.phase?.('train', `${totals.maxSteps} steps, ${totals.pairs} pairs`)
  state.trainStart = performance.now()
  for (const planned of scheduleSteps(run.schedule)) {
    if (planned.step <= state.completedSteps) {
      if (planned.step === state.completedSteps && resumeFrom) checkDataPosition(planned, resumeFrom)
      state.lastPlanned = planned
      continue
    }
    const row = await trainStep(run, state, planned)
    logStep(run, planned, row)
    if (checkpointDue(run, planned.step)) saveCheckpoint(run, state)
    ev.metrics?.(row)
    ev.progress?.(progressNow(run, state))
    await stallForTest(planned.step, ev)
  }
}

function scheduleOf(numPairs: number, params: TrainParams): ScheduleInput {
  return {
    numPairs,
    batchSize: params.batchSize,
    gradAccum: params.gradAccum,
    epochs: params.epochs,
    warmupRatio: params.warmupRatio,
    learningRate: params.learningRate,
    seed: params.seed,
  }
}
