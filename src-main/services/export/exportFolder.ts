// Where exports go: a folder that is new, empty, or an earlier export of the same kind by DPO Studio (its marker file
// says so, and lists what it wrote). Anything else is refused, and nothing is written into it: an export never
// overwrites files that are not ours, not even files put into an earlier export (docs/exports.md). The export is
// built in a staging folder beside the target and swapped in at the end.
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { hostname } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { StudioError } from '../errors'
import { pidAlive } from '../fileLock'
import { fileWriteError } from '../fsAtomic'
import { isInside, realish } from '../realPaths'

/** The marker every export folder carries: what it is, from which run, written when, by which engine. */
export const EXPORT_MARKER = 'dpo_studio_export.json'

export type ExportKind = 'merged-model' | 'gguf' | 'project' | 'imported-run'

export interface ExportMarker {
  kind: ExportKind
  created: string
  /** The folder's entries the export wrote (besides the marker). */
  files: string[]
  [key: string]: unknown
}

/** Entries a run directory's own machinery adds (docs/run-directory.md): an imported run is a run directory. */
const RUN_DIR_ENTRY = /^\.dpo-studio-run/

/** Reads DIR/dpo_studio_export.json, or null when there is none or it is not ours. */
export function readExportMarker(dir: string): ExportMarker | null {
  try {
    const m = JSON.parse(readFileSync(join(dir, EXPORT_MARKER), 'utf8')) as Partial<ExportMarker>
    return typeof m.kind === 'string' && typeof m.created === 'string' && Array.isArray(m.files)
      ? (m as ExportMarker)
      : null
  } catch {
    return null
  }
}

/**
 * Checks that `target` may receive an export of `kind`: absent, an empty folder, or an earlier export of that kind
 * holding nothing it did not write (replaced only with `overwrite`). Throws E_EXPORT_NOT_OURS / E_EXPORT_EXISTS
 * otherwise.
 */
export function checkExportFolder(target: string, kind: ExportKind, overwrite: boolean): void {
  const abs = resolve(target)
  const st = statSync(abs, { throwIfNoEntry: false })
  if (!st) return
  if (!st.isDirectory()) {
    throw new StudioError(
      'E_EXPORT_NOT_OURS',
      `${abs} is a file; choose a new folder for the export (nothing was written)`,
      { details: { path: abs, earlierExport: false } },
    )
  }
  const entries = readdirSync(abs)
  if (entries.length === 0) return
  const marker = readExportMarker(abs)
  if (!marker || marker.kind !== kind) {
    throw new StudioError(
      'E_EXPORT_NOT_OURS',
      `${abs} is not empty and is not an earlier ${kind} export of DPO Studio; choose a new folder (nothing was written)`,
      { details: { path: abs, earlierExport: false } },
    )
  }
  // Replacing the export removes the folder: anything put into it since (a project's outputs/, notes) would go too.
  const foreign = entries.filter((e) => e !== EXPORT_MARKER && !marker.files.includes(e) && !RUN_DIR_ENTRY.test(e))
  if (foreign.length > 0) {
    const shown = foreign.slice(0, 4).join(', ') + (foreign.length > 4 ? `, ... (${foreign.length})` : '')
    throw new StudioError(
      'E_EXPORT_NOT_OURS',
      `${abs} is an earlier ${kind} export, but also holds what it did not write (${shown}); move that out or choose a new folder (nothing was written)`,
      { details: { path: abs, earlierExport: false, foreign } },
    )
  }
  if (!overwrite) {
    throw new StudioError('E_EXPORT_EXISTS', `${abs} holds an earlier ${kind} export; replace it?`, {
      details: { path: abs, earlierExport: true },
    })
  }
}

/**
 * Refuses a target that is one of the folders the export reads (`inputs`: the model, the adapter, the dataset), lies
 * inside one (model folders are never written to, docs/run-directory.md), or holds one (replacing it would remove
 * it). Paths are compared after resolving links.
 */
export function checkNotAnInput(target: string, inputs: readonly string[]): void {
  const real = realish(target)
  for (const input of inputs) {
    const inReal = realish(input)
    if (isInside(real, inReal) || isInside(inReal, real)) {
      const how = real === inReal ? 'is' : isInside(real, inReal) ? 'is inside' : 'holds'
      throw new StudioError(
        'E_EXPORT_NOT_OURS',
        `${resolve(target)} ${how} ${resolve(input)}, which this export reads; choose a folder outside it (nothing was written)`,
        { details: { path: resolve(target), earlierExport: false, input: resolve(input) } },
      )
    }
  }
}

