// The options `dpo-studio train` and `run` share (docs/architecture.md#command-line), mapped onto trainParamsSchema so
// defaults, bounds and help text come from the one parameter schema; also the clean-stop path (Ctrl-C -> exit 130).
import type { Command } from 'commander'
import type { z } from 'zod'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { StudioError } from '../../services/errors'
import { DEFAULT_TRAIN_PARAMS, trainParamsSchema, type TrainParams } from '../../../src-shared/params/trainParams'
import { resumeNotebook, runNotebook } from '../../services/training/notebookRun'
import type { ResumeGiven } from '../../services/training/resume'
import { CHECKPOINT_FILE } from '../../services/training/checkpoint'
import type { NotebookRunRequest, RunEvents, RunPhase, RunSummary } from '../../../src-shared/run/runTypes'
import { ProgressBar, formatSeconds } from '../progressBar'

type ParamKey = keyof TrainParams

/** A flag, the schema field it sets, and how its text becomes a value. */
interface ParamFlag {
  flag: string
  key: ParamKey
  kind: 'number' | 'text' | 'list'
}

/**
 * The flags of docs/architecture.md#command-line, in its order, plus the chat-template ones of docs/model-families.md.
 */
export const TRAIN_PARAM_FLAGS: readonly ParamFlag[] = [
  { flag: '--support-ratio', key: 'supportRatio', kind: 'number' },
  { flag: '--data-size', key: 'dataSize', kind: 'number' },
  { flag: '--epochs', key: 'epochs', kind: 'number' },
  { flag: '--beta', key: 'beta', kind: 'number' },
  { flag: '--loss', key: 'lossType', kind: 'text' },
  { flag: '--label-smoothing', key: 'labelSmoothing', kind: 'number' },
  { flag: '--lr', key: 'learningRate', kind: 'number' },
  { flag: '--lora-r', key: 'loraR', kind: 'number' },
  { flag: '--lora-alpha', key: 'loraAlpha', kind: 'number' },
  { flag: '--lora-dropout', key: 'loraDropout', kind: 'number' },
  { flag: '--targets', key: 'targets', kind: 'list' },
  { flag: '--batch-size', key: 'batchSize', kind: 'number' },
  { flag: '--grad-accum', key: 'gradAccum', kind: 'number' },
  { flag: '--warmup-ratio', key: 'warmupRatio', kind: 'number' },
  { flag: '--max-grad-norm', key: 'maxGradNorm', kind: 'number' },
  { flag: '--optim', key: 'optim', kind: 'text' },
  { flag: '--seed', key: 'seed', kind: 'number' },
  { flag: '--checkpoint-every', key: 'checkpointEvery', kind: 'number' },
  { flag: '--system', key: 'systemMessage', kind: 'text' },
  { flag: '--enable-thinking', key: 'enableThinking', kind: 'text' },
  { flag: '--chat-date', key: 'chatDate', kind: 'text' },
  { flag: '--backend', key: 'backend', kind: 'text' },
  { flag: '--quant', key: 'quant', kind: 'text' },
]

/** `run` only: generation length for the test prompts. */
export const RUN_PARAM_FLAGS: readonly ParamFlag[] = [{ flag: '--max-new-tokens', key: 'maxNewTokens', kind: 'number' }]

/** commander's camelCase attribute for a flag (--lora-r -> loraR). */
const attr = (flag: string) => flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())

/** A clean, deliberate stop: main prints the message (no "error") and exits with the code. */
export class CliExit extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message)
    this.name = 'CliExit'
  }
}

export function addParamOptions(cmd: Command, flags: readonly ParamFlag[]): Command {
  const shape = trainParamsSchema.shape as Record<string, z.ZodType>
  for (const f of flags) {
    const field = shape[f.key]!
    const choices = enumValues(field)
    const def = DEFAULT_TRAIN_PARAMS[f.key]
    const shown = Array.isArray(def) ? def.join(',') : String(def)
    const help = `${field.description ?? ''}${choices ? ` One of: ${choices.join(', ')}.` : ''} (default: ${shown})`
    // No commander default: absent flags stay undefined so the schema fills them (one source of defaults).
    cmd.option(`${f.flag} <${f.kind === 'list' ? 'list' : 'value'}>`, help)
  }
  return cmd
}

