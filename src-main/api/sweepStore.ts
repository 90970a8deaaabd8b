// Sweeps on disk (docs/insights.md): each a folder with sweep.json and one run directory per ratio. Listing for the
// Sweep view and opening one, with its runs' absolute directories for the pair inspector and the history; a sweep
// whose process is gone is marked failed on the way (docs/run-directory.md "Sweep folders").
import { existsSync, readFileSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { basename, isAbsolute, join } from 'node:path'
import type { SweepDetail, SweepFile, SweepListItem } from '../../src-shared/api/contract'
import { SWEEP_FILE } from '../../src-shared/insights/insightTypes'
import { readSweepFile, recoverOrphanedSweep, recoverRatioRuns } from '../services/insights/sweepDir'
import { StudioError } from '../services/errors'
import { writeJsonAtomic } from '../services/fsAtomic'

/** sweep.json, corrected first when the sweep it records was stopped by its process dying. */
function readSweep(dir: string): SweepFile | null {
  return recoverOrphanedSweep(dir) ?? readSweepFile(dir)
}

export async function listSweeps(sweepsDir: string): Promise<SweepListItem[]> {
  const names = await readdir(sweepsDir).catch(() => [] as string[])
  const items = names.map((name): SweepListItem | null => {
    const dir = join(sweepsDir, name)
    const s = readSweep(dir)
    if (!s) return null
    return {
      sweepId: name,
      dir,
      status: s.status,
      created: s.created,
      ratios: s.ratios,
      runs: s.runs.length,
      modelDir: s.model_dir,
      dataset: s.dataset,
    }
  })
  return items.filter((x): x is SweepListItem => x !== null).sort((a, b) => b.created.localeCompare(a.created))
}

/** The sweeps of the data folder whose process is gone, marked failed (at start-up); returns how many. */
export async function recoverOrphanedSweeps(sweepsDir: string): Promise<number> {
  const names = await readdir(sweepsDir).catch(() => [] as string[])
  return names.filter((n) => recoverOrphanedSweep(join(sweepsDir, n)) !== null).length
}

export async function openSweep(dir: string): Promise<SweepDetail> {
  if (!existsSync(join(dir, SWEEP_FILE)))
    throw new StudioError('E_BAD_INPUT', `${dir} is not a sweep folder (no ${SWEEP_FILE})`)
  const sweep = readSweep(dir)
  if (!sweep) throw new StudioError('E_BAD_INPUT', `${join(dir, SWEEP_FILE)} is not a readable sweep summary`)
  return {
    sweepId: basename(dir),
    dir,
    sweep,
    runDirs: sweep.runs.map((r) => (isAbsolute(r.run_dir) ? r.run_dir : join(dir, r.run_dir))),
  }
}

/**
 * After a sweep job ends without completing (the engine host crashed or was killed mid-run), a sweep.json that still
 * says "running" is marked with how it ended, so the folder does not claim a sweep that nothing is making; so is the
 * ratio run that was in progress, once its process is gone.
 */
export function markSweepEnded(dir: string, status: 'cancelled' | 'failed', error: string | null): void {
  recoverRatioRuns(dir)
  const file = join(dir, SWEEP_FILE)
  let s: SweepFile
  try {
    s = JSON.parse(readFileSync(file, 'utf8')) as SweepFile
  } catch {
    return // no summary yet (the sweep failed before writing one)
  }
  if (s.status !== 'running') return
  writeJsonAtomic(file, { ...s, status, ...(error ? { error } : {}), updated: new Date().toISOString() })
}