/**
 * The staging folder `.NAME.tmp-PID-TIME` holds this marker and the export being built (`export/`), so a folder
 * that a killed export left can be told from anything else by its contents, not by its name alone.
 */
export const STAGING_MARKER = 'dpo_studio_staging.json'
const STAGED_EXPORT = 'export'

interface StagingMarker {
  /** The export's target (absolute), its writer's pid and host. */
  target: string
  pid: number
  host: string
  created: string
}

function stagingPrefix(abs: string): string {
  return `.${basename(abs)}.tmp-`
}

/**
 * Removes the staging folders earlier exports to `target` left when they were killed: only a folder named
 * `.NAME.tmp-PID-TIME` beside it whose marker names this target and this host, and whose writer (that PID) is gone.
 * Returns the folders removed. Anything else, a live export's folder included, is left as it is.
 */
export function removeStaleStaging(target: string): string[] {
  const abs = resolve(target)
  const parent = dirname(abs)
  const prefix = stagingPrefix(abs)
  let names: string[]
  try {
    names = readdirSync(parent)
  } catch {
    return []
  }
  const removed: string[] = []
  for (const name of names) {
    const stamp = /^(\d+)-\d+$/.exec(name.startsWith(prefix) ? name.slice(prefix.length) : '')
    if (!stamp) continue
    const dir = join(parent, name)
    if (!lstatSync(dir, { throwIfNoEntry: false })?.isDirectory()) continue
    let m: Partial<StagingMarker>
    try {
      m = JSON.parse(readFileSync(join(dir, STAGING_MARKER), 'utf8')) as Partial<StagingMarker>
    } catch {
      continue
    }
    const ours = m.target === abs && m.host === hostname() && m.pid === Number(stamp[1])
    if (!ours || pidAlive(m.pid!)) continue
    rmSync(dir, { recursive: true, force: true })
    removed.push(dir)
  }
  return removed
}

/**
 * Builds an export: checks the target (against `inputs` too, see checkNotAnInput), removes what killed exports to it
 * left (removeStaleStaging), gives `fill` a fresh folder inside a staging folder beside it, writes the marker, then
 * swaps that folder in (an earlier export is moved aside first and removed last). On any error the target is
 * untouched; a write error names the export and says when the disk is full.
 */
export async function writeExportFolder<T>(
  target: string,
  kind: ExportKind,
  overwrite: boolean,
  marker: Record<string, unknown>,
  fill: (tmp: string) => Promise<T> | T,
  inputs: readonly string[] = [],
): Promise<T> {
  const abs = resolve(target)
  checkNotAnInput(abs, inputs)
  checkExportFolder(abs, kind, overwrite)
  const parent = dirname(abs)
  try {
    mkdirSync(parent, { recursive: true })
  } catch (e) {
    throw fileWriteError(e, parent, 'create the folder')
  }
  removeStaleStaging(abs)
  const stamp = `${process.pid}-${Date.now()}`
  const staging = join(parent, `${stagingPrefix(abs)}${stamp}`)
  const tmp = join(staging, STAGED_EXPORT)
  const old = join(parent, `.${basename(abs)}.old-${stamp}`)
  let result: T
  try {
    mkdirSync(staging)
    const mine: StagingMarker = { target: abs, pid: process.pid, host: hostname(), created: new Date().toISOString() }
    writeFileSync(join(staging, STAGING_MARKER), JSON.stringify(mine) + '\n')
    mkdirSync(tmp)
    result = await fill(tmp)
    const files = readdirSync(tmp).sort()
    writeFileSync(
      join(tmp, EXPORT_MARKER),
      JSON.stringify({ kind, created: new Date().toISOString(), files, ...marker }, null, 2) + '\n',
    )
    // Checked again: the folder may have changed while the export was being written.
    checkExportFolder(abs, kind, overwrite)
    if (existsSync(abs)) renameSync(abs, old)
    renameSync(tmp, abs)
  } catch (e) {
    rmSync(staging, { recursive: true, force: true })
    if (existsSync(old) && !existsSync(abs)) renameSync(old, abs)
    throw fileWriteError(e, abs, 'write the export to')
  }
  rmSync(staging, { recursive: true, force: true })
  rmSync(old, { recursive: true, force: true })
  return result
}