/**
 * Flag values -> TrainParams through trainParamsSchema. Every failure is one line naming the flag:
 * "--beta must be > 0", "--lora-r must be an integer", "--loss must be one of sigmoid, ipo, hinge, robust".
 */
export function paramsFromFlags(opts: Record<string, unknown>, flags: readonly ParamFlag[]): TrainParams {
  const input: Record<string, unknown> = {}
  const raw = new Map<string, string>()
  for (const f of flags) {
    const v = opts[attr(f.flag)]
    if (v === undefined) continue
    const text = String(v)
    raw.set(f.key, text)
    if (f.kind === 'number') input[f.key] = text.trim() === '' ? NaN : Number(text)
    else if (f.kind === 'list')
      input[f.key] = text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
    else input[f.key] = text
  }
  const parsed = trainParamsSchema.safeParse(input)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]!
  const key = String(issue.path[0] ?? '')
  const flag = flags.find((f) => f.key === key)?.flag
  // For a list entry (path [key, i]) the offending value is that entry, not the whole flag text.
  const offending = issue.path.length > 1 ? (input[key] as unknown[] | undefined)?.[issue.path[1] as number] : undefined
  const shown = offending !== undefined ? String(offending) : raw.get(key)
  throw new StudioError('E_BAD_ARGS', flag ? `${flag} ${describeIssue(issue, shown)}` : issue.message, {
    details: { flag, field: key },
  })
}

function describeIssue(issue: z.core.$ZodIssue, raw: string | undefined): string {
  const got = raw === undefined ? '' : `, got '${raw}'`
  switch (issue.code) {
    case 'too_small':
      if (issue.origin === 'array') return `needs at least ${issue.minimum} entry`
      return `must be ${issue.inclusive ? '>=' : '>'} ${issue.minimum}${got}`
    case 'too_big':
      if (issue.origin === 'string') return `must be at most ${issue.maximum} characters`
      return `must be ${issue.inclusive ? '<=' : '<'} ${issue.maximum}${got}`
    case 'invalid_type':
      return issue.expected === 'int' ? `must be an integer${got}` : `must be a ${issue.expected}${got}`
    case 'invalid_value':
      return `${issue.path.length > 1 ? 'entries must each be' : 'must be'} one of ${issue.values.map(String).join(', ')}${got}`
    default:
      return `${issue.message}${got}`
  }
}

function enumValues(field: z.ZodType): string[] | null {
  // zod v4: enums carry .options; defaults/arrays wrap an inner type.
  let t: unknown = field
  for (let i = 0; i < 4 && t; i++) {
    const def = (
      t as { def?: { type?: string; innerType?: unknown; element?: unknown; entries?: Record<string, string> } }
    ).def
    if (!def) return null
    if (def.type === 'enum' && def.entries) return Object.values(def.entries)
    t = def.innerType ?? def.element
  }
  return null
}

export interface TrainCommandFlags {
  model?: string
  dataset?: string
  initAdapter?: string
  testPrompts?: string
  out?: string
  /** A run directory to continue (docs/resume.md) instead of starting a new run. */
  resume?: string
  [flag: string]: unknown
}

/** Only the parameters whose flags were given (a resume compares those with the run's own). */
export function givenParams(opts: Record<string, unknown>, flags: readonly ParamFlag[]): Partial<TrainParams> {
  const present = flags.filter((f) => opts[attr(f.flag)] !== undefined)
  const all = paramsFromFlags(opts, present)
  return Object.fromEntries(present.map((f) => [f.key, all[f.key]])) as Partial<TrainParams>
}

