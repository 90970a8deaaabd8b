// The DPO training loop (docs/reference/hw6-run.md#the-run-in-order): tokenize pairs, reference log-probs once
// (cached), LoRA attach, then HF Trainer's steps (docs/reference/trainer.md) over the engine's step-sized calls,
// logging TRL's metrics (docs/reference/dpo-loss.md#metrics) into the run directory.
import { rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
// The addon loader is loadAddon (src-main/addon); renamed at the call sites once this file's refactor has landed.
import { loadAddon as loadNative } from '../../addon/loadAddon'
import type { DpoPairInput, DpoPairMetrics, NativeCancelToken, ScoredSequence } from '../../addon/addonTypes'
import type { PreferencePair } from '../data/preferenceFile'
import { StudioError, errorMessage } from '../errors'
import { appendFileChecked, writeFileAtomic, writeJsonAtomic } from '../fsAtomic'
import type { ModelSession } from '../session/modelSession'
import { fromEngineError } from '../session/modelSession'
import type { TrainParams } from '../../../src-shared/params/trainParams'
import { baseModelName, loadAdapter, saveAdapter, type AdapterSettings, type LoadedAdapter } from './adapterFiles'
import { CHECKPOINT_FILE, optimizerSummary, removeCheckpoint, writeCheckpoint, type Checkpoint } from './checkpoint'
import { PAIRS_FILE, PAIRS_TOKENS_FILE } from '../../../src-shared/insights/insightTypes'
import { writePairInsights } from '../insights/pairInsights'
import { RefLogpsCache, dataFingerprint as fingerprintOfPairs, pairKey, refCacheDir, swappedPairKey, type RefLogps } from './refCache'
import { modelContext, trainingLengths } from '../session/contextLimits'
import { referenceBatches } from './referenceBatches'
import { checkCheckpointFits } from './resumeChecks'
import { ensureRunDir } from './runDir'
import { scheduleSteps, scheduleTotals, type PlannedStep, type ScheduleInput } from './schedule'
import { truncateStepLog } from './stepLog'
import { stallForTest } from './testStall'
import { tokenizeTrainingPair } from './tokenizePair'
import type { MetricsRow, RunEvents, RunSummary, TrainProgress } from '../../../src-shared/run/runTypes'

export const METRICS_FILE = 'metrics.jsonl'
export const STEPS_FILE = 'steps.jsonl'
export const SUMMARY_FILE = 'train_summary.json'
export const ADAPTER_DIR = 'adapter'
/** Beside the PEFT files in adapter/: how far training got (PEFT ignores unknown files, not unknown config keys). */
export const TRAINING_STATE_FILE = 'training_state.json'

/**
 * AdamW constants the notebook leaves at TrainingArguments' defaults (docs/reference/trainer.md#defaults-that-matter).
 */
const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8 } as const

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

export interface TrainResult extends RunSummary {
  maxSteps: number
  adapterDir: string | null
  /** Set when cancelled: the steps that finished (the adapter is as of this step). */
  cancelledAtStep?: number
  refCached: number
  refComputed: number
}

interface TokenizedPair {
  chosen: ScoredSequence
  rejected: ScoredSequence
  key: string
  /** The key with chosen and rejected exchanged: a run at another support_ratio may have cached the pair that way. */
  swappedKey: string
}

/** Step-level means of TRL's per-micro-batch metrics (DPOTrainer.log averages the stored micro-batch values). */
interface MicroMetrics {
  rewardsChosen: number
  rewardsRejected: number
  accuracies: number
  margins: number
  logpsChosen: number
  logpsRejected: number
  logitsChosen: number
  logitsRejected: number
}

class Cancelled extends Error {}

