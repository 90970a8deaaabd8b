// Which paths the API may touch. Desktop: any path (the user picks them in native dialogs). Web host: only inside
// its roots (home, the app's data folder, bundled resources, $DPO_STUDIO_ROOTS), with symlinks resolved first and
// hidden folders in home (~/.ssh, ~/.aws, ...) refused except the Hugging Face cache.
import { existsSync, lstatSync, readdirSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join, relative, resolve, sep } from 'node:path'
import type { FsRoot } from '../../src-shared/api/contract'
import { StudioError } from '../services/errors'
import { isInside, realish } from '../services/realPaths'

export { isInside, realish }

export interface PathPolicy {
  /** True when paths are limited to roots (web host). */
  readonly restricted: boolean
  /** Resolves `p` (absolute, or relative to home) and throws E_FORBIDDEN when it is outside the roots. */
  check(p: string): string
  /**
   * check(), and for a folder also every file and folder in it (two levels down): a readable folder may hold links
   * to files outside the roots (a tokenizer.json pointing at /etc/passwd), and the readers open those by name.
   */
  checkTree(p: string): string
  roots(): FsRoot[]
}

export function openPolicy(): PathPolicy {
  return {
    restricted: false,
    check: (p) => resolve(homedir(), p),
    checkTree: (p) => resolve(homedir(), p),
    roots: () => [
      { label: 'Home', path: homedir() },
      { label: 'Filesystem', path: resolve('/') },
    ],
  }
}

export function rootedPolicy(roots: FsRoot[], home = homedir()): PathPolicy {
  const realRoots = roots.filter((r) => existsSync(r.path)).map((r) => ({ ...r, real: realish(r.path) }))
  const realHome = realish(home)
  const hfCache = join(realHome, '.cache', 'huggingface')
  const policy: PathPolicy = {
    restricted: true,
    roots: () => realRoots.map(({ label, path }) => ({ label, path })),
    checkTree(p) {
      const real = policy.check(p)
      checkEntries(real, 2, (entry) => {
        try {
          policy.check(entry)
        } catch (e) {
          // Name the link, never what it points to or holds.
          throw new StudioError(
            'E_FORBIDDEN',
            `${entry} links outside the folders the web host may read; it is not opened`,
            { cause: e, details: { path: entry } },
          )
        }
      })
      return real
    },
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
        throw new StudioError('E_FORBIDDEN', `${abs}: hidden folders in your home are not available in the web host`, {
          details: { path: abs },
        })
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
  return policy
}

/** Calls `visit` with the path of every symlink under `dir` (depth levels), through real folders only. */
function checkEntries(dir: string, depth: number, visit: (entry: string) => void): void {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return // not a folder (a file was checked by check()) or unreadable: the reader reports it
  }
  for (const name of names) {
    const entry = join(dir, name)
    const st = lstatOrNull(entry)
    if (!st) continue
    if (st.isSymbolicLink()) visit(entry)
    else if (st.isDirectory() && depth > 1) checkEntries(entry, depth - 1, visit)
  }
}

function lstatOrNull(p: string) {
  try {
    return lstatSync(p)
  } catch {
    return null
  }
}

/** A path as one shell word, quoted only when it needs to be (spaces, quotes, $...). */
function shellWord(p: string): string {
  return /^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`
}
