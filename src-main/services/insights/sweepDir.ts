// Sweep folders we own (docs/run-directory.md "Sweep folders"): the rules of run directories with a marker and a lock
// of their own, so a sweep never writes into a model folder, a run directory or any folder we did not create, two
// sweeps never share a folder, and a sweep whose process died is not left claiming to run.
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { errorMessage } from '../errors'
import { writeJsonAtomic } from '../fsAtomic'
import type { FileLock } from '../fileLock'
import {
  RUN_MARKER_FILE,
  ensureOwnedFolder,
  isEarlierRunDir,
  isOurTempName,
  lockOwnedFolder,
  recoverOrphanedRun,
  writerIsGone,
  type OwnedFolderKind,
} from '../training/runDir'
import { SWEEP_FILE, type SweepFile } from '../../../src-shared/insights/insightTypes'

export const SWEEP_MARKER_FILE = '.dpo-studio-sweep'
/** Held while a process makes the sweep: {pid, hostname, started, command} (fileLock.ts). */
export const SWEEP_LOCK_FILE = '.dpo-studio-sweep.lock'

/** A ratio's run directory inside a sweep folder: ratio-0.25. */
const RATIO_DIR = /^ratio-[0-9.e+-]+$/

const SWEEP_FOLDER: OwnedFolderKind = {
  marker: SWEEP_MARKER_FILE,
  markerKey: 'dpo_studio_sweep',
  what: 'sweep folder',
  purpose: 'the sweep',
  isEarlier: isEarlierSweepDir,
}

/** Creates the sweep folder or checks that an existing one is ours (runDir.ts ensureOwnedFolder); never a model's. */
export function ensureSweepDir(dir: string, opts: { modelDir?: string | undefined } = {}): void {
  ensureOwnedFolder(dir, SWEEP_FOLDER, opts)
}

/** Fails with E_RUN_LOCKED naming the holder when another live process is making a sweep in this folder. */
export function lockSweepDir(dir: string, command: string): FileLock {
  return lockOwnedFolder(dir, SWEEP_LOCK_FILE, 'sweep folder', command)
}

/** A sweep folder written before the marker existed: sweep.json, ratio-<r> run directories of ours, temp files. */
function isEarlierSweepDir(dir: string, entries: string[]): boolean {
  if (!entries.includes(SWEEP_FILE)) return false
  const ours = entries.every((e) => {
    if (e === SWEEP_FILE || e === SWEEP_LOCK_FILE || isOurTempName(e)) return true
    if (!RATIO_DIR.test(e)) return false
    try {
      const inner = readdirSync(join(dir, e))
      return inner.length === 0 || inner.includes(RUN_MARKER_FILE) || isEarlierRunDir(join(dir, e), inner)
    } catch {
      return false // a file named like a ratio's folder
    }
  })
  return ours && readSweepFile(dir) !== null
}

export function readSweepFile(dir: string): SweepFile | null {
  try {
    const s = JSON.parse(readFileSync(join(dir, SWEEP_FILE), 'utf8')) as SweepFile
    return s &&
      typeof s === 'object' &&
      typeof s.status === 'string' &&
      Array.isArray(s.runs) &&
      Array.isArray(s.ratios)
      ? s
      : null
  } catch {
    return null
  }
}

/**
 * A sweep recorded as running whose process is gone (killed, crashed, its app closed) is marked failed with the
 * reason, and so is its ratio run that was in progress (runDir.ts recoverOrphanedRun). Returns the corrected
 * sweep.json, or null when nothing changed. Sweeps of other hosts are left alone.
 */
export function recoverOrphanedSweep(dir: string): SweepFile | null {
  const s = readSweepFile(dir)
  if (!s || s.status !== 'running' || !writerIsGone(s, join(dir, SWEEP_LOCK_FILE))) return null
  recoverRatioRuns(dir)
  const who = s.pid !== undefined ? `the process that ran it (pid ${s.pid})` : 'the process that ran it'
  const error = `stopped after ${s.runs.length} of ${s.ratios.length} runs: ${who} is gone (killed, crashed, or its app was closed); the finished runs are kept`
  const next: SweepFile = { ...s, status: 'failed', error, updated: new Date().toISOString() }
  try {
    writeJsonAtomic(join(dir, SWEEP_FILE), next)
  } catch (e) {
    return { ...next, error: `${error} (could not record this: ${errorMessage(e)})` }
  }
  return next
}

/** Marks the ratio runs of a sweep whose process is gone (each run directory's own run_status.json). */
export function recoverRatioRuns(dir: string): void {
  let names: string[]
  try {
    names = readdirSync(dir).filter((n) => RATIO_DIR.test(n))
  } catch {
    return
  }
  for (const n of names) recoverOrphanedRun(join(dir, n))
}
