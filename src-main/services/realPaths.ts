// Paths after resolving symlinks: where a path really points (also for files not written yet) and whether it lies
// inside a folder. Shared by the web host's path policy and the run-directory rules.
import { existsSync, realpathSync } from 'node:fs'
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'

/** Real path of p, or of its nearest existing ancestor joined with the rest (for files about to be written). */
export function realish(p: string): string {
  let cur = resolve(p)
  const rest: string[] = []
  while (!existsSync(cur)) {
    const parent = dirname(cur)
    if (parent === cur) break
    rest.unshift(basename(cur))
    cur = parent
  }
  let real = cur
  try {
    real = realpathSync.native(cur)
  } catch {
    /* keep cur */
  }
  return rest.length ? join(real, ...rest) : real
}

export function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child)
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel) && rel.split(sep)[0] !== '..')
}