/** The request of a new run: --model, --dataset and --out are required when there is no --resume. */
function newRunRequest(flags: TrainCommandFlags, paramFlags: readonly ParamFlag[]): NotebookRunRequest {
  for (const [flag, value] of [
    ['--model <dir>', flags.model],
    ['--dataset <path>', flags.dataset],
    ['--out <dir>', flags.out],
  ] as const) {
    if (value === undefined)
      throw new StudioError(
        'E_BAD_ARGS',
        `required option '${flag}' not specified (or --resume RUN_DIR to continue a run)`,
      )
  }
  return {
    modelDir: flags.model!,
    datasetPath: flags.dataset!,
    params: paramsFromFlags(flags, paramFlags),
    outDir: flags.out!,
    ...(flags.testPrompts !== undefined ? { testPromptsPath: flags.testPrompts } : {}),
    ...(flags.initAdapter !== undefined ? { initAdapter: flags.initAdapter } : {}),
  }
}

/**
 * `train` (no test prompts) and `run` (with them): the notebook run with progress on stderr. The first Ctrl-C or
 * SIGTERM asks for a clean stop at the next micro-batch boundary (what finished is kept, exit 130 or 143); a second
 * one quits at once. With --resume the run in that directory continues instead (`train`: its training only).
 */
export async function runTrainCommand(
  flags: TrainCommandFlags,
  paramFlags: readonly ParamFlag[],
  mode: 'train' | 'run' = 'train',
): Promise<void> {
  const resume: ResumeGiven | null =
    flags.resume === undefined
      ? null
      : {
          ...(flags.model !== undefined ? { modelDir: flags.model } : {}),
          ...(flags.dataset !== undefined ? { datasetPath: flags.dataset } : {}),
          ...(flags.testPrompts !== undefined ? { testPromptsPath: flags.testPrompts } : {}),
          ...(flags.initAdapter !== undefined ? { initAdapter: flags.initAdapter } : {}),
          ...(flags.out !== undefined ? { outDir: flags.out } : {}),
          params: givenParams(flags, paramFlags),
          trainOnly: mode === 'train',
        }
  const request = resume ? null : newRunRequest(flags, paramFlags)
  const stop = stopOnSignals()
  const view = new CliRunView()
  try {
    const deps = { onLoadProgress: (f: number) => view.loadProgress(f) }
    const summary = resume
      ? await resumeNotebook(flags.resume!, resume, view.events, stop.signal, deps)
      : await runNotebook(request!, view.events, stop.signal, deps)
    view.close()
    if (summary.status === 'cancelled') throw new CliExit(stop.exitCode(), cancelMessage(summary))
    const loss = Number.isFinite(summary.trainLoss) ? summary.trainLoss.toFixed(4) : 'n/a'
    const lines = [
      `trained ${summary.steps} steps in ${formatSeconds(summary.runtimeS)} (train_loss ${loss}, ${summary.pairsPerS.toFixed(2)} pairs/s)`,
      `run directory: ${summary.outDir} (metrics.jsonl, adapter/${existsSync(join(summary.outDir, 'comparison.json')) ? ', comparison.json' : ''})`,
    ]
    process.stderr.write(lines.join('\n') + '\n')
  } finally {
    view.close()
    stop.dispose()
  }
}

/**
 * The first Ctrl-C or SIGTERM aborts `signal` (runs stop at the next micro-batch boundary, keeping what finished);
 * the same again quits at once. exitCode: 143 after SIGTERM, else 130.
 */
export function stopOnSignals(): { signal: AbortSignal; exitCode(): number; dispose(): void } {
  const controller = new AbortController()
  let stopSignal: NodeJS.Signals | null = null
  const onSignal = (sig: NodeJS.Signals) => {
    const code = sig === 'SIGTERM' ? 143 : 130
    if (stopSignal) {
      process.stderr.write(`\ndpo-studio: ${sig} again, quitting now (files already written stay valid)\n`)
      process.exit(code)
    }
    stopSignal = sig
    const again = sig === 'SIGINT' ? 'Ctrl-C' : sig
    process.stderr.write(
      `\ndpo-studio: ${sig}: stopping after the current micro-batch (${again} again to quit at once)\n`,
    )
    controller.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  return {
    signal: controller.signal,
    exitCode: () => (stopSignal === 'SIGTERM' ? 143 : 130),
    dispose: () => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    },
  }
}