export async function trainDpo(session: ModelSession, pairs: readonly PreferencePair[], params: TrainParams, opts: TrainOptions): Promise<TrainResult> {
  const t0 = performance.now()
  const ev = opts.events ?? {}
  const outDir = resolve(opts.outDir)
  const signal = opts.signal
  const native = session.native
  const tok = session.tokenizer
  if (pairs.length === 0) throw new StudioError('E_BAD_INPUT', 'there are no training pairs')
  const padId = tok.padId ?? tok.eosId
  if (padId === null) throw new StudioError('E_BAD_MODEL', `the tokenizer in ${session.dir} defines neither a pad nor an EOS token`)
  const engineVersion = opts.engineVersion ?? addonVersion()

  // ---- tokenization (docs/reference/dpo-data.md#truncation): the chat-templated prompt with the run's system message;
  // TRL's truncation, with max_length never past the model's context (contextLimits.ts), and the log says what was cut.
  const lengths = trainingLengths(params, modelContext(session.info.config.context))
  if (lengths.note) ev.log?.(lengths.note)
  let truncatedPairs = 0
  const tokenized: TokenizedPair[] = pairs.map((p, i) => {
    try {
      const t = tokenizeTrainingPair(tok, p, { ...params, ...lengths })
      if (t.truncated) truncatedPairs++
      const chosen = { ids: Int32Array.from(t.chosen.ids), labels: Int32Array.from(t.chosen.labels) }
      const rejected = { ids: Int32Array.from(t.rejected.ids), labels: Int32Array.from(t.rejected.labels) }
      return { chosen, rejected, key: pairKey({ chosen, rejected }), swappedKey: swappedPairKey({ chosen, rejected }) }
    } catch (e) {
      throw new StudioError('E_BAD_INPUT', `pair ${i + 1} (id ${JSON.stringify(p.id)}): ${errorMessage(e)}`, { cause: e })
    }
  })

  if (truncatedPairs > 0)
    ev.log?.(`${truncatedPairs} of ${pairs.length} pairs are longer than max_length ${lengths.maxLength}: truncated as TRL does (the prompt keeps its last ${lengths.maxPromptLength} tokens, answers are cut to fit)`)

  const schedule: ScheduleInput = {
    numPairs: pairs.length,
    batchSize: params.batchSize,
    gradAccum: params.gradAccum,
    epochs: params.epochs,
    warmupRatio: params.warmupRatio,
    learningRate: params.learningRate,
    seed: params.seed,
  }
  const totals = scheduleTotals(schedule)
  const used = new Set<number>()
  for (const s of scheduleSteps(schedule)) for (const mb of s.microBatches) for (const i of mb.pairs) used.add(i)

  const dataFingerprint = fingerprintOfPairs(tokenized.map((t) => t.key))
  const resumeFrom = opts.resume?.checkpoint ?? null
  if (resumeFrom) {
    checkCheckpointFits(resumeFrom.state, { params, dataFingerprint, maxSteps: totals.maxSteps }, join(outDir, CHECKPOINT_FILE))
  }
  ensureRunDir(outDir, { modelDir: session.dir })
  if (opts.resume) {
    // The steps after the checkpoint are redone and logged again; the outputs of the stopped attempt go.
    for (const f of [METRICS_FILE, STEPS_FILE]) truncateStepLog(join(outDir, f), resumeFrom?.state.global_step ?? 0)
    for (const f of [SUMMARY_FILE, ADAPTER_DIR, PAIRS_FILE, PAIRS_TOKENS_FILE]) rmSync(join(outDir, f), { recursive: true, force: true })
  } else {
    // A fresh run directory for this training: the previous run's training outputs go first, so nothing in the
    // folder can be mistaken for this run's (an older adapter next to new metrics, say).
    for (const f of [METRICS_FILE, STEPS_FILE, SUMMARY_FILE, ADAPTER_DIR, PAIRS_FILE, PAIRS_TOKENS_FILE]) rmSync(join(outDir, f), { recursive: true, force: true })
    removeCheckpoint(outDir)
    writeFileAtomic(join(outDir, METRICS_FILE), '')
    writeFileAtomic(join(outDir, STEPS_FILE), '')
  }

  // ---- cancellation: an abort stops the loop at the next micro-batch boundary and, where the addon offers
  // tokens, also interrupts the engine call in flight (its partial work is discarded either way).
  const makeToken = opts.cancelTokenFactory === undefined ? addonCancelTokenFactory() : opts.cancelTokenFactory
  const token = makeToken ? makeToken() : undefined
  const onAbort = () => token?.cancel()
  signal?.addEventListener('abort', onAbort)
  if (signal?.aborted) onAbort()
  const checkAbort = () => {
    if (signal?.aborted) throw new Cancelled()
  }
  const engineCall = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call()
    } catch (e) {
      if (signal?.aborted || (e as { code?: unknown })?.code === 'E_CANCELLED') throw new Cancelled()
      throw fromEngineError(e)
    }
  }

  const summaryBase = {
    max_steps: totals.maxSteps,
    pairs: pairs.length,
    data_fingerprint: dataFingerprint,
    engine_version: engineVersion,
    max_length: lengths.maxLength,
    max_prompt_length: lengths.maxPromptLength,
    truncated_pairs: truncatedPairs,
  }
  let refCached = 0
  let refComputed = 0
  let refSeconds = 0
  let completedSteps = 0
  let lastEpoch = 0
  const stepLosses: number[] = []
  let trainStart = performance.now()
  let pairsDone = 0
  // Before a resume: training seconds and pairs of the steps already done (elapsed_s continues from them).
  let trainSecondsBefore = 0
  let pairsBefore = 0
  let lastPlanned: PlannedStep | null = null
  // As of the last finished step (a cancel mid-step checkpoints that step, not the micro-batches after it).
  let pairsAtStep = 0
  let secondsAtStep = 0
  let checkpointStep = 0
  let stage: 'reference' | 'train' = 'reference'

  // ---- checkpoints (docs/resume.md): the state after step completedSteps, written whole or not at all.
  const saveCheckpoint = (settings: AdapterSettings): void => {
    if (!lastPlanned || completedSteps === checkpointStep) return
    let lora, training
    try {
      lora = native.loraTensors()
      training = native.exportTrainingState()
    } catch (e) {
      throw fromEngineError(e)
    }
    const mb = lastPlanned.microBatches[lastPlanned.microBatches.length - 1]!
    writeCheckpoint(outDir, {
      lora,
      training,
      state: {
        global_step: completedSteps,
        max_steps: totals.maxSteps,
        epoch: lastEpoch,
        data_position: { epoch: mb.epoch, micro_batch: mb.index, micro_batches_per_epoch: totals.microBatchesPerEpoch },
        // The next step's learning rate is the one logged after this step (peak * λ(global_step)).
        scheduler: { step: completedSteps, next_lr: completedSteps < totals.maxSteps ? lastPlanned.loggedLr : null },
        optimizer: optimizerSummary(training),
        dropout_rng: training.dropoutRng,
        adapter: settings,
        accumulators: { step_losses: [...stepLosses], pairs_done: pairsAtStep, train_seconds: secondsAtStep },
        data_fingerprint: dataFingerprint,
        params,
        engine_version: engineVersion,
        backend: session.info.backend,
        saved: new Date().toISOString(),
      },
    })
    checkpointStep = completedSteps
  }

  const finish = (status: 'completed' | 'cancelled', settings: AdapterSettings | null): TrainResult => {
    // A cancelled run keeps what it needs to continue; a completed one has its adapter as the final state.
    if (status === 'cancelled' && settings) saveCheckpoint(settings)
    let adapterDir: string | null = null
    if (settings && completedSteps > 0) {
      ev.phase?.('save', join(outDir, ADAPTER_DIR))
      adapterDir = join(outDir, ADAPTER_DIR)
      const state = {
        status,
        global_step: completedSteps,
        max_steps: totals.maxSteps,
        epoch: lastEpoch,
        ...(status === 'cancelled' ? { cancelled_at_step: completedSteps } : {}),
        init_adapter: initAdapterDir(opts.initAdapter),
        saved: new Date().toISOString(),
      }
      let tensors
      try {
        tensors = native.loraTensors()
      } catch (e) {
        throw fromEngineError(e)
      }
      saveAdapter(adapterDir, tensors, settings, { extraJson: { [TRAINING_STATE_FILE]: state } })
    }
    const runtimeS = (performance.now() - t0) / 1000
    const loopS = (performance.now() - trainStart) / 1000
    const trainLoss = stepLosses.length > 0 ? stepLosses.reduce((a, b) => a + b, 0) / stepLosses.length : NaN
    const pairsPerS = loopS > 0 ? (pairsDone - pairsBefore) / loopS : 0
    // HF's train() metrics (docs/reference/trainer.md#end-of-training), plus ours.
    writeJsonAtomic(join(outDir, SUMMARY_FILE), {
      status,
      global_step: completedSteps,
      ...summaryBase,
      epoch: lastEpoch,
      train_loss: trainLoss,
      train_runtime: runtimeS,
      train_samples_per_second: (pairs.length * params.epochs) / runtimeS,
      train_steps_per_second: totals.maxSteps / runtimeS,
      pairs_trained: pairsDone,
      pairs_per_s: pairsPerS,
      // Backend memory at its highest since the model was loaded (GPU memory on CUDA): what a user sizes a run by.
      peak_memory_bytes: native.memoryStats().peakBytes,
      reference: { pairs: used.size, cached: refCached, computed: refComputed, seconds: refSeconds },
      adapter: adapterDir === null ? null : ADAPTER_DIR,
      ...(status === 'cancelled' ? { cancelled_at_step: completedSteps } : {}),
    })
    if (status === 'completed') removeCheckpoint(outDir)
    if (status === 'cancelled') ev.log?.(`cancelled after ${completedSteps} of ${totals.maxSteps} steps`)
    return {
      outDir,
      steps: completedSteps,
      maxSteps: totals.maxSteps,
      trainLoss,
      runtimeS,
      pairsPerS,
      status,
      adapterDir,
      ...(status === 'cancelled' ? { cancelledAtStep: completedSteps, cancelledIn: stage } : {}),
      refCached,
      refComputed,
    }
  }

  let settings: AdapterSettings | null = null
  try {
    // ---- reference log-probs (docs/reference/dpo-loss.md#reference-log-probs: the adapter-disabled model on the same
    // inputs), once per pair.
    const refStart = performance.now()
    const refs = new Map<number, RefLogps>()
    const cache = RefLogpsCache.open(opts.refCacheDir === undefined ? refCacheDir() : opts.refCacheDir, {
      modelDir: session.dir,
      quant: session.info.quant,
      backend: session.info.backend,
      engineVersion,
    })
    if (cache.ignoredReason) ev.log?.(cache.ignoredReason)
    const missing: number[] = []
    for (const i of [...used].sort((a, b) => a - b)) {
      const hit = cache.lookup(tokenized[i]!.key, tokenized[i]!.swappedKey)
      if (hit) refs.set(i, hit)
      else missing.push(i)
    }
    refCached = refs.size
    ev.phase?.('reference', `${used.size} pairs, ${refCached} from the cache`)
    try {
      const longest = (i: number) => Math.max(tokenized[i]!.chosen.ids.length, tokenized[i]!.rejected.ids.length)
      for (const chunk of referenceBatches(missing, longest)) {
        checkAbort()
        const seqs = chunk.flatMap((i) => [tokenized[i]!.chosen, tokenized[i]!.rejected])
        const out = await engineCall(() => native.logps(seqs, padId, token, false))
        chunk.forEach((i, k) => {
          const c = out[2 * k]!, rj = out[2 * k + 1]!
          const r = { chosen: c.logp, rejected: rj.logp, chosenTokens: c.tokenLogps, rejectedTokens: rj.tokenLogps }
          refs.set(i, r)
          cache.set(tokenized[i]!.key, r)
        })
        refComputed += chunk.length
        const el = (performance.now() - refStart) / 1000
        const rate = refComputed / Math.max(el, 1e-9)
        ev.progress?.({
          stage: 'reference',
          step: 0,
          totalSteps: totals.maxSteps,
          pairsDone: refComputed,
          pairsTotal: missing.length,
          elapsedS: el,
          etaS: (missing.length - refComputed) / rate,
          pairsPerS: rate,
        })
      }
    } finally {
      // What was computed stays useful even when the pass is cancelled.
      const err = cache.save()
      if (err) ev.log?.(err)
      refSeconds = (performance.now() - refStart) / 1000
    }

    // ---- LoRA (docs/reference/lora.md#initialisation-and-its-random-numbers): fresh (A kaiming-uniform from the seed,
    // B = 0) or continued from an adapter.
    checkAbort()
    if (resumeFrom) {
      settings = restoreCheckpoint(session, resumeFrom, params)
      const st = resumeFrom.state
      completedSteps = st.global_step
      checkpointStep = st.global_step
      lastEpoch = st.epoch
      stepLosses.push(...st.accumulators.step_losses)
      pairsDone = pairsBefore = pairsAtStep = st.accumulators.pairs_done
      trainSecondsBefore = secondsAtStep = st.accumulators.train_seconds
      ev.log?.(`resuming from the checkpoint at step ${st.global_step} of ${totals.maxSteps}`)
    } else {
      settings = attachAdapter(session, params, opts, ev)
    }

    // ---- the loop (docs/reference/trainer.md, docs/reference/hw6-run.md#the-run-in-order)
    stage = 'train'
    ev.phase?.('train', `${totals.maxSteps} steps, ${totals.pairs} pairs`)
    trainStart = performance.now()
    const dpo = { beta: params.beta, lossType: params.lossType, labelSmoothing: params.labelSmoothing, gradScale: 1 / params.gradAccum }
    let trLoss = 0
    for (const planned of scheduleSteps(schedule)) {
      if (planned.step <= completedSteps) {
        if (planned.step === completedSteps && resumeFrom) checkDataPosition(planned, resumeFrom)
        lastPlanned = planned
        continue
      }
      const stepStart = performance.now()
      const micro: MicroMetrics[] = []
      let stepPairs = 0
      for (const mb of planned.microBatches) {
        checkAbort()
        const inputs: DpoPairInput[] = mb.pairs.map((i) => {
          const t = tokenized[i]!
          const ref = refs.get(i)!
          return { chosen: t.chosen, rejected: t.rejected, refChosen: ref.chosen, refRejected: ref.rejected }
        })
        const m = await engineCall(() => native.dpoAccumulate(inputs, padId, dpo, token))
        if (m.length !== inputs.length) throw new StudioError('E_INTERNAL', `dpoAccumulate returned ${m.length} results for ${inputs.length} pairs`)
        // HF training_step returns L_j / GA and tr_loss sums them. A NaN/inf micro-loss adds
        // tr_loss / (1 + global_step - last_logged) instead (logging_nan_inf_filter); every step is logged, so
        // that divisor is 1.
        const microLoss = mean(m.map((x) => x.loss)) / params.gradAccum
        trLoss += Number.isFinite(microLoss) ? microLoss : trLoss
        micro.push(microMetrics(m))
        stepPairs += inputs.length
        pairsDone += inputs.length
        ev.progress?.({ ...progress(completedSteps, totals.maxSteps, pairsDone, totals.pairs, trainStart, pairsBefore), peakMemoryBytes: native.memoryStats().peakBytes })
      }
      const { gradNorm } = await engineCall(() =>
        native.optimizerStep({ kind: params.optim, lr: planned.lr, ...ADAM, weightDecay: params.weightDecay, maxGradNorm: params.maxGradNorm }),
      )
      completedSteps = planned.step
      lastEpoch = planned.epoch
      lastPlanned = planned
      pairsAtStep = pairsDone
      secondsAtStep = trainSecondsBefore + (performance.now() - trainStart) / 1000
      // HF logs round(tr_loss / steps since the last log, 4): the mean of the step's micro-batch losses when the
      // step has gradAccum of them (docs/reference/trainer.md#loss-scaling-and-the-logged-loss); train_loss averages
      // the unrounded values.
      const stepLoss = trLoss
      trLoss = 0
      stepLosses.push(stepLoss)
      const now = performance.now()
      const row: MetricsRow = {
        step: planned.step,
        epoch: planned.epoch,
        loss: round4(stepLoss),
        grad_norm: gradNorm,
        learning_rate: planned.loggedLr,
        'rewards/chosen': mean(micro.map((x) => x.rewardsChosen)),
        'rewards/rejected': mean(micro.map((x) => x.rewardsRejected)),
        'rewards/accuracies': mean(micro.map((x) => x.accuracies)),
        'rewards/margins': mean(micro.map((x) => x.margins)),
        'logps/chosen': mean(micro.map((x) => x.logpsChosen)),
        'logps/rejected': mean(micro.map((x) => x.logpsRejected)),
        'logits/chosen': mean(micro.map((x) => x.logitsChosen)),
        'logits/rejected': mean(micro.map((x) => x.logitsRejected)),
        elapsed_s: trainSecondsBefore + (now - trainStart) / 1000,
        pairs_per_s: stepPairs / Math.max((now - stepStart) / 1000, 1e-9),
      }
      appendLine(join(outDir, METRICS_FILE), row)
      appendLine(join(outDir, STEPS_FILE), {
        step: planned.step,
        epoch: planned.epoch,
        lr: planned.lr,
        pair_ids: planned.microBatches.flatMap((mb) => mb.pairs.map((i) => pairs[i]!.id)),
        micro_batches: planned.microBatches.map((mb) => ({ epoch: mb.epoch, index: mb.index, rows: mb.pairs })),
      })
      if (params.checkpointEvery > 0 && planned.step % params.checkpointEvery === 0 && planned.step < totals.maxSteps) saveCheckpoint(settings)
      ev.metrics?.(row)
      ev.progress?.({ ...progress(completedSteps, totals.maxSteps, pairsDone, totals.pairs, trainStart, pairsBefore), peakMemoryBytes: native.memoryStats().peakBytes })
      await stallForTest(planned.step, ev)
    }
    // ---- the pair inspector's data (docs/insights.md): one pass with the trained adapter over every pair.
    ev.log?.(`scoring ${pairs.length} pairs with the trained adapter for the pair inspector`)
    await writePairInsights(session, { outDir, pairs, sequences: tokenized, refs, params, schedule, padId, cancel: token, call: engineCall })
    return finish('completed', settings)
  } catch (e) {
    if (e instanceof Cancelled) return finish('cancelled', settings)
    try {
      writeJsonAtomic(join(outDir, SUMMARY_FILE), { status: 'failed', error: errorMessage(e), global_step: completedSteps, ...summaryBase, epoch: lastEpoch })
    } catch {
      // A full disk may refuse the summary too; the run's own error says more (run_status.json records it in place).
    }
    throw e
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}

