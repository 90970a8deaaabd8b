// Run directories we own (docs/run-directory.md): a marker file says a folder is ours, so nothing is ever written
// into a model folder or any other folder we did not create; a lock file (pid, host) keeps two runs out of one
// folder; run_status.json says how the run stands, and a run whose process is gone is marked as such.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { StudioError, errorMessage } from '../errors'
import { writeJsonAtomic } from '../fsAtomic'
import { lockIsHeld, pidAlive, tryLock, type FileLock, type LockHolder } from '../fileLock'
import { ANSWER_TOKENS_FILE, PAIRS_FILE, PAIRS_TOKENS_FILE } from '../../../src-shared/insights/insightTypes'
import { isInside, realish } from '../realPaths'
import type { RunPhase } from '../../../src-shared/run/runTypes'

/** Written into every run directory we create or adopt. */
export const RUN_MARKER_FILE = '.dpo-studio-run'
/** Held while a process writes the run directory: {pid, hostname, started, command}. */
export const RUN_LOCK_FILE = '.dpo-studio-run.lock'
export const RUN_STATUS_FILE = 'run_status.json'

/**
 * What a run directory of ours holds. A folder without the marker (made before it existed) is adopted only when
 * it holds nothing else and its config.json is one of ours.
 */
const RUN_ENTRIES = new Set([
  'config.json',
  'metrics.jsonl',
  'steps.jsonl',
  'train_summary.json',
  'responses_original.json',
  'responses_trained.json',
  'comparison.json',
  'comparison_meta.json',
  RUN_STATUS_FILE,
  'adapter',
  'checkpoint.safetensors',
  RUN_MARKER_FILE,
  RUN_LOCK_FILE,
  // The pair inspector and token view (docs/insights.md).
  PAIRS_FILE,
  PAIRS_TOKENS_FILE,
  ANSWER_TOKENS_FILE,
])

/** Temp and old copies our atomic writes leave beside a target for a moment (fsAtomic.ts, adapterFiles.ts). */
export function isOurTempName(name: string): boolean {
  return /^\..*\.(tmp|old)-\d+-\d+$/.test(name)
}

/**
 * A kind of folder we own: run directories here, sweep folders in insights/sweepDir.ts. Each has its own marker, so
 * a run never goes into a sweep folder nor a sweep into a run directory.
 */
export interface OwnedFolderKind {
  /** The marker file and the key its JSON holds ({"dpo_studio_run": 1, "created": ...}). */
  marker: string
  markerKey: string
  /** "run directory", "sweep folder"; and what it is for ("the run"): for messages. */
  what: string
  purpose: string
  /** A folder of this kind written before the marker existed. */
  isEarlier(dir: string, entries: string[]): boolean
}

const RUN_FOLDER: OwnedFolderKind = {
  marker: RUN_MARKER_FILE,
  markerKey: 'dpo_studio_run',
  what: 'run directory',
  purpose: 'the run',
  isEarlier: isEarlierRunDir,
}

/** Creates the run directory or checks that an existing one is ours; never touches a folder that is not. */
export function ensureRunDir(dir: string, opts: { modelDir?: string | undefined } = {}): void {
  ensureOwnedFolder(dir, RUN_FOLDER, opts)
}

/**
 * Creates a folder of ours of this kind, or checks that an existing one is: missing, empty, marked, or an earlier
 * one of this kind (then marked); anything else, a file, or a folder inside the model folder is refused
 * (E_NOT_RUN_DIR) with nothing written.
 */
export function ensureOwnedFolder(
  dir: string,
  kind: OwnedFolderKind,
  opts: { modelDir?: string | undefined } = {},
): void {
  const abs = resolve(dir)
  if (opts.modelDir !== undefined && isInside(realish(abs), realish(opts.modelDir)))
    throw new StudioError(
      'E_NOT_RUN_DIR',
      `${kind.what} ${abs} is inside the model folder ${resolve(opts.modelDir)}; choose a folder outside it (model folders are never written to)`,
      { details: { file: abs } },
    )
  const info = statOrNull(abs)
  if (info && !info.isDirectory())
    throw new StudioError('E_NOT_RUN_DIR', `${kind.what} ${abs} is a file, not a directory`, { details: { file: abs } })
  if (!info) {
    // Created here, so ours: the marker (which creates the folder) goes in before anything else.
    writeMarker(abs, kind)
    return
  }
  const entries = readdirSync(abs)
  if (entries.includes(kind.marker)) return
  if (entries.length === 0 || kind.isEarlier(abs, entries)) {
    writeMarker(abs, kind)
    return
  }
  const shown = entries.slice(0, 4).join(', ') + (entries.length > 4 ? `, ... (${entries.length} entries)` : '')
  const model = entries.includes('config.json') && entries.some((e) => e.endsWith('.safetensors') || e.endsWith('.bin'))
  throw new StudioError(
    'E_NOT_RUN_DIR',
    `${abs} is not empty and is not a DPO Studio ${kind.what}${model ? ' (it holds a model)' : ''}: found ${shown}. ` +
      `Choose a new or empty folder for ${kind.purpose}; nothing was written.`,
    { details: { file: abs } },
  )
}

function writeMarker(dir: string, kind: OwnedFolderKind): void {
  writeJsonAtomic(join(dir, kind.marker), { [kind.markerKey]: 1, created: new Date().toISOString() })
}

/** A folder written by an earlier version: only our own file names, and a config.json that is a run's. */
export function isEarlierRunDir(dir: string, entries: string[]): boolean {
  if (!entries.every((e) => RUN_ENTRIES.has(e) || isOurTempName(e))) return false
  if (!entries.includes('config.json')) return entries.includes(RUN_STATUS_FILE)
  try {
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>
    return typeof config.engine_version === 'string' && typeof config.params === 'object' && config.params !== null
  } catch {
    return false
  }
}

