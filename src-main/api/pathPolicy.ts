// Which paths the API may touch. Desktop: any path (the user picks them in native dialogs). Web host: only inside
// its roots (home, the app's data folder, bundled resources, $DPO_STUDIO_ROOTS), with symlinks resolved first and
// hidden folders in home (~/.ssh, ~/.aws, ...) refused except the Hugging Face cache.
import { existsSync, realpathSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import type { FsRoot } from './contract'
import { StudioError } from '../services/errors'

export interface PathPolicy {
  /** True when paths are limited to roots (web host). */
  readonly restricted: boolean
  /** Resolves `p` (absolute, or relative to home) and throws E_FORBIDDEN when it is outside the roots. */
  check(p: string): string
  roots(): FsRoot[]
}

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

export function openPolicy(): PathPolicy {
  return {
    restricted: false,
    check: (p) => resolve(homedir(), p),
    roots: () => [{ label: 'Home', path: homedir() }, { label: 'Filesystem', path: resolve('/') }],
  }
}

export function rootedPolicy(roots: FsRoot[], home = homedir()): PathPolicy {
  const realRoots = roots.filter((r) => existsSync(r.path)).map((r) => ({ ...r, real: realish(r.path) }))
  const realHome = realish(home)
  const hfCache = join(realHome, '.cache', 'huggingface')
  return {
    restricted: true,
    roots: () => realRoots.map(({ label, path }) => ({ label, path })),
    check(p) {
      if (p.includes('\0')) throw new StudioError('E_FORBIDDEN', 'path contains a NUL byte')
      const abs = resolve(home, p)
      const real = realish(abs)
      // A root that is not home wins (the data folder may live under ~/.local); home itself hides dot folders.
      for (const r of realRoots) {
        if (r.real === realHome || !isInside(real, r.real)) continue
        return real
      }
      if (realRoots.some((r) => r.real === realHome) && isInside(real, realHome)) {
        const first = relative(realHome, real).split(sep)[0] ?? ''
        if (!first.startsWith('.') || isInside(real, hfCache)) return real
        throw new StudioError('E_FORBIDDEN', `${abs}: hidden folders in your home are not available in the web host`, { details: { path: abs } })
      }
      // Say exactly how to allow it: the folder itself, or the folder a file is in.
      const allow = existsSync(abs) && statSync(abs).isDirectory() ? abs : dirname(abs)
      throw new StudioError(
        'E_FORBIDDEN',
        `${abs} is outside the folders the web host may read (${realRoots.map((r) => r.path).join(', ')}). ` +
          `To allow it, restart the server with: dpo-studio serve --allow ${shellWord(allow)} (repeatable; or add it to DPO_STUDIO_ROOTS)`,
        { details: { path: abs, allow } },
      )
    },
  }
}

/** A path as one shell word, quoted only when it needs to be (spaces, quotes, $...). */
function shellWord(p: string): string {
  return /^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`
}