/**
 * A resumed run's adapter: attachLora with the checkpoint's settings (the dropout from params, as attachAdapter uses
 * it), then its A and B, then the optimizer state, step counters and dropout generator (all checked by the engine).
 */
function restoreCheckpoint(session: ModelSession, c: Checkpoint, params: TrainParams): AdapterSettings {
  const a = c.state.adapter
  try {
    session.native.attachLora({ targets: a.targets, r: a.r, alpha: a.alpha, dropout: params.disableDropout ? 0 : params.loraDropout, seed: params.seed })
    session.native.setLoraTensors(c.lora)
    session.native.importTrainingState(c.training)
  } catch (e) {
    const err = fromEngineError(e)
    throw new StudioError(err.code === 'E_BAD_INPUT' ? 'E_RESUME_MISMATCH' : err.code, `the checkpoint does not fit the model in ${session.dir}: ${err.message}`, { cause: e })
  }
  return { ...a, targets: [...a.targets] }
}

/** The schedule replayed to the checkpoint's step ends where the checkpoint says the data order stood. */
function checkDataPosition(planned: PlannedStep, c: Checkpoint): void {
  const mb = planned.microBatches[planned.microBatches.length - 1]!
  const at = c.state.data_position
  if (mb.epoch !== at.epoch || mb.index !== at.micro_batch) {
    throw new StudioError(
      'E_RESUME_MISMATCH',
      `the checkpoint's step ${planned.step} ended at epoch ${at.epoch}, micro-batch ${at.micro_batch}, but this run's plan ends it at epoch ${mb.epoch}, micro-batch ${mb.index}`,
    )
  }
}