function cancelMessage(s: RunSummary): string {
  const where: Partial<Record<RunPhase, string>> = {
    load: 'model loading',
    original: 'the original responses',
    reference: 'the reference log-probs',
    train: 'training',
    trained: 'the trained responses',
  }
  const kept = ['config.json', 'run_status.json']
  if (existsSync(join(s.outDir, 'responses_original.json'))) kept.push('responses_original.json')
  if (s.steps > 0) kept.push(`metrics.jsonl and steps.jsonl (${s.steps} steps)`)
  if (s.adapterDir) kept.push(`adapter/ (as of step ${s.steps}${s.maxSteps ? ` of ${s.maxSteps}` : ''})`)
  if (s.steps === 0) kept.push('no adapter (no training step finished)')
  // A run made with test prompts (`run`) continues with its answers; a `train` run with training only.
  let withPrompts = false
  try {
    withPrompts = Boolean(
      (JSON.parse(readFileSync(join(s.outDir, 'config.json'), 'utf8')) as { test_prompts?: unknown }).test_prompts,
    )
  } catch {
    // no readable config: suggest `train`
  }
  const resumable = s.steps === 0 || existsSync(join(s.outDir, CHECKPOINT_FILE)) || s.cancelledIn === 'trained'
  const how = resumable ? `; continue with: dpo-studio ${withPrompts ? 'run' : 'train'} --resume ${s.outDir}` : ''
  return `cancelled during ${where[s.cancelledIn ?? 'train'] ?? s.cancelledIn}; kept in ${s.outDir}: ${kept.join(', ')}${how}`
}

/** Progress bars and one line per logged step, on stderr. */
export class CliRunView {
  private bar: ProgressBar | null = null
  private barKind = ''

  readonly events: RunEvents = {
    phase: (phase: RunPhase, detail?: string) => {
      if (phase === 'load' || phase === 'done' || phase === 'cancelled' || phase === 'failed') return
      this.endBar()
      const label = {
        original: 'original responses',
        trained: 'trained responses',
        reference: 'reference log-probs',
        train: 'training',
        save: 'saving adapter',
      }[phase]
      process.stderr.write(`${label ?? phase}${detail ? `: ${detail}` : ''}\n`)
    },
    progress: (p) => {
      const kind = p.stage ?? 'train'
      if (this.barKind !== kind) {
        this.endBar()
        this.bar = new ProgressBar(kind === 'reference' ? 'reference' : 'train', p.pairsTotal, 'pairs')
        this.barKind = kind
      }
      this.bar!.update(p.pairsDone, kind === 'train' ? `step ${p.step}/${p.totalSteps}` : '')
    },
    metrics: (row) => {
      this.clearLine()
      process.stderr.write(
        `step ${row.step}: loss ${row.loss.toFixed(4)}  grad_norm ${fmt(row.grad_norm)}  lr ${row.learning_rate.toExponential(2)}  ` +
          `rewards/margins ${fmt(row['rewards/margins'])}  accuracy ${fmt(row['rewards/accuracies'])}  epoch ${row.epoch.toFixed(2)}\n`,
      )
    },
    log: (line) => {
      this.clearLine()
      process.stderr.write(`${line}\n`)
    },
  }

  loadProgress(fraction: number): void {
    if (this.barKind !== 'load') {
      this.endBar()
      this.bar = new ProgressBar('load', 100, '%')
      this.barKind = 'load'
    }
    this.bar!.update(Math.round(fraction * 100))
  }

  close(): void {
    this.endBar()
  }

  private endBar(): void {
    if (this.bar && this.barKind === 'load') this.bar.finish()
    else if (this.bar && process.stderr.isTTY) process.stderr.write('\n')
    this.bar = null
    this.barKind = ''
  }

  private clearLine(): void {
    if (this.bar && process.stderr.isTTY) process.stderr.write('\r\x1b[K')
  }
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toFixed(4) : String(x)
}