// ---- the lock --------------------------------------------------------------------------------------------------

/**
 * Takes the run directory's lock (fileLock.ts). A lock left by a process that is gone is taken over; a live one
 * fails with E_RUN_LOCKED naming its holder.
 */
export function lockRunDir(dir: string, command: string): FileLock {
  return lockOwnedFolder(dir, RUN_LOCK_FILE, 'run directory', command)
}

/** lockRunDir for any folder of ours: `lockName` inside `dir`; `what` names the folder in the message. */
export function lockOwnedFolder(dir: string, lockName: string, what: string, command: string): FileLock {
  const got = tryLock(join(resolve(dir), lockName), command)
  if ('holder' in got) throw lockedError(dir, lockName, what, got.holder)
  return got
}

function lockedError(dir: string, lockName: string, what: string, holder: LockHolder | 'unreadable'): StudioError {
  const abs = resolve(dir)
  const who =
    holder === 'unreadable'
      ? 'another process (its lock is being written)'
      : `${holder.command} (pid ${holder.pid} on ${holder.hostname}, since ${holder.started})`
  const remote = holder !== 'unreadable' && holder.hostname !== hostname()
  return new StudioError(
    'E_RUN_LOCKED',
    `${what} ${abs} is in use by ${who}; wait for it to finish or choose another folder` +
      (remote ? ` (if that process is gone, delete ${join(abs, lockName)})` : ''),
    { details: { file: abs, holder } },
  )
}

// ---- run_status.json -------------------------------------------------------------------------------------------

/** How a run stands; written by the process running it, and by the app that started it. */
export interface RunStatusFile {
  runId: string
  status: 'running' | 'completed' | 'cancelled' | 'failed'
  startedAt: string
  endedAt: string | null
  modelDir: string
  datasetPath: string
  testPromptsPath: string | null
  engineVersion: string | null
  error: string | null
  summary?: unknown
  /** The process writing the run, and its host: a run whose process is gone cannot be running. */
  pid?: number
  hostname?: string
  /** The phase in progress (running) or where the run ended. */
  phase?: RunPhase
  /** Cancelled runs: the phase the cancel stopped, and what that means in words. */
  cancelledIn?: RunPhase
  reason?: string
  /** When the run was last resumed (docs/resume.md), if ever. */
  resumedAt?: string
}

export function readRunStatus(dir: string): RunStatusFile | null {
  try {
    const v = JSON.parse(readFileSync(join(dir, RUN_STATUS_FILE), 'utf8')) as RunStatusFile
    return v && typeof v === 'object' && typeof v.status === 'string' ? v : null
  } catch {
    return null
  }
}

/** Replaces the status file (in place when the disk is too full for a temp copy: "failed: disk full" must land). */
export function writeRunStatus(dir: string, s: RunStatusFile): void {
  writeJsonAtomic(join(dir, RUN_STATUS_FILE), s, { inPlaceWhenFull: true })
}

/** Merges `patch` into the status file; `base` fills fields the file does not have yet. */
export function updateRunStatus(dir: string, patch: Partial<RunStatusFile>, base?: RunStatusFile): RunStatusFile {
  const next = { ...base, ...readRunStatus(dir), ...patch } as RunStatusFile
  writeRunStatus(dir, next)
  return next
}

/** The phase in words: "cancelled during trained responses". */
export function phaseWords(p: RunPhase): string {
  return {
    load: 'model loading',
    original: 'original responses',
    reference: 'reference log-probs',
    train: 'training',
    trained: 'trained responses',
    save: 'saving',
    done: 'finishing',
    cancelled: 'cancel',
    failed: 'failure',
  }[p]
}

/**
 * A run recorded as running whose process is gone (host killed, app closed, machine rebooted) is marked failed with
 * the reason. Returns the corrected status, or null when nothing changed. Runs of other hosts are left alone.
 */
export function recoverOrphanedRun(dir: string): RunStatusFile | null {
  const s = readRunStatus(dir)
  if (!s || s.status !== 'running' || !writerIsGone(s, join(dir, RUN_LOCK_FILE))) return null
  const where = s.phase ? ` during ${phaseWords(s.phase)}` : ''
  const who = s.pid !== undefined ? `the process that ran it (pid ${s.pid})` : 'the process that ran it'
  const reason = `stopped${where}: ${who} is gone (killed, crashed, or its app was closed); what finished before that is kept`
  try {
    return updateRunStatus(dir, { status: 'failed', endedAt: new Date().toISOString(), error: reason, reason })
  } catch (e) {
    // A read-only or full disk: report it as failed anyway, without changing the file.
    return { ...s, status: 'failed', error: `${reason} (could not record this: ${errorMessage(e)})` }
  }
}

/**
 * Whether the process a record names (pid, hostname) is gone: it ran on this host, its pid is not running (our own
 * pid counts as running: a run this process started) and nobody holds `lockFile`. Another host's record: unknown, so no.
 */
export function writerIsGone(
  record: { pid?: number | undefined; hostname?: string | undefined },
  lockFile: string,
): boolean {
  if (record.hostname !== undefined && record.hostname !== hostname()) return false
  if (record.pid !== undefined && pidAlive(record.pid)) return false
  return !lockIsHeld(lockFile)
}

// ---- paths -----------------------------------------------------------------------------------------------------

function statOrNull(p: string) {
  try {
    return statSync(p)
  } catch {
    return null
  }
}