/** Attaches the LoRA the run trains and returns what adapter_config.json will record. */
function attachAdapter(session: ModelSession, params: TrainParams, opts: TrainOptions, ev: RunEvents): AdapterSettings {
  const native = session.native
  // TRL's disable_dropout sets every nn.Dropout.p = 0, LoRA's included (docs/reference/lora.md#dropout).
  const dropout = params.disableDropout ? 0 : params.loraDropout
  const baseModel = baseModelName(session.dir)
  if (!opts.initAdapter) {
    const settings: AdapterSettings = { r: params.loraR, alpha: params.loraAlpha, dropout: params.loraDropout, targets: [...params.targets], baseModel }
    try {
      native.attachLora({ targets: settings.targets, r: settings.r, alpha: settings.alpha, dropout, seed: params.seed })
    } catch (e) {
      throw fromEngineError(e)
    }
    return settings
  }
  const a = typeof opts.initAdapter === 'string' ? loadAdapter(opts.initAdapter) : opts.initAdapter
  const differs = a.settings.r !== params.loraR || a.settings.alpha !== params.loraAlpha || a.settings.targets.join() !== params.targets.join()
  if (differs) {
    ev.log?.(
      `continuing from ${a.dir}: using its r=${a.settings.r}, alpha=${a.settings.alpha}, targets=${a.settings.targets.join(',')} ` +
        `(the run's LoRA shape parameters do not apply)`,
    )
  }
  attachLoadedAdapter(session, a, { dropout, seed: params.seed })
  return { r: a.settings.r, alpha: a.settings.alpha, dropout: params.loraDropout, targets: a.settings.targets, baseModel }
}

