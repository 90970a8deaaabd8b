// Sweeps on disk (docs/insights.md): each a folder with sweep.json and one run directory per ratio. Listing for the
// Sweep view and opening one, with its runs' absolute directories for the pair inspector and the history.
import { existsSync, readFileSync } from 'node:fs'
import { readFile, readdir } from 'node:fs/promises'
import { basename, isAbsolute, join } from 'node:path'
import type { SweepDetail, SweepFile, SweepListItem } from './contract'
import { SWEEP_FILE } from '../services/insights/insightTypes'
import { StudioError } from '../services/errors'
import { writeJsonAtomic } from '../services/fsAtomic'

async function readSweep(dir: string): Promise<SweepFile | null> {
  try {
    const s = JSON.parse(await readFile(join(dir, SWEEP_FILE), 'utf8')) as SweepFile
    return s && typeof s === 'object' && Array.isArray(s.runs) && Array.isArray(s.ratios) ? s : null
  } catch {
    return null
  }
}

export async function listSweeps(sweepsDir: string): Promise<SweepListItem[]> {
  const names = await readdir(sweepsDir).catch(() => [] as string[])
  const items = await Promise.all(
    names.map(async (name): Promise<SweepListItem | null> => {
      const dir = join(sweepsDir, name)
      const s = await readSweep(dir)
      if (!s) return null
      return { sweepId: name, dir, status: s.status, created: s.created, ratios: s.ratios, runs: s.runs.length, modelDir: s.model_dir, dataset: s.dataset }
    }),
  )
  return items.filter((x): x is SweepListItem => x !== null).sort((a, b) => b.created.localeCompare(a.created))
}

export async function openSweep(dir: string): Promise<SweepDetail> {
  if (!existsSync(join(dir, SWEEP_FILE))) throw new StudioError('E_BAD_INPUT', `${dir} is not a sweep folder (no ${SWEEP_FILE})`)
  const sweep = await readSweep(dir)
  if (!sweep) throw new StudioError('E_BAD_INPUT', `${join(dir, SWEEP_FILE)} is not a readable sweep summary`)
  return { sweepId: basename(dir), dir, sweep, runDirs: sweep.runs.map((r) => (isAbsolute(r.run_dir) ? r.run_dir : join(dir, r.run_dir))) }
}

/**
 * After a sweep job ends without completing (the engine host crashed or was killed mid-run), a sweep.json that still
 * says "running" is marked with how it ended, so the folder does not claim a sweep that nothing is making.
 */
export function markSweepEnded(dir: string, status: 'cancelled' | 'failed', error: string | null): void {
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