/**
 * Puts a loaded PEFT adapter on the model: attachLora with its r, alpha and targets, then its values. Used to
 * continue training and by generate/logps --adapter. The layer count is checked here; the engine checks shapes.
 */
export function attachLoadedAdapter(session: ModelSession, a: LoadedAdapter, lora: { dropout: number; seed: number } = { dropout: 0, seed: 0 }): void {
  const layers = session.info.config.layers
  if (a.layers !== layers) {
    throw new StudioError('E_BAD_INPUT', `adapter ${a.dir} covers ${a.layers} layers but the model in ${session.dir} has ${layers}`)
  }
  try {
    session.native.attachLora({ targets: a.settings.targets, r: a.settings.r, alpha: a.settings.alpha, dropout: lora.dropout, seed: lora.seed })
    session.native.setLoraTensors(a.tensors)
  } catch (e) {
    const err = fromEngineError(e)
    throw new StudioError(err.code, `adapter ${a.dir} does not fit the model in ${session.dir}: ${err.message}`, { cause: e })
  }
}

/** TRL get_batch_loss_metrics for one micro-batch (docs/reference/dpo-loss.md#metrics): means over its pairs. */
function microMetrics(m: readonly DpoPairMetrics[]): MicroMetrics {
  return {
    rewardsChosen: mean(m.map((x) => x.chosenReward)),
    rewardsRejected: mean(m.map((x) => x.rejectedReward)),
    // (chosen_rewards > rejected_rewards).float(): strictly greater, so 0 when equal (steps 1-2 of HW6).
    accuracies: mean(m.map((x) => (x.chosenReward > x.rejectedReward ? 1 : 0))),
    margins: mean(m.map((x) => x.chosenReward - x.rejectedReward)),
    logpsChosen: mean(m.map((x) => x.chosenLogp)),
    logpsRejected: mean(m.map((x) => x.rejectedLogp)),
    logitsChosen: mean(m.map((x) => x.chosenLogitsMean)),
    logitsRejected: mean(m.map((x) => x.rejectedLogitsMean)),
  }
}

/** Progress counts; the rate is over the pairs of this process (pairsBefore were done before a resume). */
function progress(step: number, totalSteps: number, pairsDone: number, pairsTotal: number, start: number, pairsBefore = 0): TrainProgress {
  const elapsedS = (performance.now() - start) / 1000
  const pairsPerS = elapsedS > 0 ? (pairsDone - pairsBefore) / elapsedS : 0
  const etaS = pairsPerS > 0 ? (pairsTotal - pairsDone) / pairsPerS : 0
  return { stage: 'train', step, totalSteps, pairsDone, pairsTotal, elapsedS, etaS, pairsPerS }
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length
}

/**
 * Python's round(x, 4). toFixed rounds the exact binary value, and a double is never exactly halfway between two
 * 4-decimal numbers, so this is the correctly rounded decimal, parsed back to the nearest double as Python returns.
 */
export function round4(x: number): number {
  return Number.isFinite(x) ? Number(x.toFixed(4)) : x
}

/** One complete JSON line per write, checked and flushed to disk: a crash or a full disk leaves whole lines only. */
function appendLine(file: string, value: unknown): void {
  appendFileChecked(file, JSON.stringify(value) + '\n')
}

function initAdapterDir(a: string | LoadedAdapter | undefined): string | null {
  return a === undefined ? null : typeof a === 'string' ? resolve(a) : a.dir
}

/** The loaded addon's version(), or 'unknown' where no addon loads (tests with a fake engine). */
export function addonVersion(): string {
  try {
    return loadNative().version()
  } catch {
    return 'unknown'
  }
}

/** new CancelToken() of the loaded addon, or null where no addon loads. */
export function addonCancelTokenFactory(): (() => NativeCancelToken) | null {
  try {
    const engine = loadNative()
    return () => new engine.CancelToken()
  } catch {
    return null
  }
}
